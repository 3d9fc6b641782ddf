"""Decision Mamba (Ota, Toshihiro-Ota/decision-mamba): DT tokens with Mamba blocks.

Tokens (R_1, s_1, a_1, R_2, ...) with per-modality Linear embeddings plus the timestep
embedding, LayerNorm after stacking, blocks x += Mamba(LN x); x += MLP(LN x), final LayerNorm,
action from the state token. Padded positions enter every Mamba mixer as zeros (see
nn.MambaBlock), so left padding equals starting from the zero state.

Inference (`inference`):
  * "window" (default, as the reference and DT): `step` keeps the last K steps in a fixed-size,
    left-padded window and re-runs the model on it (models.base.windowed_step), so evaluation
    sees exactly the K-step windows the model trained on.
  * "recurrent": `step` is O(1) in the episode length: the carry holds each layer's conv buffer
    and SSM state, and each environment step feeds a_{t-1} (from the second step on), R_t and
    s_t. The state then spans the whole episode, so this is only valid for a model trained on
    whole episodes from their first step (config.episode_start_windows=True and context_len >=
    the longest episode); the trainer and the evaluator refuse anything else.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from s4dm_jax.models.base import hyperparameter_defaults, init_window, windowed_step
from s4dm_jax.models.dt import TrajectoryEmbed, interleaved_step
from s4dm_jax.nn.mamba import MambaResidualBlock, mamba_init_state

INFERENCE_MODES = ("window", "recurrent")


class DecisionMambaModule(nn.Module):
    """Decision Mamba. Fields: see DEFAULTS."""

    obs_dim: int
    act_dim: int
    discrete: bool = False
    context_len: int = 20
    d_model: int = 128
    n_layers: int = 3
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dropout: float = 0.1
    max_ep_len: int = 1000
    inference: str = "window"

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
        self.embed = TrajectoryEmbed(self.d_model, self.act_dim, self.discrete, self.max_ep_len)
        self.embed_ln = nn.LayerNorm()
        self.drop = nn.Dropout(self.dropout)
        self.blocks = [
            MambaResidualBlock(self.d_model, self.d_state, self.d_conv, self.expand, self.dropout)
            for _ in range(self.n_layers)
        ]
        self.ln_f = nn.LayerNorm()
        self.head = nn.Dense(self.act_dim)

    def _out(self, x):
        out = self.head(self.ln_f(x))
        return out if self.discrete else jnp.tanh(out)

    def __call__(self, batch, train: bool = False):
        """batch dict (see models.base) -> preds [B,K,act] (tanh) or logits [B,K,n]."""
        x = self.embed(batch["rtg"], batch["states"], batch["actions"], batch["timesteps"])
        x = self.drop(self.embed_ln(x), deterministic=not train)
        mask = jnp.repeat(batch["mask"].astype(x.dtype), 3, axis=1)
        for blk in self.blocks:
            x = blk(x, mask, train=train)
        return self._out(x[:, 1::3])

    def init_carry(self, batch_size: int):
        if self.inference == "window":
            return init_window(batch_size, self.context_len, self.obs_dim, self.act_dim,
                               self.discrete)
        layers = [mamba_init_state(batch_size, self.d_model, self.d_state, self.d_conv,
                                   self.expand) for _ in range(self.n_layers)]
        return {"layers": layers, "started": jnp.zeros((batch_size,), bool)}

    def _advance(self, states, x):
        new = []
        for blk, st in zip(self.blocks, states, strict=True):
            st, x = blk.step(st, x)
            new.append(st)
        return new, x

    def step(self, carry, rtg_t, s_t, a_prev, t):
        """carry, rtg_t [B], s_t [B,obs], a_prev [B,act] | int [B], t int [B] -> (carry, out)."""
        if self.inference == "window":
            return windowed_step(lambda w: self(w, train=False), carry, rtg_t, s_t, a_prev, t)
        started = carry["started"]
        states, y = interleaved_step(self.embed, self.embed_ln, self._advance, carry["layers"],
                                     started, rtg_t, s_t, a_prev, t)
        return {"layers": states, "started": jnp.ones_like(started)}, self._out(y)


DEFAULTS = hyperparameter_defaults(DecisionMambaModule)
