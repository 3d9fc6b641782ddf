"""Dropout for every model in the package, drawing 16 random bits per element.

`flax.linen.Dropout` draws a 32-bit threefry word per element; on a CPU that random-number
generation was a quarter of the S4DM preset's training step (9 M dropout decisions per step:
16 layers x 2 dropouts x 16 episodes x 1000 steps x 18 channels). Here each 32-bit word gives
two independent 16-bit uniforms, halving the generator's work. The drop probability is then
round(rate * 2^16) / 2^16 (0.1 -> 0.100006), and kept values are scaled by 1 / (1 - that
probability), so the output's expectation is the input exactly. All models (S4DM, DT and its
attention weights, Decision Mamba, BC) use this one dropout, so their costs compare like with
like.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_LEVELS = 1 << 16


def drop_probability(rate: float) -> float:
    """The probability with which `keep_mask` drops an element: rate rounded to 1/2^16."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"dropout rate must be in [0, 1], got {rate}")
    return round(float(rate) * _LEVELS) / _LEVELS


def keep_mask(key: jax.Array, rate: float, shape: tuple[int, ...]) -> jax.Array:
    """Bool mask of `shape`, each element False (dropped) with probability
    drop_probability(rate), independently: 16-bit uniforms u (two per 32-bit threefry word),
    kept where u >= round(rate * 2^16)."""
    threshold = round(drop_probability(rate) * _LEVELS)
    size = int(np.prod(shape, dtype=np.int64))
    words = jax.random.bits(key, ((size + 1) // 2,), jnp.uint32)
    halves = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(-1)[:size]
    if threshold >= _LEVELS:
        return jnp.zeros(shape, jnp.bool_)
    return (halves >= jnp.uint16(threshold)).reshape(shape)


def apply_dropout(x: jax.Array, key: jax.Array, rate: float) -> jax.Array:
    """Inverted dropout of x with `keep_mask` (x's dtype is kept)."""
    p = drop_probability(rate)
    if p == 0.0:
        return x
    if p == 1.0:
        return jnp.zeros_like(x)
    keep = keep_mask(key, rate, x.shape)
    return jnp.where(keep, x * jnp.asarray(1.0 / (1.0 - p), x.dtype), jnp.zeros((), x.dtype))


class Dropout(nn.Module):
    """`flax.linen.Dropout`'s interface (rate, deterministic, the "dropout" rng collection)
    with `apply_dropout`'s 16-bit masks."""

    rate: float
    deterministic: bool | None = None
    rng_collection: str = "dropout"

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool | None = None) -> jax.Array:
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        if deterministic or drop_probability(self.rate) == 0.0:
            return x
        return apply_dropout(x, self.make_rng(self.rng_collection), self.rate)
