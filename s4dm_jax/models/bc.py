"""Behaviour cloning: an MLP on the current state (%BC: the sampler's top_fraction)."""

from __future__ import annotations

import flax.linen as nn

from s4dm_jax.models.base import hyperparameter_defaults
from s4dm_jax.models.tokens import ActionHead, as_float
from s4dm_jax.nn.dropout import Dropout


class BCModule(nn.Module):
    """preds[:, t] = head(MLP(s_t)) with ReLU hidden layers (CORL: 256-256, tanh output)."""

    obs_dim: int
    act_dim: int
    discrete: bool = False
    context_len: int = 1
    hidden_dims: tuple[int, ...] = (256, 256)
    dropout: float = 0.0

    @nn.compact
    def __call__(self, batch, train: bool = False):
        """batch dict -> preds [B,K,act] (tanh) or logits [B,K,n]; only states are read."""
        x = as_float(batch["states"])
        for i, width in enumerate(self.hidden_dims):
            x = nn.relu(nn.Dense(int(width), name=f"dense_{i}")(x))
            x = Dropout(self.dropout)(x, deterministic=not train)
        return ActionHead(self.act_dim, discrete=self.discrete, name="action_head")(x)

    def init_carry(self, batch_size: int):
        del batch_size
        return {}

    def step(self, carry, rtg_t, s_t, a_prev, t):
        """Ignores history: (carry, head(MLP(s_t)))."""
        del rtg_t, a_prev, t
        return carry, self({"states": s_t}, train=False)


DEFAULTS = hyperparameter_defaults(BCModule)
