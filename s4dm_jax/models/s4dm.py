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

import jax.numpy as jnp

from s4dm_jax.models.base import check_choice, hyperparameter_defaults
from s4dm_jax.models.tokens import (
    RecurrentTokenModule,
    StepEmbed,
    TrajectoryEmbed,
    as_float,
    embed_actions,
)
from s4dm_jax.nn.s4 import S4Config, S4Stack, s4_stack_init_state

TOKEN_LAYOUTS = ("step", "interleaved")


class S4DMModule(RecurrentTokenModule):
    """S4 Decision Model (fields: RecurrentTokenModule's with d_model = H channels; ssm: the S4
    layers' hyperparameters, d_state = N; remat: recompute block activations in the backward
    pass; token_layout; timestep_embedding: add a learned timestep embedding to the tokens)."""

    d_model: int = 18  # S4DM has <= 15% of DT's parameters on hopper (13.7%)
    n_layers: int = 16
    inference: str = "recurrent"
    ssm: S4Config = S4Config(d_state=256)
    remat: bool = False
    token_layout: str = "step"
    timestep_embedding: bool = False

    def __post_init__(self):
        check_choice("token_layout", self.token_layout, TOKEN_LAYOUTS)
        super().__post_init__()

    @property
    def tokens_per_step(self) -> int:
        return 3 if self.token_layout == "interleaved" else 1

    def make_embed(self):
        if self.token_layout == "interleaved":
            return TrajectoryEmbed(self.d_model, self.act_dim, self.discrete, self.max_ep_len,
                                   use_timestep=self.timestep_embedding)
        return StepEmbed(self.d_model, self.max_ep_len, use_timestep=self.timestep_embedding)

    def make_blocks(self):
        return S4Stack(self.n_layers, self.d_model, self.tokens_per_step * self.context_len,
                       self.ssm, self.dropout, self.remat)

    # ------------------------------------------------------------------ training path
    def embed_batch(self, batch):
        """batch dict -> (tokens [B,L,H], mask [B,L]); step layout: token t from R_t, s_t and
        a_{t-1} (zero at the window start and after padding)."""
        if self.token_layout == "interleaved":
            return super().embed_batch(batch)
        a = embed_actions(batch["actions"], self.discrete, self.act_dim,
                          as_float(batch["rtg"]).dtype)
        a_prev = jnp.pad(a, ((0, 0), (1, 0), (0, 0)))[:, :-1]
        m_prev = jnp.pad(batch["mask"], ((0, 0), (1, 0)))[:, :-1]
        x = self.embed(batch["rtg"], batch["states"], a_prev * m_prev[..., None],
                       batch["timesteps"])
        return x, batch["mask"].astype(x.dtype)

    # ------------------------------------------------------------------ inference path
    def setup_step(self) -> None:
        """Precompute every S4 layer's step readout (the "step" collection; see prepare_step);
        nothing in window mode, whose step runs the convolution path."""
        if self.inference == "recurrent":
            self.blocks.setup_step()

    def init_block_states(self, batch_size: int):
        return s4_stack_init_state(batch_size, self.n_layers, self.d_model, self.ssm.d_state)

    def recurrent_step(self, states, started, rtg_t, s_t, a_prev, t):
        """Interleaved: RecurrentTokenModule's. Step layout: one token (R_t, s_t, a_{t-1}), with
        no previous action at the episode's first step (the training path shifts in a zero
        vector there; for discrete actions the int 0 passed then would otherwise be one-hot(0))."""
        if self.token_layout == "interleaved":
            return super().recurrent_step(states, started, rtg_t, s_t, a_prev, t)
        a = (embed_actions(a_prev, self.discrete, self.act_dim, as_float(rtg_t).dtype)
             * started[:, None])
        return self.blocks.step(states, self.embed_ln(self.embed(rtg_t, s_t, a, t)))


DEFAULTS = hyperparameter_defaults(S4DMModule)
