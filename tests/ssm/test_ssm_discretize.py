"""Bilinear / ZOH discretisation against hand values and scipy / numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from s4dm_jax.ssm import discretize, hippo


def test_bilinear_legs_n3_oracle():
    with jax.enable_x64(True):
        A, B = hippo.transition("legs", 3)
        Ab, Bb = discretize.bilinear(A, B, 0.1)
        assert Ab.dtype == jnp.float64
        np.testing.assert_allclose(np.diag(Ab), [0.904762, 0.818182, 0.739130], atol=1e-6)
        np.testing.assert_allclose(Ab[1, 0], -0.149961, atol=1e-6)
        np.testing.assert_allclose(Bb, [0.095238, 0.149961, 0.159930], atol=1e-6)


def test_zoh_legs_n3_oracle_and_scipy():
    with jax.enable_x64(True):
        A, B = hippo.transition("legs", 3)
        Ab, Bb = discretize.zoh(A, B, 0.1)
        np.testing.assert_allclose(np.diag(Ab), [0.904837, 0.818731, 0.740818], atol=1e-6)
        np.testing.assert_allclose(Bb, [0.095163, 0.149141, 0.155895], atol=1e-6)
        E = scipy.linalg.expm(0.1 * A)
        np.testing.assert_allclose(Ab, E, atol=1e-13)
        np.testing.assert_allclose(Bb, np.linalg.solve(A, (E - np.eye(3)) @ B), atol=1e-13)


def test_zoh_singular_A():
    """fout's A has a zero direction only through B B^T; a plain singular A: Bb = dt B."""
    with jax.enable_x64(True):
        A = np.zeros((2, 2))
        Ab, Bb = discretize.zoh(A, np.array([1.0, 2.0]), 0.5)
        np.testing.assert_allclose(Ab, np.eye(2))
        np.testing.assert_allclose(Bb, [0.5, 1.0])


def test_diag_versions_match_dense():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        lam = -rng.uniform(0.1, 1, 5) + 1j * rng.normal(size=5) * 10
        b = rng.normal(size=5) + 1j * rng.normal(size=5)
        for diag_fn, dense_fn in [(discretize.bilinear_diag, discretize.bilinear),
                                  (discretize.zoh_diag, discretize.zoh)]:
            Ad, Bd = diag_fn(lam, b, 0.03)
            Af, Bf = dense_fn(np.diag(lam), b, 0.03)
            np.testing.assert_allclose(np.diag(np.asarray(Af)), Ad, rtol=1e-12)
            np.testing.assert_allclose(Bf, Bd, rtol=1e-12)


def test_float32_dtype_follows_inputs():
    A, B = hippo.transition("legs", 4)
    Ab, Bb = discretize.bilinear(A.astype(np.float32), B.astype(np.float32), 0.1)
    assert Ab.dtype == jnp.float32 and Bb.dtype == jnp.float32
    Ab, Bb = discretize.zoh_diag(jnp.asarray(hippo.s4d_lin(4), jnp.complex64),
                                 jnp.ones(2, jnp.complex64), 0.1)
    assert Ab.dtype == jnp.complex64
