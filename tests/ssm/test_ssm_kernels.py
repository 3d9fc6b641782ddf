"""Vandermonde and Cauchy/DPLR kernels against explicit powers of the conjugate-completed system
(dense numpy: diagonal systems complete to two decoupled halves; DPLR systems to
diag([Lambda, conj Lambda]) - [P, conj P]^T conj([Q, conj Q]), whose halves are coupled)."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from s4dm_jax.ssm import discretize, hippo, kernels

SETTINGS = settings(max_examples=6, deadline=None, derandomize=True)


def _rel(a, b, scale=None):
    """max |a - b| relative to max |b| (or to `scale`, the size of the un-summed terms)."""
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / (np.max(np.abs(b)) if scale is None else scale)


def _complete(Ab, Bb, C):
    """Conjugate completion of an M-mode system to N = 2M states (dense)."""
    Ab = np.diag(Ab) if np.ndim(Ab) == 1 else np.asarray(Ab)
    M = Ab.shape[0]
    Af = np.zeros((2 * M, 2 * M), complex)
    Af[:M, :M], Af[M:, M:] = Ab, np.conj(Ab)
    return Af, np.concatenate([Bb, np.conj(Bb)]), np.concatenate([C, np.conj(C)])


def _naive_real(Ab, Bb, C, L, with_scale=False):
    """kernels.naive on the completed system, float64; the result must be real.

    with_scale: also return max_l |C Ab^l Bb| of the M-mode system, the size of the terms whose
    2 Re is K (K itself can cancel to ~0, so errors are measured against this scale).
    """
    with jax.enable_x64(True):
        K = np.asarray(kernels.naive(*_complete(Ab, Bb, C), L))
    Ab = np.diag(Ab) if np.ndim(Ab) == 1 else Ab
    x, terms = np.asarray(Bb), []
    for _ in range(L):
        terms.append(C @ x)
        x = Ab @ x
    scale = np.max(np.abs(terms))
    assert np.max(np.abs(K.imag)) <= 1e-12 * max(1.0, np.max(np.abs(K.real)))
    return (K.real, scale) if with_scale else K.real


def _cplx(rng, *shape):
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


def _np_completed_dplr(lam, P, Q, B, C, dt):
    """Dense bilinear discretisation of the conjugate-completed DPLR system in numpy (the
    oracle): -> Ab (2M, 2M), Bb (2M,), C2 (2M,)."""
    lam2 = np.concatenate([lam, np.conj(lam)])
    P2 = np.concatenate([P, np.conj(P)], axis=1)
    Q2 = np.concatenate([Q, np.conj(Q)], axis=1)
    A = np.diag(lam2) - P2.T @ Q2.conj()
    eye = np.eye(len(lam2))
    left = eye - dt / 2 * A
    Bb = np.linalg.solve(left, dt * np.concatenate([B, np.conj(B)]))
    return np.linalg.solve(left, eye + dt / 2 * A), Bb, np.concatenate([C, np.conj(C)])


def _np_kernel(Ab, Bb, C, L):
    """K_l = C Ab^l Bb by explicit powers; real for a completed system. Also returns the
    size of the terms (errors are measured against it; K itself can cancel to ~0)."""
    K = np.array([C @ np.linalg.matrix_power(Ab, l) @ Bb for l in range(L)])
    assert np.max(np.abs(K.imag)) <= 1e-10 * max(1.0, np.max(np.abs(K.real)))
    return K.real, max(np.max(np.abs(K.real)), 1e-300)


def _dplr_system(rng, N, source):
    """(Lambda, P, Q, B) with M = N//2 modes: a HiPPO DPLR system or a random stable one."""
    M = N // 2
    if source == "random":
        lam = -rng.uniform(0.05, 1.0, M) + 1j * rng.normal(size=M) * N
        P = 0.5 * _cplx(rng, 1, M) / np.sqrt(M)
        Q = P + 0.1 * _cplx(rng, 1, M) / np.sqrt(M)
        return lam, P, Q, _cplx(rng, M)
    # As layers use them: Re(Lambda) <= -1e-4 (fout has Lambda = 0 exactly, a pole at w = 1).
    lam, P, B, _ = hippo.nplr(source, N, max_real=-1e-4)
    return lam, P, P, B


