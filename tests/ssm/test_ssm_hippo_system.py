"""End to end: the DPLR form of a HiPPO matrix IS that HiPPO system.

For each measure, several (N, dt, L) and random real readouts c, the M-mode DPLR system of
`hippo.nplr(measure, N)` with C = c V must reproduce the dense bilinear system of
`hippo.transition(measure, N)` computed here in float64 numpy by explicit matrix powers (an
oracle that shares no code with s4dm_jax.ssm.kernels / recurrence): its kernel (Cauchy +
Woodbury), its scan and its step. fout has an exact zero eigenvalue (a pole of the Cauchy
kernel), so it is compared with max_real=-1e-4 against the dense A - 1e-4 I.

Measured agreement (this file's cases): float64 <= 1e-12 relative (kernel, scan, step; C~ -> C
round trip <= 1e-11 for fout, whose (I - Ab^L) is nearly singular); float32 kernel <= 4e-5,
scan <= 6e-6 relative. The asserted tolerances are 1e-10 (float64) and 2e-4 / 5e-5 (float32).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4dm_jax.ssm import hippo, kernels, recurrence

CASES = [(4, 16, 0.1), (16, 63, 0.05), (64, 256, 0.01), (64, 100, 0.5)]
MEASURES = ["legs", "legt", "lagt", "fout"]
SHIFT = 1e-4  # fout: max_real = -SHIFT, i.e. the DPLR form of A - SHIFT * I


def dense_oracle(measure, N, dt, L, c, u):
    """Kernel K_l = c Ab^l Bb (l < L) and outputs y_t = c x_t of the dense HiPPO system
    (bilinear), float64 numpy, explicit powers."""
    A, B = hippo.transition(measure, N)
    if measure == "fout":
        A = A - SHIFT * np.eye(N)
    eye = np.eye(N)
    Ab = np.linalg.solve(eye - dt / 2 * A, eye + dt / 2 * A)
    Bb = np.linalg.solve(eye - dt / 2 * A, dt * B)
    K = np.array([c @ np.linalg.matrix_power(Ab, l) @ Bb for l in range(L)])
    x, y = np.zeros(N), []
    for u_t in u:
        x = Ab @ x + Bb * u_t
        y.append(c @ x)
    return K, np.array(y)


def dplr_of(measure, N, c):
    lam, P, B, V = hippo.nplr(measure, N, max_real=-SHIFT if measure == "fout" else None)
    return lam, P, B, c @ V


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("N,L,dt", CASES)
def test_dplr_kernel_scan_step_equal_dense_hippo_float64(measure, N, L, dt):
    rng = np.random.default_rng(N + L)
    c, u = rng.normal(size=N), rng.normal(size=L)
    K_ref, y_ref = dense_oracle(measure, N, dt, L, c, u)
    lam, P, B, C = dplr_of(measure, N, c)
    with jax.enable_x64(True):
        Ct = kernels.dplr_c_tilde(lam, P, B, C, dt, L)
        K = kernels.cauchy_dplr(lam, P, B, Ct, dt, L)
        assert K.dtype == jnp.float64 and K.shape == (L,)
        assert _rel(K, K_ref) <= 1e-10
        np.testing.assert_allclose(kernels.dplr_c_from_tilde(lam, P, B, Ct, dt, L), C,
                                   rtol=0, atol=1e-10 * np.max(np.abs(C)))
        _, y = recurrence.dplr_scan(lam, P, P, B, C, dt, u)
        assert _rel(y, y_ref) <= 1e-10
        x = np.zeros(N // 2, complex)
        for t in range(5):  # the single step, from the zero state
            x, y_t = recurrence.dplr_step(lam, P, P, B, C, dt, x, u[t])
            assert abs(float(y_t) - y_ref[t]) <= 1e-10 * np.max(np.abs(y_ref))


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("N,L,dt", CASES)
def test_dplr_kernel_and_scan_equal_dense_hippo_float32(measure, N, L, dt):
    rng = np.random.default_rng(N + L)
    c, u = rng.normal(size=N), rng.normal(size=L)
    K_ref, y_ref = dense_oracle(measure, N, dt, L, c, u)
    lam, P, B, C = dplr_of(measure, N, c)
    with jax.enable_x64(True):
        Ct = np.asarray(kernels.dplr_c_tilde(lam, P, B, C, dt, L))
    f32 = [jnp.asarray(z, jnp.complex64) for z in (lam, P, B, Ct, C)]
    K = kernels.cauchy_dplr(*f32[:4], jnp.float32(dt), L)
    assert K.dtype == jnp.float32
    assert _rel(K, K_ref) <= 2e-4
    _, y = recurrence.dplr_scan(f32[0], f32[1], f32[1], f32[2], f32[4], jnp.float32(dt),
                                jnp.asarray(u, jnp.float32))
    assert _rel(y, y_ref) <= 5e-5


def test_uncoupled_halves_are_not_the_hippo_system():
    """What the code did before (M modes with their own low-rank term, 2 Re at the end) differs
    from HiPPO-LegS by tens of percent: the oracle above can tell the two apart."""
    N, L, dt = 4, 16, 0.1
    c = np.random.default_rng(0).normal(size=N)
    K_ref, _ = dense_oracle("legs", N, dt, L, c, np.zeros(1))
    lam, P, B, C = dplr_of("legs", N, c)
    A = np.diag(lam) - P.T @ P.conj()  # M x M, conjugate half dropped
    eye = np.eye(N // 2)
    Ab = np.linalg.solve(eye - dt / 2 * A, eye + dt / 2 * A)
    Bb = np.linalg.solve(eye - dt / 2 * A, dt * B)
    K_uncoupled = np.array([2 * np.real(C @ np.linalg.matrix_power(Ab, l) @ Bb)
                            for l in range(L)])
    assert _rel(K_uncoupled, K_ref) > 0.1


def test_nplr_fout_needs_max_real():
    with pytest.raises(ValueError, match="zero eigenvalue"):
        hippo.nplr("fout", 8)
    lam, _, _, _ = hippo.nplr("fout", 8, max_real=-SHIFT)
    np.testing.assert_allclose(lam.real, -SHIFT)
