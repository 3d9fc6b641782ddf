"""Recurrent (inference) view of an SSM: x_k = Ab x_{k-1} + Bb u_k, y_k = C x_k
(Gu, Goel & Re, "Efficiently Modeling Long Sequences with Structured State Spaces", ICLR 2022,
section 2.3, and appendix C.2 for the O(N) DPLR step, as in the official code, state-spaces/s4,
src/models/sequence/kernels/ssm.py, `SSMKernelDPLR._setup_state` / `_step_state`; docs/ssm.md).

No D term here: callers add D * u.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from s4dm_jax.ssm.linalg import small_inverse
from s4dm_jax.ssm.precision import full_precision


def _apply_A(Ab, x):
    return Ab * x if Ab.ndim == 1 else Ab @ x


def _readout(C, x, conj_symmetric: bool):
    y = jnp.sum(C * x, axis=-1)  # C @ x as an elementwise reduction (vmaps into fused loops)
    return 2.0 * jnp.real(y) if conj_symmetric else y


@full_precision
def step(Ab, Bb, C, x, u_t, conj_symmetric: bool = False):
    """One step: x_new = Ab x + Bb u_t, y_t = C x_new (2 Re(C x_new) if conj_symmetric).

    Ab (N, N) dense or (N,) diagonal (chosen by Ab.ndim), Bb (N,), C (N,), x (N,),
    u_t scalar -> (x_new (N,), y_t scalar).
    """
    x_new = _apply_A(Ab, x) + Bb * u_t
    return x_new, _readout(C, x_new, conj_symmetric)


@functools.partial(jax.jit, static_argnames=('conj_symmetric',))
@full_precision
def scan(Ab, Bb, C, u, x0=None, conj_symmetric: bool = False):
    """The recurrence over a sequence with lax.scan.

    Ab (N, N) or (N,), Bb (N,), C (N,), u (L,), x0 (N,) or None (zeros)
    -> (x_L (N,), y (L,)).
    """
    dtype = jnp.result_type(Ab, Bb, u)
    Ab, Bb = jnp.asarray(Ab, dtype), jnp.asarray(Bb, dtype)
    x0 = jnp.zeros(Bb.shape, dtype) if x0 is None else jnp.asarray(x0, dtype)

    def body(x, u_t):
        return step(Ab, Bb, C, x, u_t, conj_symmetric)

    return lax.scan(body, x0, u)


def _low_rank_inner(Qc, x):
    """Q2^* x2 of the completed system: 2 Re(sum_n conj(Q)_in x_n), Qc (rank, M), x (M,) ->
    (rank,) real. (The conjugate half contributes the conjugate of the first half's sum.)"""
    return 2.0 * jnp.real(jnp.sum(Qc * x, axis=-1))


def _low_rank_outer(P, r):
    """P^T r for r (rank,) real -> (M,) (first half of P2 r), an elementwise reduction."""
    return jnp.sum(P * r[:, None].astype(P.dtype), axis=0)


@full_precision
def dplr_terms(Lambda, P, Q, dt):
    """Per-system constants of the O(M rank) DPLR step of the completed system.

    D = 1 / ((2/dt) - Lambda) (M,) and G = (I + Q2^* D2 P2)^-1 (rank, rank) real, where
    Q2^* D2 P2 = 2 Re(conj(Q) D P^T), so that A1 v = D v - D P G Q2^* (D v) equals
    ((2/dt) I - A)^-1 v on the first half of a conjugate-symmetric v, A the completed matrix.
    """
    Q = P if Q is None else Q
    D = 1.0 / (2.0 / dt - Lambda)
    small = 2.0 * jnp.real((jnp.conj(Q) * D) @ P.T)
    return D, small_inverse(jnp.eye(P.shape[0], dtype=small.dtype) + small)


class DplrSystem(NamedTuple):
    """One DPLR system ready to step: Lambda (M,), P, Q (rank, M), B (M,), dt scalar, and its
    `dplr_terms` D (M,), G (rank, rank)."""

    Lambda: jax.Array
    P: jax.Array
    Q: jax.Array
    B: jax.Array
    dt: jax.Array
    D: jax.Array
    G: jax.Array


def _dplr_system(Lambda, P, Q, B, dt) -> DplrSystem:
    return DplrSystem(Lambda, P, Q, B, dt, *dplr_terms(Lambda, P, Q, dt))


def _dplr_update(s: DplrSystem, x, u_t):
    """x_new = A1 (A0 x + 2 B u_t) with A0 = (2/dt) I + A; never forms a dense matrix.

    Products with the (rank, M) factors are elementwise reductions: under vmap over batch and
    channels these fuse, where tiny batched matmuls would not.
    """
    Qc, P, D = jnp.conj(s.Q), s.P, s.D
    v = ((2.0 / s.dt + s.Lambda) * x - _low_rank_outer(P, _low_rank_inner(Qc, x))
         + 2.0 * s.B * u_t)
    Dv = D * v
    return Dv - D * _low_rank_outer(P, s.G @ _low_rank_inner(Qc, Dv))


@full_precision
def dplr_step(Lambda, P, Q, B, C, dt, x, u_t):
    """Bilinear DPLR step of the completed system in O(M rank): x_new = Ab x + Bb u_t with
    Ab = A1 A0, Bb = 2 A1 B (S4 appendix C.2), on the first half of the conjugate-symmetric state.

    Lambda (M,), P, Q (rank, M) (Q None -> P), B, C (M,), dt scalar, x (M,), u_t scalar
    -> (x_new (M,), y_t = 2 Re(C x_new) scalar).
    """
    Q = P if Q is None else Q
    x_new = _dplr_update(_dplr_system(Lambda, P, Q, B, dt), x, u_t)
    return x_new, _readout(C, x_new, conj_symmetric=True)


@jax.jit
@full_precision
def dplr_scan(Lambda, P, Q, B, C, dt, u, x0=None):
    """`dplr_step` over a sequence (lax.scan; the rank x rank inverse is computed once).

    Shapes as dplr_step with u (L,), x0 (M,) or None (zeros) -> (x_L (M,), y (L,)).
    """
    Q = P if Q is None else Q
    cdtype = jnp.result_type(jnp.complex64, Lambda, P, Q, B, C, u)
    Lambda, P, Q, B, C = (jnp.asarray(a, cdtype) for a in (Lambda, P, Q, B, C))
    system = _dplr_system(Lambda, P, Q, B, dt)
    x0 = jnp.zeros(Lambda.shape, cdtype) if x0 is None else jnp.asarray(x0, cdtype)

    def body(x, u_t):
        x_new = _dplr_update(system, x, u_t)
        return x_new, _readout(C, x_new, conj_symmetric=True)

    return lax.scan(body, x0, u)
