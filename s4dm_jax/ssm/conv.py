"""Causal FFT convolution, the training view of an SSM layer (REFERENCE.md section 1,
"Training uses the causal FFT convolution")."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _align(x, ndim: int):
    """Insert singleton axes right after the time axis so x has `ndim` axes."""
    return jnp.reshape(x, x.shape[:1] + (1,) * (ndim - x.ndim) + x.shape[1:])


@jax.jit
def causal_conv(u, K, D=None):
    """y = irfft(rfft(u, 2L) * rfft(K, 2L))[:L] + D * u, i.e. y_t = sum_{s<=t} K_s u_{t-s} + D u_t.

    Time axis FIRST. u (L, ...), K (L, ...) real; the trailing axes broadcast from the right
    (K (L, H) against u (L, B, H) is fine); D broadcastable to u's trailing axes or None.
    Returns y (L, ...) real, dtype of the inputs.
    """
    u, K = jnp.asarray(u), jnp.asarray(K)
    L = u.shape[0]
    if K.shape[0] != L:
        raise ValueError(f"u and K need the same length (axis 0), got {u.shape} and {K.shape}")
    ndim = max(u.ndim, K.ndim)
    u_f = jnp.fft.rfft(_align(u, ndim), n=2 * L, axis=0)
    k_f = jnp.fft.rfft(_align(K, ndim), n=2 * L, axis=0)
    y = jnp.fft.irfft(u_f * k_f, n=2 * L, axis=0)[:L]
    y = y.astype(jnp.result_type(u, K))
    if D is not None:
        y = y + D * u
    return y
