"""HiPPO transition matrices, their rank corrections and the NPLR -> DPLR decomposition.

Everything here runs once at initialisation, so it is plain numpy in float64 / complex128
(Gu, Dao, Ermon, Rudra & Re, "HiPPO: Recurrent Memory with Optimal Polynomial Projections",
NeurIPS 2020; Gu, Goel & Re, "Efficiently Modeling Long Sequences with Structured State
Spaces", ICLR 2022, section 3.2 and appendix C.1; S4D-Lin/Inv: Gu, Gupta, Goel & Re, "On the
Parameterization and Initialization of Diagonal State Space Models", NeurIPS 2022; official
code: state-spaces/s4, src/models/hippo/hippo.py, `transition`, `rank_correction`, `nplr`;
docs/ssm.md).
Indices n (row) and k (column) start at 0.
"""

from __future__ import annotations

import numpy as np

MEASURES = ("legs", "legt", "lagt", "fout")
FOUT_DEAD_STATE_DAMPING = 1.0  # see nplr: decay rate given to FouT's never-excited state 1


def _check_measure(measure: str) -> None:
    if measure not in MEASURES:
        raise ValueError(f"unknown HiPPO measure {measure!r}; expected one of {MEASURES}")


def _check_even(N: int, what: str) -> int:
    """Return M = N // 2, raising for odd or non-positive N (a conjugate pair needs 2 states)."""
    N = int(N)
    if N <= 0 or N % 2:
        raise ValueError(
            f"{what} needs an even state size N > 0 (it keeps N//2 conjugate-pair modes and "
            f"outputs 2*Re), got N={N}; use an even N such as {max(2, N + 1)}")
    return N // 2


def transition(measure: str, N: int) -> tuple[np.ndarray, np.ndarray]:
    """HiPPO state matrices (state-spaces/s4 `transition`).

    Args: measure in {"legs", "legt", "lagt", "fout"}; N state size.
    Returns: A (N, N) float64, B (N,) float64.
    """
    _check_measure(measure)
    N = int(N)
    if N <= 0:
        raise ValueError(f"state size N must be positive, got {N}")
    n = np.arange(N, dtype=np.float64)
    r = np.sqrt(2 * n + 1)
    if measure == "legs":
        # A[n,k] = -r_n r_k (n > k), -(n+1) (n == k), 0 (n < k); B = r.
        A = -np.tril(np.outer(r, r), -1) - np.diag(n + 1)
        B = r.copy()
    elif measure == "legt":
        # A[n,k] = -0.5 r_n r_k * (1 if n >= k else (-1)^(n-k)); B = 0.5 r.
        nn, kk = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
        sign = np.where(nn >= kk, 1.0, (-1.0) ** ((nn - kk) % 2))
        A = -0.5 * np.outer(r, r) * sign
        B = 0.5 * r
    elif measure == "lagt":
        # beta = 1: A = 0.5 I - tril(ones); B = ones.
        A = 0.5 * np.eye(N) - np.tril(np.ones((N, N)))
        B = np.ones(N)
    else:  # fout
        M = _check_even(N, "the 'fout' measure")
        freqs = np.arange(M, dtype=np.float64)
        d = np.stack([np.zeros(M), freqs], axis=-1).reshape(-1)[1:]
        B = np.zeros(N)
        B[0::2] = np.sqrt(2.0)
        B[0] = 1.0
        A = np.pi * (-np.diag(d, 1) + np.diag(d, -1)) - np.outer(B, B)
    return A, B


