"""Convolution kernels K_l = C Ab^l Bb, l < L (Gu, Goel & Re, "Efficiently Modeling Long Sequences
with Structured State Spaces", ICLR 2022, section 3.3 and appendix C.3; S4D's Vandermonde kernel:
Gu, Gupta, Goel & Re, "On the Parameterization and Initialization of Diagonal State Space
Models", NeurIPS 2022; official code: state-spaces/s4, src/models/sequence/kernels/ssm.py;
docs/ssm.md).

Three views of the same kernel:
- `naive`: explicit powers of a dense discrete system (the test oracle);
- `vandermonde`: diagonal (S4D) systems, a Vandermonde product over M = N/2 modes;
- `cauchy_dplr`: diagonal-plus-low-rank (S4) systems, a Cauchy kernel and the Woodbury
  identity at the L-th roots of unity, then an inverse real FFT.

Conjugate symmetry. An M-mode system (Lambda, P, Q, B, C) here always stands for the real
N = 2M state system of its conjugate completion (`conj_complete`):
    Lambda2 = [Lambda, conj Lambda], P2 = [P, conj P], Q2 = [Q, conj Q], B2 = [B, conj B],
    C2 = [C, conj C],   A = diag(Lambda2) - P2^T conj(Q2)   (2M x 2M, see `dplr_dense`),
whose state stays conjugate symmetric, so only its first half is stored and y = 2 Re(C x).
The low-rank term couples each mode with the conjugate half: for DPLR systems the kernel is
NOT 2 Re of an M-mode kernel (that is true only for diagonal systems, P = 0). For a HiPPO
matrix in the basis V of `hippo.nplr` and a real readout c, C = c V makes this system exactly
(A_hippo, B_hippo, c). The dtype follows the inputs (complex64 -> float32, complex128 ->
float64).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from s4dm_jax.ssm import discretize
from s4dm_jax.ssm.linalg import small_inverse
from s4dm_jax.ssm.precision import full_precision


def _complex_dtype(*xs):
    return jnp.result_type(jnp.complex64, *xs)


def _real_dtype(cdtype):
    return jnp.finfo(cdtype).dtype


def conj_complete(x):
    """[x, conj x] along the last axis: (..., M) -> (..., 2M)."""
    x = jnp.asarray(x)
    return jnp.concatenate([x, jnp.conj(x)], axis=-1)


@functools.partial(jax.jit, static_argnames=('L',))
@full_precision
def naive(Ab, Bb, C, L: int):
    """Reference kernel by explicit powers: K_l = C Ab^l Bb for l < L (the test oracle).

    Ab (N, N), Bb (N,), C (N,), L static int -> K (L,), dtype of the inputs (no 2 Re).
    """
    dtype = jnp.result_type(Ab, Bb, C)
    Ab, Bb, C = (jnp.asarray(x, dtype) for x in (Ab, Bb, C))

    def body(x, _):
        return Ab @ x, C @ x

    _, K = lax.scan(body, Bb, None, length=L)
    return K


@functools.partial(jax.jit, static_argnames=('L', 'method'))
@full_precision
def vandermonde(Lambda, B, C, dt, L: int, method: str = "zoh"):
    """S4D kernel of a diagonal conjugate-symmetric system (S4D, Gu et al. 2022).

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


# ----------------------------------------------------------------------------- dense DPLR


@full_precision
def dplr_dense(Lambda, P, Q=None):
    """Dense A of the conjugate-completed DPLR system: diag(Lambda2) - P2^T conj(Q2).

    Lambda (M,), P (rank, M), Q (rank, M) or None (= P) -> A (2M, 2M) complex.
    """
    Q = P if Q is None else Q
    P2, Q2 = conj_complete(P), conj_complete(Q)
    return jnp.diag(conj_complete(Lambda)) - P2.T @ jnp.conj(Q2)


