"""Continuous -> discrete state-space maps: bilinear (Gu, Goel & Re, "Efficiently Modeling Long
Sequences with Structured State Spaces", ICLR 2022, eq. 3) and zero-order hold (Gu, Gupta,
Goel & Re, "On the Parameterization and Initialization of Diagonal State Space Models",
NeurIPS 2022); docs/ssm.md.

Pure jnp functions; the dtype follows the inputs. `dt` is a scalar (or broadcastable array
for the diagonal versions).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.linalg import expm

from s4dm_jax.ssm.precision import full_precision


@jax.jit
@full_precision
def bilinear(A, B, dt):
    """Bilinear (Tustin): Ab = (I - dt/2 A)^-1 (I + dt/2 A), Bb = (I - dt/2 A)^-1 dt B.

    A (N, N), B (N,), dt scalar -> Ab (N, N), Bb (N,).
    """
    A, B = jnp.asarray(A), jnp.asarray(B)
    eye = jnp.eye(A.shape[-1], dtype=A.dtype)
    BL = eye - (dt / 2.0) * A
    Ab = jnp.linalg.solve(BL, eye + (dt / 2.0) * A)
    Bb = jnp.linalg.solve(BL, (dt * B)[:, None])[:, 0]
    return Ab, Bb


@jax.jit
@full_precision
def zoh(A, B, dt):
    """Zero-order hold: Ab = expm(dt A), Bb = (dt A)^-1 (expm(dt A) - I) dt B.

    Computed as one exponential of the augmented matrix dt [[A, B], [0, 0]], so a singular A
    is fine. A (N, N), B (N,), dt scalar -> Ab (N, N), Bb (N,).
    """
    A, B = jnp.asarray(A), jnp.asarray(B)
    N = A.shape[-1]
    dtype = jnp.result_type(A, B)
    top = jnp.concatenate([A.astype(dtype), B.astype(dtype)[:, None]], axis=1)
    aug = jnp.concatenate([top, jnp.zeros((1, N + 1), dtype)], axis=0)
    E = expm(dt * aug)
    return E[:N, :N], E[:N, N]


@jax.jit
@full_precision
def bilinear_diag(Lambda, B, dt):
    """Bilinear for diagonal A = diag(Lambda).

    Ab_n = (1 + dt/2 a_n)/(1 - dt/2 a_n), Bb_n = dt B_n / (1 - dt/2 a_n).
    Lambda (M,), B (M,), dt scalar or (M,) -> Ab (M,), Bb (M,).
    """
    den = 1.0 - (dt / 2.0) * Lambda
    return (1.0 + (dt / 2.0) * Lambda) / den, dt * B / den


@jax.jit
@full_precision
def zoh_diag(Lambda, B, dt):
    """ZOH for diagonal A: Ab_n = exp(dt a_n), Bb_n = (exp(dt a_n) - 1)/a_n * B_n.

    Lambda (M,), B (M,), dt scalar or (M,) -> Ab (M,), Bb (M,).
    """
    Ab = jnp.exp(dt * Lambda)
    return Ab, (Ab - 1.0) / Lambda * B
