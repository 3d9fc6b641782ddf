"""Inverses of the small rank x rank matrices of DPLR systems, in closed form.

The low rank of S4's DPLR matrices is 1 or 2 (HiPPO: 1, LegT and the damped FouT: 2). Their
rank x rank inverses are written out (Cramer's rule) instead of calling LAPACK: on CPU,
jaxlib's batched LAPACK kernels can deadlock when two of them run at the same time on the
XLA thread pool, and for 1 x 1 / 2 x 2 blocks a custom call is also slower than a few
multiplies. Larger ranks fall back to jnp.linalg.inv.
"""

from __future__ import annotations

import jax.numpy as jnp


def small_inverse(m):
    """Inverse of m [..., r, r] (closed form for r = 1, 2; jnp.linalg.inv otherwise)."""
    r = m.shape[-1]
    if r == 1:
        return 1.0 / m
    if r == 2:
        a, b = m[..., 0, 0], m[..., 0, 1]
        c, d = m[..., 1, 0], m[..., 1, 1]
        det = a * d - b * c
        row0 = jnp.stack([d, -b], axis=-1)
        row1 = jnp.stack([-c, a], axis=-1)
        return jnp.stack([row0, row1], axis=-2) / det[..., None, None]
    return jnp.linalg.inv(m)
