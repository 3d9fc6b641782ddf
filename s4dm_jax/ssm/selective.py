"""Selective (Mamba) scan: h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t, y_t = h_t C_t + D u_t
(REFERENCE.md section 2, "Decision Mamba": associative scan with lax.scan as the reference).

Shapes: L time, D channels, N state per channel. A (D, N) is real (negative for stability).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


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


@jax.jit
def selective_scan(u, delta, A, B, C, D=None):
    """Parallel selective scan with lax.associative_scan.

    u (L, D), delta (L, D) (> 0), A (D, N), B (L, N), C (L, N), D (D,) or None -> y (L, D).
    Memory O(L D N).
    """
    Ab, Bu = _discretize(u, delta, A, B)
    _, h = lax.associative_scan(_combine, (Ab, Bu), axis=0)  # (L, D, N)
    y = jnp.einsum("ldn,ln->ld", h, C)
    return _skip(y, u, D)


def selective_step(h, u_t, delta_t, A, B_t, C_t, D=None):
    """One step: h (D, N), u_t (D,), delta_t (D,), A (D, N), B_t, C_t (N,), D (D,) or None
    -> (h_new (D, N), y_t (D,))."""
    Ab, Bu = _discretize(u_t, delta_t, A, B_t)
    h = Ab * h + Bu
    return h, _skip(h @ C_t, u_t, D)


@jax.jit
def selective_scan_sequential(u, delta, A, B, C, D=None):
    """Reference selective scan with lax.scan over `selective_step`. Shapes as selective_scan."""
    dtype = jnp.result_type(u, delta, A, B)
    h0 = jnp.zeros(A.shape, dtype)

    def body(h, inputs):
        u_t, d_t, B_t, C_t = inputs
        return selective_step(h, u_t, d_t, A, B_t, C_t, D)

    _, y = lax.scan(body, h0, (u, delta, B, C))
    return y
