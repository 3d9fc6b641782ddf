"""Convolution view == recurrent view (scan, step loop, DPLR step) == numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4dm_jax.ssm import conv, discretize, hippo, kernels, recurrence


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_causal_conv_matches_np_convolve():
    rng = _rng()
    L = 37
    u, K = rng.normal(size=L), rng.normal(size=L)
    with jax.enable_x64(True):
        y = conv.causal_conv(u, K, 0.7)
        assert y.dtype == jnp.float64 and y.shape == (L,)
        np.testing.assert_allclose(y, np.convolve(u, K)[:L] + 0.7 * u, rtol=1e-12, atol=1e-12)
    y32 = conv.causal_conv(u.astype(np.float32), K.astype(np.float32))
    assert y32.dtype == jnp.float32
    np.testing.assert_allclose(y32, np.convolve(u, K)[:L], atol=1e-4)


def test_causal_conv_broadcasts_channels_and_batch():
    rng = _rng(1)
    L, Bt, H = 16, 3, 4
    u, K, D = rng.normal(size=(L, Bt, H)), rng.normal(size=(L, H)), rng.normal(size=H)
    with jax.enable_x64(True):
        y = conv.causal_conv(u, K, D)
    assert y.shape == (L, Bt, H)
    for b in range(Bt):
        for h in range(H):
            want = np.convolve(u[:, b, h], K[:, h])[:L] + D[h] * u[:, b, h]
            np.testing.assert_allclose(y[:, b, h], want, rtol=1e-12, atol=1e-12)


def test_causal_conv_time_last_matches_np_convolve():
    """axis=-1 (time last, channels first): u (B, H, L), K (H, L), D (H, 1)."""
    rng = _rng(2)
    L, Bt, H = 21, 3, 4
    u, K, D = rng.normal(size=(Bt, H, L)), rng.normal(size=(H, L)), rng.normal(size=(H, 1))
    with jax.enable_x64(True):
        y = conv.causal_conv(u, K, D, axis=-1)
    assert y.shape == (Bt, H, L)
    for b in range(Bt):
        for h in range(H):
            want = np.convolve(u[b, h], K[h])[:L] + D[h, 0] * u[b, h]
            np.testing.assert_allclose(y[b, h], want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="axis"):
        conv.causal_conv(u, K, axis=1)


@pytest.mark.parametrize("diag", [False, True])
def test_scan_step_conv_agree_float64(diag):
    """recurrence.scan == python loop of recurrence.step == causal_conv(naive kernel)."""
    rng = _rng(2)
    L = 24
    with jax.enable_x64(True):
        if diag:
            lam, B = hippo.s4d_legs(8)
            Ab, Bb = discretize.zoh_diag(lam, B, 0.1)
            C = rng.normal(size=4) + 1j * rng.normal(size=4)
            conj = True
            dense = jax.scipy.linalg.block_diag(jnp.diag(Ab), jnp.diag(jnp.conj(Ab)))
            K = kernels.naive(dense, jnp.concatenate([Bb, Bb.conj()]),
                              jnp.concatenate([C, C.conj()]), L).real
        else:
            A, B = hippo.transition("legs", 6)
            Ab, Bb = discretize.bilinear(A, B, 0.1)
            C = rng.normal(size=6)
            conj = False
            K = np.array([C @ np.linalg.matrix_power(np.asarray(Ab), l) @ np.asarray(Bb)
                          for l in range(L)])
        u = rng.normal(size=L)
        x_L, y = recurrence.scan(Ab, Bb, C, u, conj_symmetric=conj)
        y_conv = conv.causal_conv(u, K)
        np.testing.assert_allclose(y, y_conv, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(y, np.convolve(u, K)[:L], rtol=1e-12, atol=1e-12)
        x, ys = jnp.zeros(Bb.shape, Bb.dtype), []
        for t in range(L):
            x, y_t = recurrence.step(Ab, Bb, C, x, u[t], conj_symmetric=conj)
            ys.append(y_t)
        np.testing.assert_allclose(np.array(ys), y, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(x, x_L, rtol=1e-12, atol=1e-12)


def test_scan_float32_and_x0():
    rng = _rng(3)
    A, B = hippo.transition("legs", 4)
    Ab, Bb = (np.asarray(x, np.float32) for x in discretize.bilinear(A, B, 0.1))
    C, u, x0 = (rng.normal(size=s).astype(np.float32) for s in (4, 10, 4))
    x_L, y = recurrence.scan(Ab, Bb, C, u, x0=x0)
    assert y.dtype == jnp.float32
    x, ys = x0.astype(np.float64), []
    for t in range(10):
        x = Ab.astype(np.float64) @ x + Bb * u[t]
        ys.append(C @ x)
    np.testing.assert_allclose(y, ys, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x_L, x, rtol=1e-5, atol=1e-5)


def _dplr_random(seed, M=6, rank=2):
    rng = _rng(seed)
    lam = -rng.uniform(0.1, 1, M) + 1j * rng.normal(size=M) * 5
    P = (rng.normal(size=(rank, M)) + 1j * rng.normal(size=(rank, M))) * 0.3
    Q = P + 0.1 * (rng.normal(size=(rank, M)) + 1j * rng.normal(size=(rank, M)))
    B = rng.normal(size=M) + 1j * rng.normal(size=M)
    C = rng.normal(size=M) + 1j * rng.normal(size=M)
    return lam, P, Q, B, C, rng.normal(size=20)


def test_dplr_step_matches_dense_bilinear():
    """DPLR step/scan == the dense bilinear recurrence of the conjugate-completed system
    diag([lam, conj lam]) - [P, conj P]^T conj([Q, conj Q]) (numpy), y = C2 x2 (real)."""
    lam, P, Q, B, C, u = _dplr_random(4)
    dt, M = 0.07, len(lam)
    P2, Q2 = np.concatenate([P, P.conj()], 1), np.concatenate([Q, Q.conj()], 1)
    A = np.diag(np.concatenate([lam, lam.conj()])) - P2.T @ Q2.conj()
    I = np.eye(2 * M)
    Ab = np.linalg.solve(I - dt / 2 * A, I + dt / 2 * A)
    Bb = np.linalg.solve(I - dt / 2 * A, dt * np.concatenate([B, B.conj()]))
    C2 = np.concatenate([C, C.conj()])
    x, ys, xs = np.zeros(2 * M, complex), [], []
    for u_t in u:
        x = Ab @ x + Bb * u_t
        np.testing.assert_allclose(x[M:], x[:M].conj(), atol=1e-12)  # stays conj-symmetric
        xs.append(x[:M])
        ys.append((C2 @ x).real)
    with jax.enable_x64(True):
        x_L, y = recurrence.dplr_scan(lam, P, Q, B, C, dt, u)
        np.testing.assert_allclose(y, ys, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(x_L, xs[-1], rtol=1e-12, atol=1e-12)
        x1, y1 = recurrence.dplr_step(lam, P, Q, B, C, dt, xs[3], u[4])
        np.testing.assert_allclose(x1, xs[4], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(y1, ys[4], rtol=1e-12, atol=1e-12)
        # Q = None means Q = P
        x_p, _ = recurrence.dplr_scan(lam, P, None, B, C, dt, u)
        x_pp, _ = recurrence.dplr_scan(lam, P, P, B, C, dt, u)
        np.testing.assert_allclose(x_p, x_pp)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-4)])
def test_dplr_recurrence_reproduces_cauchy_conv(dtype, tol):
    """S4 layer identity: conv with the Cauchy kernel of C~ == DPLR recurrence with C(C~)."""
    N, L, dt = 16, 64, 0.05
    lam, P, B, _ = hippo.nplr("legs", N)
    rng = _rng(5)
    Ct = rng.normal(size=N // 2) + 1j * rng.normal(size=N // 2)
    u = rng.normal(size=L)
    cdt, rdt = (np.complex128, np.float64) if dtype == "float64" else (np.complex64, np.float32)
    with jax.enable_x64(True):
        lam_, P_, B_, Ct_ = (jnp.asarray(x, cdt) for x in (lam, P, B, Ct))
        u_, dt_ = jnp.asarray(u, rdt), jnp.asarray(dt, rdt)
        K = kernels.cauchy_dplr(lam_, P_, B_, Ct_, dt_, L)
        y_conv = conv.causal_conv(u_, K)
        C = kernels.dplr_c_from_tilde(lam_, P_, B_, Ct_, dt_, L)
        _, y_rec = recurrence.dplr_scan(lam_, P_, None, B_, C, dt_, u_)
        assert y_rec.dtype == rdt and y_conv.dtype == rdt
        err = np.max(np.abs(np.asarray(y_rec) - np.asarray(y_conv))) / np.max(np.abs(y_conv))
        assert err <= tol


def test_jit_and_vmap_over_channels():
    """vmap the single-channel functions over H channels, under jit."""
    H, N, L = 3, 8, 32
    rng = _rng(6)
    lam = jnp.asarray(np.stack([hippo.s4d_inv(N)] * H), jnp.complex64)
    B = jnp.ones((H, N // 2), jnp.complex64)
    C = jnp.asarray(rng.normal(size=(H, N // 2)) + 1j * rng.normal(size=(H, N // 2)),
                    jnp.complex64)
    dt = jnp.asarray([0.01, 0.03, 0.1], jnp.float32)
    u = jnp.asarray(rng.normal(size=(L, H)), jnp.float32)

    @jax.jit
    def layer(lam, B, C, dt, u):
        K = jax.vmap(kernels.vandermonde, in_axes=(0, 0, 0, 0, None))(lam, B, C, dt, L)
        return conv.causal_conv(u, K.T), K

    y, K = layer(lam, B, C, dt, u)
    assert y.shape == (L, H) and K.shape == (H, L)
    for h in range(H):
        Kh = kernels.vandermonde(lam[h], B[h], C[h], dt[h], L)
        np.testing.assert_allclose(K[h], Kh, rtol=1e-5, atol=1e-6)
        Ab, Bb = discretize.zoh_diag(lam[h], B[h], dt[h])
        _, yh = recurrence.scan(Ab, Bb, C[h], u[:, h], conj_symmetric=True)
        np.testing.assert_allclose(y[:, h], yh, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("r", [1, 2, 3])
def test_small_inverse_matches_numpy(r):
    from s4dm_jax.ssm.linalg import small_inverse

    m = _rng(7).normal(size=(5, r, r)) + 3 * np.eye(r)
    with jax.enable_x64(True):
        np.testing.assert_allclose(small_inverse(jnp.asarray(m)), np.linalg.inv(m), rtol=1e-12)
