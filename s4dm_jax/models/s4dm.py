"""S4 Decision Model (S4DM): a stack of residual S4 blocks over the trajectory.

Training runs the convolution view over the whole window; inference runs the recurrent view, so
each environment step costs O(1) in the episode length (no re-reading of the past).

Token layouts (`token_layout`):
  * "step" (default): one token per timestep, Dense(H)(concat(E_R(R_t), E_s(s_t), E_a(a_{t-1})))
    (a_{-1} = 0 at the window start), action a_t predicted from token t. The default because it
    trains as well as "interleaved" at less than half the cost: on the embedded dataset (400
    steps, 2 seeds, experiments/compare_token_layouts.py) final loss 0.0601 vs 0.0608,
    normalised score 39.3 +- 8.8 vs 35.6 +- 0.7, training 269 s vs 607 s on a 2-core CPU.
    Sequences are 3x shorter (cheaper FFT convolutions, a kernel of length L spans 3x more
    timesteps) and `step` does one recurrent update per environment step instead of three.
  * "interleaved": DT-style tokens (R_1, s_1, a_1, R_2, ...), action a_t predicted from the
    s_t token; `step` feeds a_{t-1} (from the second step on), R_t and s_t: 3 updates per env step.

Padding: the input of every S4 layer is zeroed at padded (mask 0) positions, so a left-padded
window gives the same predictions on its real steps as the unpadded window, and equals `step`
started from the zero state.

Inference (`inference`):
  * "recurrent" (default): `step` runs each S4 layer's recurrent state over the episode, O(1)
    per step. The state spans the whole episode, so this is only valid for a model trained on
    whole episodes from their first step (the presets: episode_start_windows=True,
    context_len >= the longest episode); the trainer and the evaluator refuse anything else.
  * "window": `step` re-runs the model on the last K steps (models.base.windowed_step), as DT
    does, for S4DM trained on K-step windows starting anywhere (the training-window ablation).

The S4 blocks run as one `nn.S4Stack` (nn.scan over layers). Their kernels are built for the
training sequence length (context_len tokens, or 3 * context_len interleaved) and `step` needs
the parameters from `DecisionModel.prepare_step` (each layer's readout C from its trained C~).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from s4dm_jax.models.base import (
    embed_actions,
    hyperparameter_defaults,
    init_window,
    windowed_step,
)
from s4dm_jax.models.dt import TrajectoryEmbed, interleaved_step
from s4dm_jax.nn.s4 import S4Config, S4Stack, s4_stack_init_state

TOKEN_LAYOUTS = ("step", "interleaved")
INFERENCE_MODES = ("recurrent", "window")

class S4DMModule(nn.Module):
    """S4 Decision Model. Fields: see DEFAULTS (d_model = H channels, d_state = N)."""

    obs_dim: int
    act_dim: int
    discrete: bool = False
    context_len: int = 20
    d_model: int = 18  # S4DM has <= 15% of DT's parameters on hopper (13.7%)
    n_layers: int = 16
    ssm: S4Config = S4Config(d_state=256)
    remat: bool = False
    dropout: float = 0.1
    token_layout: str = "step"
    timestep_embedding: bool = False
    max_ep_len: int = 1000
    inference: str = "recurrent"

    def __post_init__(self):
        if self.inference not in INFERENCE_MODES:
            raise ValueError(f"inference must be one of {INFERENCE_MODES}, got "
                             f"{self.inference!r}")
        super().__post_init__()

    @property
    def requires_whole_episode_training(self) -> bool:
        """The recurrent step's state spans the whole episode (see the module docstring)."""
        return self.inference == "recurrent"

    def setup(self):
        if self.token_layout not in TOKEN_LAYOUTS:
            raise ValueError(f"token_layout must be one of {TOKEN_LAYOUTS}, got "
                             f"{self.token_layout!r}")
        h = self.d_model
        if self.token_layout == "interleaved":
            self.embed = TrajectoryEmbed(h, self.act_dim, self.discrete, self.max_ep_len,
                                         use_timestep=self.timestep_embedding)
        else:
            self.embed_return = nn.Dense(h)
            self.embed_state = nn.Dense(h)
            self.embed_action = nn.Dense(h)
            self.embed_token = nn.Dense(h)
            if self.timestep_embedding:
                self.embed_timestep = nn.Embed(self.max_ep_len, h)
        self.embed_ln = nn.LayerNorm()
        self.drop = nn.Dropout(self.dropout)
        tokens_per_step = 3 if self.token_layout == "interleaved" else 1
        self.blocks = S4Stack(self.n_layers, h, tokens_per_step * self.context_len, self.ssm,
                              self.dropout, self.remat)
        self.ln_f = nn.LayerNorm()
        self.head = nn.Dense(self.act_dim)

    # ------------------------------------------------------------------ shared pieces
    def _step_tokens(self, rtg, states, a_prev, timesteps):
        """One token per step: [..., H] from rtg [...], states [..., obs], a_prev (embedded)."""
        tok = jnp.concatenate([
            self.embed_return(rtg[..., None].astype(jnp.float32)),
            self.embed_state(states.astype(jnp.float32)),
            self.embed_action(a_prev),
        ], axis=-1)
        tok = self.embed_token(tok)
        if self.timestep_embedding:
            tok = tok + self.embed_timestep(jnp.clip(timesteps, 0, self.max_ep_len - 1))
        return tok

    def _out(self, x):
        out = self.head(self.ln_f(x))
        return out if self.discrete else jnp.tanh(out)

    # ------------------------------------------------------------------ training path
    def __call__(self, batch, train: bool = False):
        """batch dict (see models.base) -> preds [B,K,act] (tanh) or logits [B,K,n]."""
        mask = batch["mask"].astype(jnp.float32)
        if self.token_layout == "interleaved":
            x = self.embed(batch["rtg"], batch["states"], batch["actions"], batch["timesteps"])
            mask = jnp.repeat(mask, 3, axis=1)
        else:
            a = embed_actions(batch["actions"], self.discrete, self.act_dim)
            a_prev = jnp.pad(a, ((0, 0), (1, 0), (0, 0)))[:, :-1]
            m_prev = jnp.pad(mask, ((0, 0), (1, 0)))[:, :-1]
            x = self._step_tokens(batch["rtg"], batch["states"], a_prev * m_prev[..., None],
                                  batch["timesteps"])
        x = self.drop(self.embed_ln(x), deterministic=not train)
        x = self.blocks(x, mask, train=train)
        if self.token_layout == "interleaved":
            x = x[:, 1::3]
        return self._out(x)

    # ------------------------------------------------------------------ inference path
    def setup_step(self) -> None:
        """Precompute every S4 layer's step readout (the "step" collection; see prepare_step);
        nothing in window mode, whose step runs the convolution path."""
        if self.inference == "recurrent":
            self.blocks.setup_step()

    def init_carry(self, batch_size: int):
        if self.inference == "window":
            return init_window(batch_size, self.context_len, self.obs_dim, self.act_dim,
                               self.discrete)
        ssm = s4_stack_init_state(batch_size, self.n_layers, self.d_model, self.ssm.d_state)
        if self.token_layout == "interleaved":
            return {"ssm": ssm, "started": jnp.zeros((batch_size,), bool)}
        return {"ssm": ssm}

    def step(self, carry, rtg_t, s_t, a_prev, t):
        """carry, rtg_t [B], s_t [B,obs], a_prev [B,act] | int [B], t int [B] -> (carry, out)."""
        if self.inference == "window":
            return windowed_step(lambda w: self(w, train=False), carry, rtg_t, s_t, a_prev, t)
        if self.token_layout == "step":
            # no previous action at t = 0 (the training path shifts in a zero vector there;
            # for discrete actions the int 0 passed at t = 0 would otherwise be one-hot(0))
            a = embed_actions(a_prev, self.discrete, self.act_dim) * (t > 0)[:, None]
            tok = self.embed_ln(self._step_tokens(rtg_t, s_t, a, t))
            ssm, y = self.blocks.step(carry["ssm"], tok)
            return {"ssm": ssm}, self._out(y)
        # interleaved: a_{t-1} (from the second step on), R_t, s_t
        started = carry["started"]
        ssm, y = interleaved_step(self.embed, self.embed_ln, self.blocks.step, carry["ssm"],
                                  started, rtg_t, s_t, a_prev, t)
        return {"ssm": ssm, "started": jnp.ones_like(started)}, self._out(y)


DEFAULTS = hyperparameter_defaults(S4DMModule)