@full_precision
def dplr_discrete(Lambda, P, B, dt, Q=None):
    """Dense bilinear discretisation of the completed DPLR system -> Ab (2M, 2M), Bb (2M,)."""
    cdtype = _complex_dtype(Lambda, P, B)
    A = dplr_dense(jnp.asarray(Lambda, cdtype), jnp.asarray(P, cdtype),
                   None if Q is None else jnp.asarray(Q, cdtype))
    return discretize.bilinear(A, conj_complete(jnp.asarray(B, cdtype)), dt)


def dplr_dense_real(Lambda, P, Q=None):
    """The completed DPLR matrix in real coordinates r = [Re x; Im x] of the first half x:
    A_r = [[diag(Re L), -diag(Im L)], [diag(Im L), diag(Re L)]] - 2 sum_i p_i q_i^T with
    p_i = [Re P_i; Im P_i], q_i = [Re Q_i; Im Q_i] (2M, 2M) real; x2 = [x; conj x] evolves by the
    complex completed matrix exactly when r evolves by A_r.
    """
    Q = P if Q is None else Q
    a, b = jnp.real(Lambda), jnp.imag(Lambda)
    top = jnp.concatenate([jnp.diag(a), -jnp.diag(b)], axis=1)
    bottom = jnp.concatenate([jnp.diag(b), jnp.diag(a)], axis=1)
    p = jnp.concatenate([jnp.real(P), jnp.imag(P)], axis=1)  # (rank, 2M)
    q = jnp.concatenate([jnp.real(Q), jnp.imag(Q)], axis=1)
    return jnp.concatenate([top, bottom]) - 2.0 * p.T @ q


def _bilinear_left_inverse_real(Lambda, P, dt, Q):
    """(I - dt/2 A_r)^-1 for the real-coordinate matrix of `dplr_dense_real`, by Woodbury.

    I - dt/2 A_r = D + dt p q^T with D = [[diag(al), diag(be)], [-diag(be), diag(al)]],
    al = 1 - dt Re(Lambda)/2, be = dt Im(Lambda)/2, whose inverse is elementwise per mode:
    (1 / (al^2 + be^2)) [[al, -be], [be, al]]. Only a rank x rank inverse remains.
    """
    Q = P if Q is None else Q
    al = 1.0 - (dt / 2.0) * jnp.real(Lambda)
    be = (dt / 2.0) * jnp.imag(Lambda)
    n = al * al + be * be
    d_al, d_be = al / n, be / n
    Dinv = jnp.concatenate([
        jnp.concatenate([jnp.diag(d_al), -jnp.diag(d_be)], axis=1),
        jnp.concatenate([jnp.diag(d_be), jnp.diag(d_al)], axis=1)])
    p = jnp.concatenate([jnp.real(P), jnp.imag(P)], axis=1)  # (rank, 2M)
    q = jnp.concatenate([jnp.real(Q), jnp.imag(Q)], axis=1)
    Dinv_p = Dinv @ p.T  # (2M, rank)
    qT_Dinv = q @ Dinv  # (rank, 2M)
    small = small_inverse(jnp.eye(p.shape[0], dtype=p.dtype) + dt * (q @ Dinv_p))
    return Dinv - dt * Dinv_p @ small @ qT_Dinv


def _one_minus_power_real_T(Lambda, P, dt, L, Q):
    """(I - Ab^L)^T of the completed system in real coordinates (2M, 2M), without cancellation.

    Real arithmetic (complex dense products are many times slower on CPUs). I - Ab^L =
    (I - Ab) S_L with S_L = sum_{l<L} Ab^l (by doubling over the bits of L) and
    I - Ab = -(I - dt/2 A)^-1 dt A (bilinear), so a slowly decaying mode (Ab^L ~ I) keeps its
    relative accuracy in float32, where 1 - Ab^L itself would cancel.
    """
    A = dplr_dense_real(Lambda, P, Q)
    eye = jnp.eye(A.shape[0], dtype=A.dtype)
    left_inv = _bilinear_left_inverse_real(Lambda, P, dt, Q)  # (I - dt/2 A)^-1, no LAPACK
    Ab = left_inv @ (eye + (dt / 2.0) * A)
    one_minus_Ab = -left_inv @ (dt * A)
    S, power = jnp.zeros_like(eye), eye  # S_n, Ab^n for n = 0
    for bit in bin(int(L))[2:]:  # L is static: at most log2(L) + 1 iterations
        S, power = S + power @ S, power @ power  # n -> 2n
        if bit == "1":
            S, power = S + power, power @ Ab  # n -> n + 1
    return (one_minus_Ab @ S).T