def rank_correction(measure: str, N: int) -> np.ndarray:
    """Low-rank P with A + P^T P normal (state-spaces/s4 `rank_correction`).

    Returns: P (rank, N) float64; rank 2 for legt, 1 otherwise.
    """
    _check_measure(measure)
    N = int(N)
    n = np.arange(N, dtype=np.float64)
    if measure == "legs":
        return np.sqrt(n + 0.5)[None, :]
    if measure == "legt":
        r = np.sqrt(2 * n + 1)
        P0 = np.where(np.arange(N) % 2 == 1, r, 0.0)  # odd indices
        P1 = np.where(np.arange(N) % 2 == 0, r, 0.0)  # even indices
        return np.stack([P0, P1]) * 2**-0.5
    if measure == "lagt":
        return np.full((1, N), 0.5**0.5)
    return transition("fout", N)[1][None, :]


def normal_part(measure: str, N: int) -> np.ndarray:
    """S = A + sum_r P_r P_r^T (N, N) float64, the normal matrix of the NPLR form."""
    A, _ = transition(measure, N)
    P = rank_correction(measure, N)
    return A + P.T @ P


def _real_pair_vector(V0: np.ndarray) -> np.ndarray:
    """For a 2-dim real eigenspace spanned by the columns of V0 (N, 2), return v (N,) with
    v, conj(v) orthonormal and spanning it (so the kept mode and its conjugate cover it)."""
    R = np.concatenate([V0.real, V0.imag], axis=1)
    U, s, _ = np.linalg.svd(R, full_matrices=False)
    r1, r2 = U[:, 0], U[:, 1]  # real orthonormal basis of the eigenspace
    return (r1 + 1j * r2) / np.sqrt(2.0)


