"""Selective (Mamba) scan: h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t, y_t = h_t C_t + D u_t
(Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", 2023,
arXiv:2312.00752, section 3 and algorithm 2; reference implementation: state-spaces/mamba,
mamba_ssm/ops/selective_scan_interface.py, `selective_scan_ref`; as used by Ota, "Decision
Mamba: Reinforcement Learning via Sequence Modeling with Selective State Spaces", 2024,
arXiv:2403.19925, repository Toshihiro-Ota/decision-mamba).

Shapes: L time, D channels, N state per channel, "..." any leading batch dims (independent
sequences). A (D, N) is real (negative for stability).

Three algorithms compute the same function (`selective_scan(..., method=...)`):

  "associative": lax.associative_scan over (exp(delta A), delta B u); O(log L) depth, but it
      materialises several (..., L, D, N) tensors forwards and more backwards.
  "sequential": lax.scan over `selective_step`, differentiated by JAX (the reference; its
      reverse pass stores per-step residuals).
  "chunked": lax.scan over chunks of `chunk` steps with a custom VJP. The forward pass keeps
      only y and the state at each chunk start; the backward pass walks the chunks in reverse,
      recomputes the chunk's states from its start and runs the adjoint recurrence
      g_t = C_t dy_t + exp(delta_{t+1} A) g_{t+1}. Nothing of size (..., L, D, N) is stored (on
      a CPU, writing such tensors step by step dominates the other two methods). No forward-mode
      differentiation (jvp) for this method.

`default_method()` picks one per backend, measured with experiments/profile_mamba.py at the
Decision Mamba preset shapes (batch 64, 60 tokens, D = 256, N = 16).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from s4dm_jax.ssm.precision import full_precision

METHODS = ("associative", "sequential", "chunked")
# CPU: measured (experiments/profile_mamba.py, forward + backward at the preset shapes, 2-core
# CPU) the chunked scan is about 4x faster than the associative one. Other backends keep the
# associative scan (its parallel depth is what accelerators reward); not measured here.
BACKEND_DEFAULT_METHOD = {"cpu": "chunked", "gpu": "associative", "tpu": "associative"}
DEFAULT_CHUNK = 4


def default_method(backend: str | None = None) -> str:
    """The scan algorithm used when `method` is None: BACKEND_DEFAULT_METHOD[backend] (backend
    defaults to jax.default_backend(); unknown backends get "associative")."""
    return BACKEND_DEFAULT_METHOD.get(backend or jax.default_backend(), "associative")


def _discretize(u, delta, A, B):
    """Ab = exp(delta A) (..., D, N), Bu = delta B u (..., D, N)."""
    Ab = jnp.exp(delta[..., :, None] * A)
    Bu = delta[..., :, None] * B[..., None, :] * u[..., :, None]
    return Ab, Bu


def _skip(y, u, D):
    return y if D is None else y + D * u


def _combine(left, right):
    """Compose h -> a0 h + b0 then h -> a1 h + b1: (a1 a0, a1 b0 + b1)."""
    a0, b0 = left
    a1, b1 = right
    return a1 * a0, a1 * b0 + b1


def _readout(h, C_t):
    """y_t = h C_t as an elementwise reduction over N: h (..., D, N), C_t (..., N) -> (..., D)."""
    return jnp.sum(h * C_t[..., None, :], axis=-1)


def _check_shapes(u, delta, A, B, C, D):
    if A.ndim != 2 or u.ndim < 2:
        raise ValueError(f"selective_scan: A must be (D, N) and u (..., L, D); got A {A.shape}, "
                         f"u {u.shape}")
    lead, (dim, n) = u.shape[:-1], A.shape
    want = {"u": (*lead, dim), "delta": (*lead, dim), "B": (*lead, n), "C": (*lead, n)}
    got = {"u": u.shape, "delta": delta.shape, "B": B.shape, "C": C.shape}
    if D is not None:
        want["D"], got["D"] = (dim,), jnp.shape(D)
    bad = [k for k in want if tuple(got[k]) != want[k]]
    if bad:
        raise ValueError(
            "selective_scan: shapes do not fit u (..., L, D), delta (..., L, D), A (D, N), "
            f"B (..., L, N), C (..., L, N), D (D,) with A {A.shape}: "
            + ", ".join(f"{k} is {tuple(got[k])}, expected {want[k]}" for k in bad))


@functools.partial(jax.jit, static_argnames=("method", "chunk"))
@full_precision
def selective_scan(u, delta, A, B, C, D=None, *, method: str | None = None,
                   chunk: int = DEFAULT_CHUNK):
    """Selective scan from the zero state, independently for every leading batch index.

    u (..., L, D), delta (..., L, D) (> 0), A (D, N), B (..., L, N), C (..., L, N),
    D (D,) or None -> y (..., L, D).
    method: one of METHODS, or None for `default_method()` (all compute the same function);
    chunk: steps per chunk of the "chunked" method.
    """
    method = default_method() if method is None else method
    if method not in METHODS:
        raise ValueError(f"selective_scan: method must be one of {METHODS} or None, "
                         f"got {method!r}")
    if chunk < 1:
        raise ValueError(f"selective_scan: chunk must be >= 1, got {chunk}")
    _check_shapes(u, delta, A, B, C, D)
    dtype = jnp.result_type(u, delta, A, B, C)
    u, delta, A, B, C = (jnp.asarray(x, dtype) for x in (u, delta, A, B, C))
    if method == "associative":
        y = _associative(u, delta, A, B, C)
    elif method == "sequential":
        y = _sequential(u, delta, A, B, C)
    else:
        # A gets size-1 batch dims aligned with u's (the kernels' broadcasting convention)
        A_aligned = A.reshape((1,) * (u.ndim - 2) + A.shape)
        y = _chunked(u, delta, A_aligned, B, C, chunk)
    return _skip(y, u, D)


def _associative(u, delta, A, B, C):
    """y without the skip term via lax.associative_scan; memory O(L D N) per sequence."""
    Ab, Bu = _discretize(u, delta, A, B)  # (..., L, D, N)
    _, h = lax.associative_scan(_combine, (Ab, Bu), axis=u.ndim - 2)
    return _readout(h, C)


@full_precision
def selective_step(h, u_t, delta_t, A, B_t, C_t, D=None):
    """One step: h (..., D, N), u_t (..., D), delta_t (..., D), A (D, N), B_t, C_t (..., N),
    D (D,) or None -> (h_new (..., D, N), y_t (..., D))."""
    Ab, Bu = _discretize(u_t, delta_t, A, B_t)
    h = Ab * h + Bu
    return h, _skip(_readout(h, C_t), u_t, D)


def _sequential(u, delta, A, B, C):
    """y without the skip term via lax.scan over `selective_step` (autodiff'd by JAX)."""
    h0 = jnp.zeros(u.shape[:-2] + A.shape, u.dtype)

    def body(h, inputs):
        u_t, d_t, B_t, C_t = inputs
        return selective_step(h, u_t, d_t, A, B_t, C_t)

    time_major = tuple(jnp.moveaxis(x, -2, 0) for x in (u, delta, B, C))
    _, y = lax.scan(body, h0, time_major)
    return jnp.moveaxis(y, 0, -2)


@jax.jit
@full_precision
def selective_scan_sequential(u, delta, A, B, C, D=None):
    """Reference selective scan with lax.scan over `selective_step`. Shapes as selective_scan."""
    return selective_scan(u, delta, A, B, C, D, method="sequential")


# ----------------------------------------------------------------------------- chunked scan
#
# The chunked kernels take arrays with the same number of batch dims ("..."), where A's batch
# dims are 1 (shared). They are wrapped in `_batch_dims_vmap`, so that under jax.vmap the mapped
# axis becomes one more batch dim of the same kernel instead of a vmapped scan, and a mapped axis
# of size 1 (e.g. the trainer's seed axis with one seed) is dropped: XLA CPU emits loops about 3x
# slower for arrays whose leading dimension is a vmapped size-1 axis.
#
# The chunk bodies unroll their `chunk` steps at trace time (a static Python range over a
# compile-time constant): the unrolled states are separate values, so no (chunk, ..., N, D)
# buffer is written step by step. lax.optimization_barrier pins each recomputed state, so that
# XLA does not re-derive h_t from h_{t-1} inside every consumer (O(chunk^2) exponentials).
# The state is laid out (..., N, D), channels minor: reductions over N become adds of D-vectors
# (about 2x faster on a CPU than (..., D, N)).


def _batch_dims_vmap(kernel, in_batch_pos, out_batch_pos):
    """`kernel` (arrays -> tuple of arrays) with a vmap rule: the mapped axis is inserted as a new
    batch dim at position in_batch_pos[i] of input i (where its batch dims start) and taken
    from position out_batch_pos[j] of output j; a mapped axis of size 1 is dropped instead.

    Unmapped inputs get a size-1 dim there (they broadcast); an output that has size 1 there
    while the mapped axis is larger (the cotangent of such an input) is unmapped.
    """
    wrapped = jax.custom_batching.custom_vmap(kernel)

    @wrapped.def_vmap
    def rule(axis_size, in_batched, *args):
        if axis_size == 1:
            args = [x[0] if b else x for x, b in zip(args, in_batched, strict=True)]
            out = wrapped(*args)
            return tuple(y[None] for y in out), tuple(True for _ in out)
        args = [jnp.moveaxis(x, 0, p) if b else jnp.expand_dims(x, p)
                for x, b, p in zip(args, in_batched, in_batch_pos, strict=True)]
        out = wrapped(*args)
        batched = tuple(y.shape[p] == axis_size for y, p in zip(out, out_batch_pos, strict=True))
        return (tuple(jnp.moveaxis(y, p, 0) if b else jnp.squeeze(y, p)
                      for y, b, p in zip(out, batched, out_batch_pos, strict=True)), batched)

    return wrapped


def _sum_to_shape(x, shape):
    """Sum x over the dims where `shape` (same rank) has 1 and x does not (the cotangent of an
    input that was broadcast there)."""
    axes = tuple(i for i, (n, m) in enumerate(zip(shape, x.shape, strict=True)) if n == 1 != m)
    return jnp.sum(x, axis=axes, keepdims=True) if axes else x


def _time_major_chunks(x, chunk):
    """(..., L, F) -> (ceil(L / chunk), chunk, ..., F), zero-padded at the end of time.

    Zero padding is exact: with delta = 0 a step is the identity (exp(0 A) = 1, Bu = 0), and the
    padded outputs are dropped (their cotangents are 0)."""
    x = jnp.moveaxis(x, -2, 0)
    pad = (-x.shape[0]) % chunk
    x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
    return x.reshape((x.shape[0] // chunk, chunk) + x.shape[1:])


def _from_time_major_chunks(x, length):
    """(num_chunks, chunk, ..., F) -> (..., length, F)."""
    return jnp.moveaxis(x.reshape((-1,) + x.shape[2:])[:length], 0, -2)


def _discretize_nd(u_t, delta_t, At, B_t):
    """_discretize in the kernels' state layout (..., N, D): At = A^T (..., N, D)."""
    Ab = jnp.exp(delta_t[..., None, :] * At)
    Bu = (delta_t * u_t)[..., None, :] * B_t[..., :, None]
    return Ab, Bu


@functools.cache
def _chunked_kernels(chunk: int):
    """(forward, backward) kernels of the chunked scan for a given chunk length."""

    def forward(u, delta, A, B, C):
        """y (..., L, D) and the state at every chunk start (num_chunks, ..., N, D)."""
        At = jnp.swapaxes(A, -1, -2)

        def body(h, xs):
            u_c, d_c, B_c, C_c = xs
            h_start, ys = h, []
            for i in range(chunk):
                Ab, Bu = _discretize_nd(u_c[i], d_c[i], At, B_c[i])
                h = Ab * h + Bu
                ys.append(jnp.einsum("...nd,...n->...d", h, C_c[i]))
            return h, (h_start, jnp.stack(ys))

        batch = jnp.broadcast_shapes(*(x.shape[:-2] for x in (u, delta, A, B, C)))
        h0 = jnp.zeros(batch + At.shape[-2:], u.dtype)
        xs = tuple(_time_major_chunks(x, chunk) for x in (u, delta, B, C))
        _, (h_starts, y) = lax.scan(body, h0, xs)
        return _from_time_major_chunks(y, u.shape[-2]), h_starts

    def backward(u, delta, A, B, C, h_starts, dy):
        """Cotangents of (u, delta, A, B, C) from the adjoint recurrence, chunks in reverse.

        With a_t = exp(delta_t A), b_t = delta_t B_t u_t and g_t = dL/dh_t (total):
          g_t = dy_t C_t + a_{t+1} g_{t+1},   q_t = g_t a_t h_{t-1},   gB_t = sum_n g_t B_t,
          d delta_t = sum_n q_t A + gB_t u_t,  du_t = gB_t delta_t,   dA = sum_t q_t delta_t,
          dB_t = sum_d g_t delta_t u_t,       dC_t = sum_d h_t dy_t.
        """
        At = jnp.swapaxes(A, -1, -2)

        def body(carry, xs):
            g_next, dAt = carry  # g_next = a_{t+1} g_{t+1} from the chunk after this one
            u_c, d_c, B_c, C_c, dy_c, h = xs
            hs, Abs = [h], []
            for i in range(chunk):
                Ab, Bu = _discretize_nd(u_c[i], d_c[i], At, B_c[i])
                h, Ab = lax.optimization_barrier((Ab * h + Bu, Ab))
                hs.append(h)
                Abs.append(Ab)
            du, dd, dB, dC = [None] * chunk, [None] * chunk, [None] * chunk, [None] * chunk
            for i in reversed(range(chunk)):
                g = dy_c[i][..., None, :] * C_c[i][..., :, None] + g_next
                q = g * Abs[i] * hs[i]
                gB = jnp.einsum("...nd,...n->...d", g, B_c[i])
                dd[i] = jnp.sum(q * At, axis=-2) + gB * u_c[i]
                du[i] = gB * d_c[i]
                dB[i] = jnp.einsum("...nd,...d->...n", g, d_c[i] * u_c[i])
                dC[i] = jnp.einsum("...nd,...d->...n", hs[i + 1], dy_c[i])
                g_next, dAt = lax.optimization_barrier(
                    (Abs[i] * g, dAt + q * d_c[i][..., None, :]))
            return (g_next, dAt), tuple(jnp.stack(x) for x in (du, dd, dB, dC))

        xs = tuple(_time_major_chunks(x, chunk) for x in (u, delta, B, C, dy)) + (h_starts,)
        zeros = jnp.zeros(h_starts.shape[1:], dy.dtype)
        (_, dAt), grads = lax.scan(body, (zeros, zeros), xs, reverse=True)
        du, dd, dB, dC = (_from_time_major_chunks(x, u.shape[-2]) for x in grads)
        dA = jnp.swapaxes(dAt, -1, -2)
        return tuple(_sum_to_shape(g, x.shape)
                     for g, x in zip((du, dd, dA, dB, dC), (u, delta, A, B, C), strict=True))

    # batch dims start at 0, except in h_starts (num_chunks, ..., N, D), where they start at 1
    return (_batch_dims_vmap(forward, (0,) * 5, (0, 1)),
            _batch_dims_vmap(backward, (0,) * 5 + (1, 0), (0,) * 5))


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
@full_precision
def _chunked(u, delta, A, B, C, chunk):
    """y without the skip term; A (..., D, N) with size-1 batch dims. Memory O(L D) per
    sequence plus the chunk-start states O((L / chunk) D N)."""
    return _chunked_kernels(chunk)[0](u, delta, A, B, C)[0]


@full_precision
def _chunked_fwd(u, delta, A, B, C, chunk):
    y, h_starts = _chunked_kernels(chunk)[0](u, delta, A, B, C)
    return y, (u, delta, A, B, C, h_starts)


@full_precision
def _chunked_bwd(chunk, residuals, dy):
    return _chunked_kernels(chunk)[1](*residuals, dy)


_chunked.defvjp(_chunked_fwd, _chunked_bwd)