def _real_readout(C):
    """c_r with C2 x2 = c_r . [Re x; Im x]: [2 Re C, -2 Im C] (2M,)."""
    return jnp.concatenate([2.0 * jnp.real(C), -2.0 * jnp.imag(C)])


def _complex_readout(c_r, M):
    """Inverse of `_real_readout`: C = (c_r[:M] - i c_r[M:]) / 2."""
    return jax.lax.complex(c_r[:M], -c_r[M:]) / 2.0


@functools.partial(jax.jit, static_argnames=('L',))
@full_precision
def dplr_c_tilde(Lambda, P, B, C, dt, L: int, Q=None):
    """C~ = (I - Ab^L)^T C of the completed system (first half), which bakes the truncation
    to length L into C.

    With y = C x (no conjugation), sum_{l<L} K_l w^l = C (I - Ab^L)(I - w Ab)^-1 Bb at
    w^L = 1, hence the transpose (the official code stores conj(C), where the same map reads
    (I - Ab^L)^* C). C~2 is conjugate symmetric like C2, so its first half is returned.
    Computed in real coordinates; dense O(N^3 log L): for set-up and tests, not for a training
    step. Lambda (M,), P (rank, M), B (M,) (unused: kept for a uniform signature), C (M,), dt
    scalar, L static int -> C~ (M,).
    """
    del B
    cdtype = _complex_dtype(Lambda, P, C)
    Lambda, P, C = (jnp.asarray(x, cdtype) for x in (Lambda, P, C))
    Q = None if Q is None else jnp.asarray(Q, cdtype)
    T = _one_minus_power_real_T(Lambda, P, dt, L, Q)
    return _complex_readout(T @ _real_readout(C), Lambda.shape[-1])


@functools.partial(jax.jit, static_argnames=('L',))
@full_precision
def dplr_c_from_tilde(Lambda, P, B, C_tilde, dt, L: int, Q=None):
    """Inverse of `dplr_c_tilde`: C = ((I - Ab^L)^T)^-1 C~ (first half). Shapes as there.

    This is the readout the recurrent view needs when C~ is what was trained.
    """
    del B
    cdtype = _complex_dtype(Lambda, P, C_tilde)
    Lambda, P, C_tilde = (jnp.asarray(x, cdtype) for x in (Lambda, P, C_tilde))
    Q = None if Q is None else jnp.asarray(Q, cdtype)
    T = _one_minus_power_real_T(Lambda, P, dt, L, Q)
    c_r = jnp.linalg.solve(T, _real_readout(C_tilde)[:, None])[:, 0]
    return _complex_readout(c_r, Lambda.shape[-1])


# ----------------------------------------------------------------------------- Cauchy


def roots_of_unity(L: int, dtype=jnp.complex64):
    """w_k = exp(-2 pi i k / L), k < L. (L,) complex (a constant: computed in numpy)."""
    return jnp.asarray(np.exp((-2j * np.pi / L) * np.arange(L)), dtype)


def _inverse_den(alpha, beta, y):
    """(Re, Im) of 1/Den, Den = alpha^2 + (beta - y)(beta + y) - 2i alpha y, as two (M, K)
    arrays (modes first) for alpha, beta (M,), y (K,)."""
    a, b, yk = alpha[:, None], beta[:, None], y[None, :]
    re = a * a + (b - yk) * (b + yk)
    im = -2.0 * a * yk
    q = 1.0 / (re * re + im * im)
    return re * q, -im * q


