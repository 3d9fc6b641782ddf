"""Actor and critic networks for Soft Actor-Critic (flax.linen).

Shapes: observations f32 [B, obs_dim], actions f32 [B, act_dim] in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

LOG_STD_MIN = -20.0
LOG_STD_MAX = 2.0
_LOG2 = 0.6931471805599453


class MLP(nn.Module):
    """ReLU MLP: [B, in] -> [B, out] (no activation on the output)."""

    hidden: Sequence[int]
    out_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for h in self.hidden:
            x = nn.relu(nn.Dense(h)(x))
        return nn.Dense(self.out_dim)(x)


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy: obs [B, obs] -> (mean [B, act], log_std [B, act]).

    The action is ``tanh(mean + std * eps)``; log_std is clipped to [-20, 2].
    """

    act_dim: int
    hidden: Sequence[int] = (256, 256)

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = MLP(self.hidden, 2 * self.act_dim)(obs)
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


class DoubleCritic(nn.Module):
    """Two independent Q networks: (obs [B, obs], act [B, act]) -> q [2, B]."""

    hidden: Sequence[int] = (256, 256)

    @nn.compact
    def __call__(self, obs: jax.Array, act: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, act], axis=-1)
        q1 = MLP(self.hidden, 1, name="q1")(x)[..., 0]
        q2 = MLP(self.hidden, 1, name="q2")(x)[..., 0]
        return jnp.stack([q1, q2], axis=0)


def tanh_gaussian_sample(
    key: jax.Array, mean: jax.Array, log_std: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Reparameterised sample of tanh(N(mean, exp(log_std)^2)).

    Returns (action [..., act] in (-1, 1), log_prob [...]) with the tanh change-of-variables
    correction ``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))`` (numerically stable).
    """
    std = jnp.exp(log_std)
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    u = mean + std * eps
    log_prob_u = -0.5 * eps**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    log_det = 2.0 * (_LOG2 - u - jax.nn.softplus(-2.0 * u))
    return jnp.tanh(u), jnp.sum(log_prob_u - log_det, axis=-1)