def test_naive_matches_matrix_powers():
    rng = np.random.default_rng(0)
    Ab = rng.normal(size=(5, 5)) / 3
    Bb, C = rng.normal(size=5), rng.normal(size=5)
    want = [C @ np.linalg.matrix_power(Ab, l) @ Bb for l in range(9)]
    with jax.enable_x64(True):
        K = kernels.naive(Ab, Bb, C, 9)
        assert K.dtype == jnp.float64
        np.testing.assert_allclose(K, want, rtol=1e-12, atol=1e-14)
    K32 = kernels.naive(*(x.astype(np.float32) for x in (Ab, Bb, C)), 9)
    assert K32.dtype == jnp.float32
    np.testing.assert_allclose(K32, want, rtol=1e-4, atol=1e-5)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), N=st.sampled_from([2, 16, 64]),
       L=st.sampled_from([1, 7, 64, 200]), log_dt=st.floats(np.log(1e-3), np.log(0.1)),
       method=st.sampled_from(["zoh", "bilinear"]))
def test_vandermonde_matches_naive(seed, N, L, log_dt, method):
    rng = np.random.default_rng(seed)
    M, dt = N // 2, float(np.exp(log_dt))
    lam = -rng.uniform(0.05, 1.0, M) + 1j * rng.normal(size=M) * N
    B, C = _cplx(rng, M), _cplx(rng, M)
    with jax.enable_x64(True):
        disc = discretize.zoh_diag if method == "zoh" else discretize.bilinear_diag
        Ab, Bb = (np.asarray(x) for x in disc(lam, B, dt))
        ref, scale = _naive_real(Ab, Bb, C, L, with_scale=True)
        K64 = kernels.vandermonde(lam, B, C, dt, L, method=method)
        assert K64.dtype == jnp.float64 and K64.shape == (L,)
        assert _rel(K64, ref, scale) <= 1e-10
        args32 = [jnp.asarray(x, jnp.complex64) for x in (lam, B, C)]
        K32 = kernels.vandermonde(*args32, jnp.float32(dt), L, method=method)
        assert K32.dtype == jnp.float32
        assert _rel(K32, ref, scale) <= 1e-4


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), N=st.sampled_from([2, 8, 64]),
       L=st.sampled_from([1, 2, 7, 64, 128]), log_dt=st.floats(np.log(1e-3), np.log(0.1)),
       source=st.sampled_from(["legs", "legt", "lagt", "fout", "random"]))