@jax.custom_vjp
@full_precision
def _cauchy_products(alpha, beta, y, vv):
    """(Re(1/Den)^T @ vv, Im(1/Den)^T @ vv), each (K, J2), for alpha, beta (M,), y (K,),
    vv (M, J2) real.

    A custom VJP: autodiff would store (or, under remat, recompute and re-traverse) several
    (M, K) intermediates per channel; the hand-written backward recomputes 1/Den once and
    needs matrix products and one elementwise pass (d(1/Den) = -Den^-2 dDen). The (M, K)
    orientation keeps every product's contraction on a fast axis for XLA:CPU's batched dots.
    """
    gr, gi = _inverse_den(alpha, beta, y)
    return gr.T @ vv, gi.T @ vv


@full_precision
def _cauchy_products_fwd(alpha, beta, y, vv):
    return _cauchy_products(alpha, beta, y, vv), (alpha, beta, y, vv)


@full_precision
def _cauchy_products_bwd(res, ct):
    alpha, beta, y, vv = res
    ct_r, ct_i = ct  # (K, J2)
    gr, gi = _inverse_den(alpha, beta, y)  # (M, K)
    gr_bar, gi_bar = vv @ ct_r.T, vv @ ct_i.T  # cotangents of Re(1/Den), Im(1/Den): (M, K)
    # Z = -conj(g_bar) G^2; dL/dtheta = Re(Z dDen/dtheta) with dDen/dalpha = 2 alpha - 2i y,
    # dDen/dbeta = 2 beta, dDen/dy = -2 y - 2i alpha.
    p, q = gr * gr - gi * gi, 2.0 * gr * gi
    zr = -(gr_bar * p + gi_bar * q)
    zi = -(gr_bar * q - gi_bar * p)
    zr_m = jnp.sum(zr, axis=1)
    alpha_bar = 2.0 * alpha * zr_m + 2.0 * (zi @ y)
    beta_bar = 2.0 * beta * zr_m
    y_bar = -2.0 * y * jnp.sum(zr, axis=0) + 2.0 * (alpha @ zi)
    return alpha_bar, beta_bar, y_bar, gr @ ct_r + gi @ ct_i


_cauchy_products.defvjp(_cauchy_products_fwd, _cauchy_products_bwd)


