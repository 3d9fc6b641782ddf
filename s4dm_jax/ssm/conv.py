"""Causal FFT convolution, the training view of an SSM layer (y = K * u, zero-padded to 2L so the
circular convolution is causal: Gu, Goel & Re, "Efficiently Modeling Long Sequences with
Structured State Spaces", ICLR 2022, section 2.4; official code: state-spaces/s4,
src/models/sequence/kernels/fftconv.py; docs/ssm.md)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _align(x, ndim: int):
    """Insert singleton axes right after the time axis so x has `ndim` axes."""
    return jnp.reshape(x, x.shape[:1] + (1,) * (ndim - x.ndim) + x.shape[1:])


@functools.partial(jax.jit, static_argnames=("axis",))
def causal_conv(u, K, D=None, axis: int = 0):
    """y = irfft(rfft(u, 2L) * rfft(K, 2L))[:L] + D * u, i.e. y_t = sum_{s<=t} K_s u_{t-s} + D u_t.

    axis: the time axis. 0 (time first): u (L, ...), K (L, ...), the trailing axes broadcast
    from the right (K (L, H) against u (L, B, H) is fine). -1 (time last, the fast layout for
    XLA's FFT, which transforms the last axis): u (..., L), K (..., L), the leading axes
    broadcast from the right (K (H, L) against u (B, H, L)). D broadcastable to u or None.
    Returns y shaped like u, dtype of the inputs.
    """
    if axis not in (0, -1):
        raise ValueError(f"axis must be 0 (time first) or -1 (time last), got {axis}")
    u, K = jnp.asarray(u), jnp.asarray(K)
    L = u.shape[axis]
    if K.shape[axis] != L:
        raise ValueError(f"u and K need the same length along axis {axis}, got {u.shape} and "
                         f"{K.shape}")
    if axis == 0:
        ndim = max(u.ndim, K.ndim)
        u_t, K_t = _align(u, ndim), _align(K, ndim)
    else:
        u_t, K_t = u, K
    u_f = jnp.fft.rfft(u_t, n=2 * L, axis=axis)
    k_f = jnp.fft.rfft(K_t, n=2 * L, axis=axis)
    y = jnp.fft.irfft(u_f * k_f, n=2 * L, axis=axis)
    y = y[:L] if axis == 0 else y[..., :L]
    y = y.astype(jnp.result_type(u, K))
    if D is not None:
        y = y + D * u
    return y
