"""Selective (Mamba) scan: associative == sequential == step loop == float64 numpy."""

import jax
import jax.numpy as jnp
import numpy as np

from s4dm_jax.ssm import selective


def _inputs(seed=0, L=13, D=3, N=4):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(L, D))
    delta = np.log1p(np.exp(rng.normal(size=(L, D))))  # softplus > 0
    A = -np.exp(rng.normal(size=(D, N)))
    B, C = rng.normal(size=(L, N)), rng.normal(size=(L, N))
    Dskip = rng.normal(size=D)
    return u, delta, A, B, C, Dskip


def _numpy_reference(u, delta, A, B, C, Dskip):
    L, D = u.shape
    h = np.zeros(A.shape)
    ys = np.zeros((L, D))
    for t in range(L):
        h = np.exp(delta[t][:, None] * A) * h + delta[t][:, None] * B[t][None, :] * u[t][:, None]
        ys[t] = h @ C[t] + Dskip * u[t]
    return ys


def test_selective_scans_agree_float64():
    args = _inputs()
    want = _numpy_reference(*args)
    with jax.enable_x64(True):
        y_par = selective.selective_scan(*args)
        y_seq = selective.selective_scan_sequential(*args)
        assert y_par.dtype == jnp.float64 and y_par.shape == args[0].shape
        np.testing.assert_allclose(y_par, want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(y_seq, want, rtol=1e-12, atol=1e-12)
        u, delta, A, B, C, Dskip = args
        h, ys = jnp.zeros(A.shape), []
        for t in range(u.shape[0]):
            h, y_t = selective.selective_step(h, u[t], delta[t], A, B[t], C[t], Dskip)
            ys.append(y_t)
        np.testing.assert_allclose(np.stack(ys), want, rtol=1e-12, atol=1e-12)
        # D = None drops the skip term
        np.testing.assert_allclose(selective.selective_scan(u, delta, A, B, C, None),
                                   want - Dskip * u, rtol=1e-12, atol=1e-12)


def test_selective_scan_float32_and_grad():
    args = tuple(np.asarray(x, np.float32) for x in _inputs(1, L=32, D=4, N=8))
    want = _numpy_reference(*(x.astype(np.float64) for x in args))
    y = selective.selective_scan(*args)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)

    def loss(u, delta, A, B, C, D):
        return jnp.sum(selective.selective_scan(u, delta, A, B, C, D) ** 2)

    grads = jax.jit(jax.grad(loss, argnums=tuple(range(6))))(*args)
    for g, x in zip(grads, args, strict=True):
        assert g.shape == x.shape and np.all(np.isfinite(g)) and np.any(g != 0)


def test_selective_scan_vmap_over_batch():
    batch = [_inputs(s, L=8) for s in range(3)]
    stacked = [np.stack([b[i] for b in batch]).astype(np.float32) for i in range(6)]
    # A and D are shared parameters
    y = jax.vmap(selective.selective_scan, in_axes=(0, 0, None, 0, 0, None))(
        stacked[0], stacked[1], stacked[2][0], stacked[3], stacked[4], stacked[5][0])
    for i in range(3):
        b = list(batch[i])
        b[2], b[5] = batch[0][2], batch[0][5]
        np.testing.assert_allclose(y[i], _numpy_reference(*b), rtol=1e-4, atol=1e-4)