@full_precision
def cauchy_conj_sums(v, Lambda, dt, L: int):
    """Cauchy sums over each mode and its conjugate at the roots of unity w_k, k < ceil(L/2).

    s_j(w) = sum_n v_jn r_n(w) + conj(v_jn) r~_n(w),  r_n(w) = (2/(1+w)) / (g(w) - Lambda_n),
    r~_n the same with conj(Lambda_n), g(w) = (2/dt)(1-w)/(1+w). On the unit circle
    g(w_k) = i y_k with y_k = (2/dt) tan(pi k / L) real, and with Lambda = alpha + i beta
    v/(g - Lambda) + conj(v)/(g - conj Lambda) = (g 2Re(v) - 2Re(v conj Lambda)) / Den,
    Den = (g - Lambda)(g - conj Lambda) = alpha^2 + (beta - y)(beta + y) - 2i alpha y,
    so the sums are real matrix products with Re(1/Den), Im(1/Den) (no complex arithmetic on
    the (K, M) grid; fast on CPUs). The Nyquist node w = -1 (k = L/2, where g is infinite) is
    left to the caller.
    v (J, M) complex, Lambda (M,), dt scalar, L static -> s (ceil(L/2), J) complex.
    """
    rdtype = jnp.real(Lambda).dtype
    k = np.arange((L + 1) // 2)  # L is static: the node constants are computed once, in numpy
    y = (2.0 / dt) * jnp.asarray(np.tan(np.pi * k / L), rdtype)  # (K,)
    w = jnp.asarray(np.exp((-2j * np.pi / L) * k), jnp.result_type(rdtype, jnp.complex64))
    v1 = 2.0 * jnp.real(v)  # (J, M)
    v2 = 2.0 * jnp.real(v * jnp.conj(Lambda)[None, :])
    sums = jax.lax.complex(*_cauchy_products(jnp.real(Lambda), jnp.imag(Lambda), y,
                                             jnp.concatenate([v1, v2]).T))  # (K, 2J)
    j = v.shape[0]  # sums = sum_n [v1 | v2]_n / Den_n
    s1, s2 = sums[:, :j], sums[:, j:]
    return (2.0 / (1.0 + w))[:, None] * ((1j * y)[:, None] * s1 - s2)


@functools.partial(jax.jit, static_argnames=('L',))
@full_precision
def cauchy_dplr(Lambda, P, B, C_tilde, dt, L: int, Q=None):
    """S4 kernel of the conjugate-completed DPLR system (bilinear), via Cauchy + Woodbury.

    The S4 paper's Cauchy + Woodbury kernel (Gu, Goel & Re, ICLR 2022, appendix C.3) on the
    completed system, at the L//2 + 1 roots
    of unity w_k (the kernel is real, so the other half is conjugate): every Cauchy sum runs
    over both halves (`cauchy_conj_sums`) BEFORE the Woodbury step,
    Khat(w) = s(C~,B) - c s(C~,P) (I + c s(Q^*,P))^-1 s(Q^*,B), c = (1+w)/2,
    which is 2/(1+w) [k(C~,B) - k(C~,P)(1 + k(Q^*,P))^-1 k(Q^*,B)] with the low-rank part
    multiplied through by (1+w)/2; at the Nyquist node w = -1 (even L) Khat = dt Re(C~ . B)
    exactly. K = irfft(Khat, L).
    Needs Re(Lambda) < 0 wherever a node can meet an eigenvalue (hippo.nplr, max_real).
    Lambda (M,), P (rank, M), B (M,), C_tilde (M,), dt scalar, L static int,
    Q (rank, M) or None (= P) -> K (L,) real.
    """
    Q = P if Q is None else Q
    cdtype = _complex_dtype(Lambda, P, B, C_tilde, Q)
    Lambda, P, B, C_tilde, Q = (jnp.asarray(x, cdtype) for x in (Lambda, P, B, C_tilde, Q))
    rank = P.shape[0]
    Qc = jnp.conj(Q)
    v = jnp.concatenate([
        (C_tilde * B)[None],  # s(C~, B)
        C_tilde[None] * P,  # s(C~, P_i), rank rows
        Qc * B[None],  # s(Q_i^*, B), rank rows
        (Qc[:, None, :] * P[None, :, :]).reshape(rank * rank, -1),  # s(Q_i^*, P_j)
    ])
    s = cauchy_conj_sums(v, Lambda, dt, L)  # (ceil(L/2), 1 + 2 rank + rank^2)
    s_cb, s_cp = s[:, 0], s[:, 1:1 + rank]
    s_qb = s[:, 1 + rank:1 + 2 * rank]
    s_qp = s[:, 1 + 2 * rank:].reshape(-1, rank, rank)
    c = (1.0 + roots_of_unity(L, cdtype)[:(L + 1) // 2]) / 2.0
    if rank == 1:
        corr = s_cp[:, 0] * s_qb[:, 0] / (1.0 + c * s_qp[:, 0, 0])
    else:
        eye = jnp.eye(rank, dtype=cdtype)
        sol = jnp.einsum("kij,kj->ki", small_inverse(eye + c[:, None, None] * s_qp), s_qb)
        corr = jnp.sum(s_cp * sol, axis=-1)
    k_hat = s_cb - c * corr
    if L % 2 == 0:  # Nyquist node w = -1: (I + Ab)^-1 Bb = dt B / 2, so Khat = dt Re(C~ . B)
        nyquist = dt * jnp.real(jnp.sum(C_tilde * B))
        k_hat = jnp.concatenate([k_hat, nyquist.astype(cdtype)[None]])
    return jnp.fft.irfft(k_hat, n=L)