def nplr_full(measure: str, N: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All N modes of the NPLR -> DPLR change of basis (S4 appendix C.1), before truncation.

    S = A + P^T P; Re(Lambda) = mean(diag S); (Im(Lambda), V) = eigh(-1j (S - Re(Lambda) I)).
    Returns: Lambda (N,), P~ (rank, N), B~ (N,), V (N, N) complex128, sorted by Im(Lambda);
    A == V (diag(Lambda) - P~^T conj(P~)) V^*  (see `reconstruct`).
    """
    A, B = transition(measure, N)
    P = rank_correction(measure, N)
    S = A + P.T @ P
    re = np.mean(np.diagonal(S))
    w_im, V = np.linalg.eigh(-1j * (S - re * np.eye(N)))
    order = np.argsort(w_im, kind="stable")
    w_im, V = w_im[order], V[:, order]
    Lambda = re + 1j * w_im
    Vh = V.conj().T
    return Lambda, P @ V.conj(), Vh @ B, V


def reconstruct(Lambda: np.ndarray, P: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Dense A from a full DPLR basis: V (diag(Lambda) - P^T conj(P)) V^*.

    Lambda (N,), P (rank, N), V (N, N) -> A (N, N) complex.
    """
    return V @ (np.diag(Lambda) - P.T @ P.conj()) @ V.conj().T


def nplr(measure: str, N: int, max_real: float | None = None):
    """Diagonal-plus-low-rank form of a HiPPO matrix, M = N // 2 conjugate modes kept.

    Implements "NPLR -> DPLR": keeps the M modes with Im(Lambda) <= 0 (sorted ascending),
    P~ = V^* P, B~ = V^* B. The M modes stand for the real N-state system of their conjugate
    completion, diag([Lambda, conj Lambda]) - [P~, conj P~][P~, conj P~]^* in the basis
    [V, conj V] (the halves are coupled through P~; see ssm.kernels): for a real readout c,
    C = c V gives exactly the HiPPO system (A, B, c). Eigenvector phases are chosen so that
    B~ is real and >= 0 (no clipping of Im(B~) is needed, unlike the official code's
    B_clip, which changes the system). A zero-frequency conjugate pair (fout) is represented
    by one complex mode whose vector spans the 2-dim real eigenspace with its conjugate.

    Re(Lambda) is the same for every mode: -1/2 for legs, 0 for legt, lagt and fout (their
    normal part is skew-symmetric). `max_real` clamps it, Re(Lambda) <- min(Re(Lambda),
    max_real), which is exactly the DPLR form of A - (Re(Lambda) - max_real)^+ I (what the S4
    layer's Re(Lambda) <= -1e-4 clamp does). fout has an exact zero eigenvalue (its state 1,
    sin(0 t), is a dead state), a pole of the DPLR Cauchy kernel at w = 1: it needs
    max_real < 0 and raises otherwise; its never-excited state 1 is also damped (rank 2, same
    kernels; see the code comment).
    Args: measure, N even, max_real None or a float.
    Returns: Lambda (M,), P (rank, M), B (M,) (imaginary part 0), V (N, M), complex128.
    Raises: ValueError for odd N, or fout without max_real < 0.
    """
    M = _check_even(N, "nplr")
    _, B = transition(measure, N)
    P = rank_correction(measure, N)
    if measure == "fout":
        # FouT's state 1 (sin(0 t)) is dead: its row and column of A and its entry of B are 0,
        # so it is never excited and never feeds another state. Damping it,
        # A - e1 e1^T = S - [P; e1]^T [P; e1], leaves every kernel c Ab^l Bb unchanged but keeps
        # I - Ab^L well conditioned (the C~ -> C readout conversion needs that in float32).
        # The DPLR form becomes rank 2; Lambda and V are those of the same normal part S.
        P = np.concatenate([P, np.eye(1, N, 1) * FOUT_DEAD_STATE_DAMPING])
    Lambda, _, _, V_all = nplr_full(measure, N)
    Lambda, V = Lambda[:M].copy(), V_all[:, :M].copy()
    tol = 1e-4
    if M >= 2 and abs(Lambda[M - 2].imag) < tol:
        raise ValueError(f"measure {measure!r}, N={N}: more than one zero-frequency mode")
    if abs(Lambda[M - 1].imag) < tol:
        # Modes M-1 and M both have frequency ~0: their joint eigenspace is real.
        V[:, M - 1] = _real_pair_vector(V_all[:, M - 1:M + 1])
        Lambda[M - 1] = Lambda[M - 1].real
    # Phase convention: V[:, m] -> V[:, m] e^{i phi_m} with B~_m = V[:, m]^* B real >= 0.
    Bt = V.conj().T @ B
    V = V * np.exp(1j * np.angle(Bt))[None, :]
    Bt = V.conj().T @ B
    Pt = P @ V.conj()
    if max_real is not None:
        Lambda = np.minimum(Lambda.real, max_real) + 1j * Lambda.imag
    if np.any(np.abs(Lambda) < 1e-9):
        raise ValueError(
            f"nplr({measure!r}, {N}) has an exact zero eigenvalue (FouT's state 1 is identically "
            "zero), a pole of the DPLR Cauchy kernel at w = 1. Pass max_real < 0 (the S4 layer "
            "uses -1e-4) for the DPLR form of A - |max_real| I, or use transition() with the "
            "dense kernels.")
    return Lambda, Pt, Bt.real.astype(np.complex128), V


def s4d_lin(N: int) -> np.ndarray:
    """S4D-Lin: Lambda_n = -1/2 - i pi n, n < N // 2. Returns Lambda (M,) complex128."""
    M = _check_even(N, "s4d_lin")
    return -0.5 - 1j * np.pi * np.arange(M)


def s4d_inv(N: int) -> np.ndarray:
    """S4D-Inv: Lambda_n = -1/2 - i (N/pi)(N/(2n+1) - 1), n < N // 2. Returns (M,) complex128."""
    M = _check_even(N, "s4d_inv")
    n = np.arange(M)
    return -0.5 - 1j * (N / np.pi) * (N / (2 * n + 1) - 1)


def s4d_legs(N: int) -> tuple[np.ndarray, np.ndarray]:
    """S4D-LegS: the diagonal part of the LegS DPLR form. Returns Lambda (M,), B (M,) complex128."""
    Lambda, _, B, _ = nplr("legs", N)
    return Lambda, B