def test_cauchy_dplr_matches_naive(seed, N, L, log_dt, source):
    if source == "fout" and N == 2:
        N = 4
    rng = np.random.default_rng(seed)
    dt = float(np.exp(log_dt))
    lam, P, Q, B = _dplr_system(rng, N, source)
    C = _cplx(rng, N // 2)
    M = N // 2
    Ab, Bb, C2 = _np_completed_dplr(lam, P, Q, B, C, dt)
    ref, scale = _np_kernel(Ab, Bb, C2, L)
    # C~ = (I - Ab^L)^T C of the completed system, first half (explicit numpy powers)
    Ct = (C2 - np.linalg.matrix_power(Ab, L).T @ C2)[:M]
    with jax.enable_x64(True):
        np.testing.assert_allclose(kernels.dplr_c_tilde(lam, P, B, C, dt, L, Q), Ct,
                                   rtol=1e-10, atol=1e-12 * np.max(np.abs(C)))
        K64 = kernels.cauchy_dplr(lam, P, B, Ct, dt, L, Q=Q)
        assert K64.dtype == jnp.float64 and K64.shape == (L,)
        assert np.all(np.isfinite(K64))
        assert _rel(K64, ref, scale) <= 1e-10
        args32 = [jnp.asarray(x, jnp.complex64) for x in (lam, P, B, Ct)]
        K32 = kernels.cauchy_dplr(*args32, jnp.float32(dt), L, Q=jnp.asarray(Q, jnp.complex64))
        assert K32.dtype == jnp.float32
        # fout's zero-frequency pair sits 1e-4 from the node w = 1 (terms ~1/Re(Lambda)^2
        # cancel in the Woodbury step): measured up to 3e-4 in float32 when L = 1.
        assert _rel(K32, ref, scale) <= (1e-3 if source == "fout" else 1e-4)


def test_cauchy_nyquist_node_is_exact():
    """Even L has the node w = -1 (1 + w = 0), handled in closed form: exact and finite."""
    lam, P, B, _ = hippo.nplr("legs", 8)
    C = np.ones(4, complex)
    for L in (2, 64):
        Ab, Bb, C2 = _np_completed_dplr(lam, P, P, B, C, 0.1)
        Ct = (C2 - np.linalg.matrix_power(Ab, L).T @ C2)[:4]
        with jax.enable_x64(True):
            K = kernels.cauchy_dplr(lam, P, B, Ct, 0.1, L)
            assert _rel(K, *_np_kernel(Ab, Bb, C2, L)) <= 1e-12
        w = kernels.roots_of_unity(L)
        assert jnp.min(jnp.abs(1 + w)) < 1e-6  # the node is really there
        K32 = kernels.cauchy_dplr(*(jnp.asarray(x, jnp.complex64) for x in (lam, P, B, Ct)),
                                  0.1, L)
        assert np.all(np.isfinite(K32))


def test_c_tilde_roundtrip():
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        lam, P, B, _ = hippo.nplr("legt", 16)
        C = _cplx(rng, 8)
        Ct = kernels.dplr_c_tilde(lam, P, B, C, 0.05, 32)
        np.testing.assert_allclose(kernels.dplr_c_from_tilde(lam, P, B, Ct, 0.05, 32), C,
                                   rtol=1e-10)


def test_dplr_dense_is_the_completed_system():
    rng = np.random.default_rng(4)
    lam, P, Q = _cplx(rng, 3), _cplx(rng, 2, 3), _cplx(rng, 2, 3)
    with jax.enable_x64(True):
        A = kernels.dplr_dense(lam, P, Q)
    P2 = np.concatenate([P, P.conj()], 1)
    Q2 = np.concatenate([Q, Q.conj()], 1)
    want = np.diag(np.concatenate([lam, lam.conj()]))
    for r in range(2):
        want = want - np.outer(P2[r], Q2[r].conj())
    np.testing.assert_allclose(A, want, rtol=1e-12)


def test_cauchy_custom_vjp_matches_finite_differences():
    """The hand-written backward of the Cauchy sums against central differences (float64)."""
    rng = np.random.default_rng(6)
    lam, P, B, _ = hippo.nplr("legs", 16)
    Cr, Ci = rng.normal(size=8), rng.normal(size=8)
    weights = jnp.asarray(rng.normal(size=30))

    def f(x):  # x: every real input packed into one vector
        lr, li, pr, pi, cr, ci, dt = x[:8], x[8:16], x[16:24], x[24:32], x[32:40], x[40:48], x[48]
        K = kernels.cauchy_dplr(lr + 1j * li, (pr + 1j * pi)[None], B, cr + 1j * ci, dt, 30)
        return jnp.sum(weights * K)

    x0 = np.concatenate([lam.real, lam.imag, P[0].real, P[0].imag, Cr, Ci, [0.05]])
    with jax.enable_x64(True):
        g = np.asarray(jax.grad(f)(jnp.asarray(x0)))
        eps = 1e-6
        for i in range(len(x0)):
            e = np.zeros_like(x0)
            e[i] = eps
            fd = (f(jnp.asarray(x0 + e)) - f(jnp.asarray(x0 - e))) / (2 * eps)
            assert abs(g[i] - fd) <= 1e-6 * max(1.0, abs(fd)), i


def test_grads_through_kernels_are_finite():
    """Real-pair parameters (as layers store them) -> finite, non-zero gradients."""
    lam0, P0, B0, _ = hippo.nplr("legs", 16)
    C0 = np.random.default_rng(5).normal(size=(2, 8))
    params = {"lam_re": lam0.real, "lam_im": lam0.imag, "p_re": P0.real, "p_im": P0.imag,
              "b_re": B0.real, "b_im": B0.imag, "c": C0, "log_dt": np.log(0.01)}
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)

    def loss(p, which):
        lam = jnp.minimum(p["lam_re"], -1e-4) + 1j * p["lam_im"]
        P, B = p["p_re"] + 1j * p["p_im"], p["b_re"] + 1j * p["b_im"]
        C, dt = p["c"][0] + 1j * p["c"][1], jnp.exp(p["log_dt"])
        if which == "cauchy":
            K = kernels.cauchy_dplr(lam, P, B, C, dt, 64)
        else:
            K = kernels.vandermonde(lam, B, C, dt, 64, method=which)
        return jnp.sum(K**2)

    grad = jax.jit(jax.grad(loss), static_argnums=1)
    for which in ("cauchy", "zoh"):
        g = grad(params, which)
        for name, v in g.items():
            if which != "cauchy" and name.startswith("p_"):
                continue
            assert np.all(np.isfinite(v)), (which, name)
            assert np.any(v != 0), (which, name)
