"""Selective (Mamba) scan: every method == sequential == step loop == float64 numpy, values and
gradients (finite differences of the numpy loop), under vmap (with shared and size-1 axes)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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


# (method, chunk): chunk sizes that divide L = 13, do not, and exceed it
VARIANTS = [("associative", 4), ("sequential", 4), ("chunked", 1), ("chunked", 3),
            ("chunked", 4), ("chunked", 13), ("chunked", 20)]


def test_selective_step_loop_float64():
    args = _inputs()
    want = _numpy_reference(*args)
    with jax.enable_x64(True):
        u, delta, A, B, C, Dskip = args
        h, ys = jnp.zeros(A.shape), []
        for t in range(u.shape[0]):
            h, y_t = selective.selective_step(h, u[t], delta[t], A, B[t], C[t], Dskip)
            ys.append(y_t)
        np.testing.assert_allclose(np.stack(ys), want, rtol=1e-12, atol=1e-12)
        y_seq = selective.selective_scan_sequential(*args)
        assert y_seq.dtype == jnp.float64
        np.testing.assert_allclose(y_seq, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method,chunk", VARIANTS)
def test_selective_scan_methods_match_numpy_float64(method, chunk):
    args = _inputs()
    want = _numpy_reference(*args)
    with jax.enable_x64(True):
        y = selective.selective_scan(*args, method=method, chunk=chunk)
        assert y.dtype == jnp.float64 and y.shape == args[0].shape
        np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
        # D = None drops the skip term
        np.testing.assert_allclose(
            selective.selective_scan(*args[:5], None, method=method, chunk=chunk),
            want - args[5] * args[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method,chunk", VARIANTS)
def test_selective_scan_gradients_match_finite_differences_float64(method, chunk):
    """d/de of <sin(y(x + e v)), w> by the method's VJP == central differences of the numpy
    loop, along a random direction v in every input at once."""
    args = _inputs(2, L=9, D=3, N=4)
    rng = np.random.default_rng(7)
    w = rng.normal(size=args[0].shape)
    dirs = [rng.normal(size=x.shape) for x in args]

    def objective_numpy(eps):
        shifted = [x + eps * v for x, v in zip(args, dirs, strict=True)]
        return float(np.sum(np.sin(_numpy_reference(*shifted)) * w))

    eps = 1e-5
    want = (objective_numpy(eps) - objective_numpy(-eps)) / (2 * eps)
    with jax.enable_x64(True):
        def objective(*xs):
            return jnp.sum(jnp.sin(selective.selective_scan(*xs, method=method, chunk=chunk)) * w)

        grads = jax.grad(objective, argnums=tuple(range(6)))(*args)
        got = sum(float(np.sum(np.asarray(g) * v)) for g, v in zip(grads, dirs, strict=True))
        assert abs(got - want) <= 1e-7 * max(1.0, abs(want))
        seq = jax.grad(lambda *xs: jnp.sum(jnp.sin(selective.selective_scan_sequential(*xs)) * w),
                       argnums=tuple(range(6)))(*args)
        for g, g_ref in zip(grads, seq, strict=True):
            np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", selective.METHODS)
def test_selective_scan_float32_and_grad(method):
    args = tuple(np.asarray(x, np.float32) for x in _inputs(1, L=32, D=4, N=8))
    want = _numpy_reference(*(x.astype(np.float64) for x in args))
    y = selective.selective_scan(*args, method=method)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)

    def loss(u, delta, A, B, C, D):
        return jnp.sum(selective.selective_scan(u, delta, A, B, C, D, method=method) ** 2)

    grads = jax.jit(jax.grad(loss, argnums=tuple(range(6))))(*args)
    with jax.enable_x64(True):
        want_grads = jax.grad(
            lambda *xs: jnp.sum(selective.selective_scan_sequential(*xs) ** 2),
            argnums=tuple(range(6)))(*(x.astype(np.float64) for x in args))
    for g, g_ref, x in zip(grads, want_grads, args, strict=True):
        assert g.shape == x.shape and g.dtype == jnp.float32
        np.testing.assert_allclose(g, g_ref, rtol=1e-3, atol=1e-3 * np.abs(g_ref).max())


@pytest.mark.parametrize("method", selective.METHODS)
def test_selective_scan_vmap_over_batch(method):
    batch = [_inputs(s, L=8) for s in range(3)]
    stacked = [np.stack([b[i] for b in batch]).astype(np.float32) for i in range(6)]
    # A and D are shared parameters
    scan = lambda u, d, A, B, C, D: selective.selective_scan(u, d, A, B, C, D, method=method)
    y = jax.vmap(scan, in_axes=(0, 0, None, 0, 0, None))(
        stacked[0], stacked[1], stacked[2][0], stacked[3], stacked[4], stacked[5][0])
    for i in range(3):
        b = list(batch[i])
        b[2], b[5] = batch[0][2], batch[0][5]
        np.testing.assert_allclose(y[i], _numpy_reference(*b), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", selective.METHODS)
def test_selective_scan_leading_batch_dims(method):
    """u, delta, B, C with batch dims (2, 3): every sequence scanned on its own (A, D shared)."""
    seqs = [[_inputs(3 * i + j, L=6) for j in range(3)] for i in range(2)]
    shared_A, shared_D = seqs[0][0][2], seqs[0][0][5]
    batched = [np.array([[s[k] for s in row] for row in seqs]) for k in (0, 1, 3, 4)]
    with jax.enable_x64(True):
        y = selective.selective_scan(batched[0], batched[1], shared_A, batched[2], batched[3],
                                     shared_D, method=method, chunk=4)
    assert y.shape == (2, 3, 6, 3)
    for i in range(2):
        for j in range(3):
            u, delta, _, B, C, _ = seqs[i][j]
            want = _numpy_reference(u, delta, shared_A, B, C, shared_D)
            np.testing.assert_allclose(y[i, j], want, rtol=1e-12, atol=1e-12)


def test_selective_scan_rejects_mismatched_shapes():
    u, delta, A, B, C, D = (np.asarray(x, np.float32) for x in _inputs())
    with pytest.raises(ValueError, match=r"B is \(13, 5\), expected \(13, 4\)"):
        selective.selective_scan(u, delta, A, np.zeros((13, 5), np.float32), C, D)
    with pytest.raises(ValueError, match="delta is"):
        selective.selective_scan(u, delta[None], A, B, C, D)
    with pytest.raises(ValueError, match="A must be"):
        selective.selective_scan(u, delta, A[0], B, C, D)


# Which inputs an inner vmap maps (0) or shares (None): the Mamba block's layout (A, D shared),
# a shared B, and a shared u.
IN_AXES = [(0, 0, None, 0, 0, None), (0, 0, None, None, 0, None), (None, 0, 0, 0, 0, 0)]


@pytest.mark.parametrize("in_axes", IN_AXES)
@pytest.mark.parametrize("seeds", [1, 2])
def test_chunked_scan_gradients_under_nested_vmap(in_axes, seeds):
    """vmap over `seeds` (the trainer's seed axis, size 1 included) of the gradient of an inner
    vmapped scan: the chunked method's vmap rule (mapped axes become batch dims, size-1 axes are
    dropped) gives the sequential scan's gradients."""
    rng = np.random.default_rng(3)
    L, D, N, batch = 7, 3, 4, 3
    shapes = [(L, D), (L, D), (D, N), (L, N), (L, N), (D,)]
    args = [rng.normal(size=s if ax is None else (batch,) + s)
            for ax, s in zip(in_axes, shapes, strict=True)]
    args[1], args[2] = np.log1p(np.exp(args[1])), -np.exp(args[2])
    per_seed = [np.stack([x * (1 + 0.1 * s) for s in range(seeds)]) for x in args]

    def loss(method):
        def f(*xs):
            scan = lambda *a: selective.selective_scan(*a, method=method, chunk=3)
            return jnp.sum(jnp.sin(jax.vmap(scan, in_axes=in_axes)(*xs)))
        return jax.vmap(jax.grad(f, argnums=tuple(range(6))))

    with jax.enable_x64(True):
        got = loss("chunked")(*per_seed)
        want = loss("sequential")(*per_seed)
        for g, g_ref, x in zip(got, want, per_seed, strict=True):
            assert g.shape == x.shape
            np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-12)


def test_default_method_by_backend_and_bad_arguments():
    assert selective.default_method("cpu") == "chunked"
    assert selective.default_method("gpu") == "associative"
    assert selective.default_method("some-new-backend") == "associative"
    assert selective.default_method() == selective.BACKEND_DEFAULT_METHOD.get(
        jax.default_backend(), "associative")
    args = tuple(np.asarray(x, np.float32) for x in _inputs())
    with pytest.raises(ValueError, match="method must be one of"):
        selective.selective_scan(*args, method="parallel")
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        selective.selective_scan(*args, method="chunked", chunk=0)
