"""Convolution kernels K_l = C Ab^l Bb, l < L (REFERENCE.md section 1, "Kernels").

Three views of the same kernel:
- `naive`: explicit recurrence over the dense discrete system (the test oracle);
- `vandermonde`: diagonal (S4D) systems, a Vandermonde product over M = N//2 modes;
- `cauchy_dplr`: diagonal-plus-low-rank (S4) systems through a Cauchy kernel and the
  Woodbury identity at the L-th roots of unity, then an inverse FFT.
Conjugate-symmetric (M-mode) systems return the real kernel 2 Re(.). The dtype follows the
inputs (complex64 -> float32, complex128 -> float64).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from s4dm_jax.ssm import discretize


def _complex_dtype(*xs):
    return jnp.result_type(jnp.complex64, *xs)


def _real_dtype(cdtype):
    return jnp.finfo(cdtype).dtype


@functools.partial(jax.jit, static_argnames=('L',))
def naive(Ab, Bb, C, L: int):
    """Reference kernel by explicit powers: K_l = C Ab^l Bb for l < L ("Naive reference").

    Ab (N, N), Bb (N,), C (N,), L static int -> K (L,), dtype of the inputs (no 2 Re).
    """
    dtype = jnp.result_type(Ab, Bb, C)
    Ab, Bb, C = (jnp.asarray(x, dtype) for x in (Ab, Bb, C))

    def body(x, _):
        return Ab @ x, C @ x

    _, K = lax.scan(body, Bb, None, length=L)
    return K


@functools.partial(jax.jit, static_argnames=('L', 'method'))
def vandermonde(Lambda, B, C, dt, L: int, method: str = "zoh"):
    """S4D kernel of a diagonal conjugate-symmetric system ("S4D / diagonal (Vandermonde)").

    zoh: K_l = 2 Re sum_n C_n B_n (exp(dt a_n) - 1)/a_n exp(l dt a_n);
    bilinear: K_l = 2 Re sum_n C_n Bb_n Ab_n^l with Ab_n, Bb_n from `discretize.bilinear_diag`.
    Lambda, B, C (M,) complex; dt scalar; L static int -> K (L,) real.
    """
    cdtype = _complex_dtype(Lambda, B, C)
    Lambda, B, C = (jnp.asarray(x, cdtype) for x in (Lambda, B, C))
    if method == "zoh":
        _, Bb = discretize.zoh_diag(Lambda, B, dt)
        log_Ab = dt * Lambda
    elif method == "bilinear":
        Ab, Bb = discretize.bilinear_diag(Lambda, B, dt)
        log_Ab = jnp.log(Ab)
    else:
        raise ValueError(f"method must be 'zoh' or 'bilinear', got {method!r}")
    steps = jnp.arange(L, dtype=_real_dtype(cdtype))
    vander = jnp.exp(log_Ab[:, None] * steps[None, :])  # (M, L)
    return 2.0 * jnp.real((C * Bb) @ vander)


def dplr_dense(Lambda, P, Q=None):
    """Dense DPLR matrix A = diag(Lambda) - sum_r P_r Q_r^* (for tests and the C~ maps).

    Lambda (M,), P (rank, M), Q (rank, M) or None (= P) -> A (M, M) complex.
    """
    Q = P if Q is None else Q
    return jnp.diag(Lambda) - jnp.asarray(P).T @ jnp.conj(jnp.asarray(Q))


def dplr_discrete(Lambda, P, B, dt, Q=None):
    """Dense bilinear discretisation of the DPLR system. -> Ab (M, M), Bb (M,)."""
    cdtype = _complex_dtype(Lambda, P, B)
    A = dplr_dense(jnp.asarray(Lambda, cdtype), jnp.asarray(P, cdtype),
                   None if Q is None else jnp.asarray(Q, cdtype))
    return discretize.bilinear(A, jnp.asarray(B, cdtype), dt)


def _power_L(Lambda, P, B, dt, L, Q):
    Ab, _ = dplr_discrete(Lambda, P, B, dt, Q)
    return jnp.linalg.matrix_power(Ab, int(L))


@functools.partial(jax.jit, static_argnames=('L',))
def dplr_c_tilde(Lambda, P, B, C, dt, L: int, Q=None):
    """C~ = (I - Ab^L)^T C, which bakes the truncation to length L into C.

    With y = C x (no conjugation) the kernel's generating function is
    sum_{l<L} K_l w^l = C (I - Ab^L)(I - w Ab)^-1 Bb at w^L = 1, hence the transpose
    (the official code stores conj(C), where the same map reads (I - Ab^L)^* C).
    Lambda (M,), P (rank, M), B (M,), C (M,), dt scalar, L static int -> C~ (M,).
    """
    AL = _power_L(Lambda, P, B, dt, L, Q)
    C = jnp.asarray(C, AL.dtype)
    return C - AL.T @ C


@functools.partial(jax.jit, static_argnames=('L',))
def dplr_c_from_tilde(Lambda, P, B, C_tilde, dt, L: int, Q=None):
    """Inverse of `dplr_c_tilde`: C = ((I - Ab^L)^T)^-1 C~. Shapes as dplr_c_tilde."""
    AL = _power_L(Lambda, P, B, dt, L, Q)
    eye = jnp.eye(AL.shape[0], dtype=AL.dtype)
    C_tilde = jnp.asarray(C_tilde, AL.dtype)
    return jnp.linalg.solve((eye - AL).T, C_tilde[:, None])[:, 0]


def roots_of_unity(L: int, dtype=jnp.complex64):
    """w_k = exp(-2 pi i k / L), k < L. (L,) complex."""
    rdtype = _real_dtype(dtype)
    return jnp.exp((-2j * jnp.pi / L) * jnp.arange(L, dtype=rdtype)).astype(dtype)


@functools.partial(jax.jit, static_argnames=('L',))
def cauchy_dplr(Lambda, P, B, C_tilde, dt, L: int, Q=None):
    """S4 kernel of a DPLR system (bilinear), via Cauchy + Woodbury at the roots of unity.

    REFERENCE "DPLR (S4) via Cauchy + Woodbury": with g(w) = (2/dt)(1-w)/(1+w),
    Khat(w) = 2/(1+w) [k(C~,B) - k(C~,P) (1 + k(Q^*,P))^-1 k(Q^*,B)], K = IFFT(Khat).
    Nyquist fix: multiply through by (1+w)/2 so no 1/(1+w) remains. With the Cauchy kernel
    r_n(w) = dt / ((1-w) - (dt/2)(1+w) Lambda_n) = 2/(1+w) / (g(w) - Lambda_n) and
    s(a,b) = sum_n a_n b_n r_n, Khat = s(C~,B) - c s(C~,P) (I + c s(Q^*,P))^-1 s(Q^*,B) with
    c = (1+w)/2. This equals the formula above and is finite at w = -1 (even L).
    Lambda (M,), P (rank, M), B (M,), C_tilde (M,), dt scalar, L static int,
    Q (rank, M) or None (= P) -> K (L,) real, 2 Re of the M-mode kernel.
    """
    Q = P if Q is None else Q
    cdtype = _complex_dtype(Lambda, P, B, C_tilde, Q)
    Lambda, P, B, C_tilde, Q = (jnp.asarray(x, cdtype) for x in (Lambda, P, B, C_tilde, Q))
    w = roots_of_unity(L, cdtype)
    den = (1.0 - w)[:, None] - (dt / 2.0) * (1.0 + w)[:, None] * Lambda[None, :]
    r = dt / den  # (L, M) Cauchy kernel at the L nodes
    Qc = jnp.conj(Q)
    s_cb = r @ (C_tilde * B)  # (L,)
    s_cp = r @ (C_tilde[None, :] * P).T  # (L, rank)
    s_qb = r @ (Qc * B[None, :]).T  # (L, rank)
    s_qp = jnp.einsum("ln,in,jn->lij", r, Qc, P)  # (L, rank, rank)
    c = (1.0 + w) / 2.0
    rank = P.shape[0]
    if rank == 1:
        corr = s_cp[:, 0] * s_qb[:, 0] / (1.0 + c * s_qp[:, 0, 0])
    else:
        eye = jnp.eye(rank, dtype=cdtype)
        sol = jnp.linalg.solve(eye + c[:, None, None] * s_qp, s_qb[:, :, None])[:, :, 0]
        corr = jnp.sum(s_cp * sol, axis=-1)
    k_hat = s_cb - c * corr
    return 2.0 * jnp.real(jnp.fft.ifft(k_hat))
