"""The package's dropout (16-bit masks) against the binomial distribution it must follow."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4dm_jax.nn.dropout import Dropout, apply_dropout, drop_probability, keep_mask

N = 1 << 20


def _within_sigmas(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("rate", [0.01, 0.1, 0.5, 0.9])
def test_drop_fraction_follows_the_binomial_of_the_rate(rate):
    p = drop_probability(rate)
    assert abs(p - rate) <= 0.5 / 65536
    dropped = int(np.sum(~np.asarray(keep_mask(jax.random.PRNGKey(3), rate, (N,)))))
    assert _within_sigmas(dropped, N, p), (dropped, N * p)


def test_the_two_halves_of_a_random_word_drop_independently():
    """Elements 2i and 2i+1 come from one 32-bit word: both dropped with probability p^2, and
    their drop indicators are uncorrelated (also across neighbouring words)."""
    p = drop_probability(0.3)
    d = ~np.asarray(keep_mask(jax.random.PRNGKey(4), 0.3, (N,)))
    both = int(np.sum(d[0::2] & d[1::2]))
    assert _within_sigmas(both, N // 2, p * p), (both, N // 2 * p * p)
    for lag in (1, 2, 3):
        r = np.corrcoef(d[:-lag], d[lag:])[0, 1]
        assert abs(r) < 5 / math.sqrt(N), (lag, r)


def test_output_is_unbiased_and_kept_values_are_rescaled_exactly():
    x = jnp.linspace(-2.0, 2.0, N, dtype=jnp.float32)
    y = np.asarray(apply_dropout(x, jax.random.PRNGKey(5), 0.1))
    kept = y != 0
    p = drop_probability(0.1)
    np.testing.assert_allclose(y[kept], np.asarray(x)[kept] / (1 - p), rtol=1e-6)
    ones = np.asarray(apply_dropout(jnp.ones(N), jax.random.PRNGKey(6), 0.1))
    std = math.sqrt(p / (1 - p) / N)
    assert abs(ones.mean() - 1.0) < 5 * std


def test_shapes_dtypes_and_edge_rates():
    key = jax.random.PRNGKey(0)
    x = jnp.ones((3, 5, 7), jnp.bfloat16)  # odd size: the last word's second half is unused
    y = apply_dropout(x, key, 0.5)
    assert y.shape == x.shape and y.dtype == jnp.bfloat16
    assert set(np.unique(np.asarray(y, np.float32))) <= {0.0, 2.0}
    assert apply_dropout(x, key, 0.0) is x
    assert not np.any(np.asarray(apply_dropout(x, key, 1.0), np.float32))
    assert not np.any(np.asarray(keep_mask(key, 1.0, (4,))))
    with pytest.raises(ValueError, match="dropout rate"):
        drop_probability(1.5)


def test_module_draws_from_the_dropout_rng_and_is_identity_when_deterministic():
    x = jnp.ones((64, 32))
    layer = Dropout(0.5)
    np.testing.assert_array_equal(layer.apply({}, x, deterministic=True), x)
    a = layer.apply({}, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(1)})
    b = layer.apply({}, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(1)})
    c = layer.apply({}, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(2)})
    np.testing.assert_array_equal(a, b)
    assert np.any(np.asarray(a) != np.asarray(c))
    assert 0.4 < float(np.mean(np.asarray(a) == 0)) < 0.6
