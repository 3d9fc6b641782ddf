"""HiPPO matrices, rank corrections, NPLR -> DPLR and S4D initialisations (float64 numpy)."""

import numpy as np
import pytest

from s4dm_jax.ssm import hippo

S3 = np.sqrt(3.0)
S5 = np.sqrt(5.0)


def test_legs_n3_oracle():
    A, B = hippo.transition("legs", 3)
    want = [[-1, 0, 0], [-1.732051, -2, 0], [-2.236068, -3.872983, -3]]
    np.testing.assert_allclose(A, want, atol=1e-6)
    np.testing.assert_allclose(B, [1, 1.732051, 2.236068], atol=1e-6)
    assert A.dtype == np.float64 and B.shape == (3,)


def test_legt_n4_oracle():
    A, B = hippo.transition("legt", 4)
    np.testing.assert_allclose(A[0], [-0.5, 0.866025, -1.118034, 1.322876], atol=1e-6)
    np.testing.assert_allclose(B, [0.5, 0.866025, 1.118034, 1.322876], atol=1e-6)
    # lower triangle (n >= k) is -0.5 r_n r_k without sign flips
    np.testing.assert_allclose(A[2, 1], -0.5 * S5 * S3)


def test_lagt_oracle():
    A, B = hippo.transition("lagt", 4)
    want = -np.tril(np.ones((4, 4))) + 0.5 * np.eye(4)
    np.testing.assert_array_equal(A, want)
    assert np.all(np.diag(A) == -0.5) and A[3, 0] == -1 and A[0, 3] == 0
    np.testing.assert_array_equal(B, np.ones(4))


def test_fout_structure():
    A, B = hippo.transition("fout", 4)
    r2 = np.sqrt(2.0)
    np.testing.assert_allclose(B, [1, 0, r2, 0])
    # pi*(-diag(d,1) + diag(d,-1)) with d = [0, 0, 1], minus B B^T
    S = np.zeros((4, 4))
    S[2, 3], S[3, 2] = -np.pi, np.pi
    np.testing.assert_allclose(A, S - np.outer(B, B), atol=1e-14)
    assert hippo.transition("fout", 8)[0].shape == (8, 8)


@pytest.mark.parametrize("measure,rank", [("legs", 1), ("legt", 2), ("lagt", 1), ("fout", 1)])
def test_rank_correction_makes_normal(measure, rank):
    N = 12
    P = hippo.rank_correction(measure, N)
    assert P.shape == (rank, N)
    S = hippo.normal_part(measure, N)
    np.testing.assert_allclose(S @ S.T, S.T @ S, atol=1e-10)
    # S - mean(diag) I is skew-symmetric, so Re(Lambda) is constant
    S0 = S - np.mean(np.diag(S)) * np.eye(N)
    np.testing.assert_allclose(S0, -S0.T, atol=1e-12)


def test_legs_rank_correction_values():
    P = hippo.rank_correction("legs", 5)
    np.testing.assert_allclose(P[0], np.sqrt(np.arange(5) + 0.5))
    np.testing.assert_allclose(P[0], hippo.transition("legs", 5)[1] / np.sqrt(2))


def test_legs_eigenvalues():
    A, _ = hippo.transition("legs", 10)
    np.testing.assert_allclose(np.sort(np.linalg.eigvals(A).real), -np.arange(10, 0, -1.0),
                               atol=1e-8)


def test_nplr_legs_n8_oracle():
    Lam, P, B, V = hippo.nplr("legs", 8)
    want = -0.5 - 1j * np.array([19.85741, 5.354209, 1.957794, 0.427489])
    np.testing.assert_allclose(Lam, want, atol=1e-6)
    assert Lam.dtype == np.complex128
    assert P.shape == (1, 4) and B.shape == (4,) and V.shape == (8, 4)
    assert np.all(np.diff(Lam.imag) > 0)


@pytest.mark.parametrize("measure", ["legs", "legt", "lagt", "fout"])
@pytest.mark.parametrize("N", [4, 16, 64])
def test_nplr_full_reconstructs_A(measure, N):
    A, B = hippo.transition(measure, N)
    Lam, Pt, Bt, V = hippo.nplr_full(measure, N)
    np.testing.assert_allclose(V.conj().T @ V, np.eye(N), atol=1e-10)
    np.testing.assert_allclose(hippo.reconstruct(Lam, Pt, V), A, atol=1e-9 * N)
    np.testing.assert_allclose(V @ Bt, B, atol=1e-10 * N)


@pytest.mark.parametrize("measure", ["legs", "legt", "lagt", "fout"])
def test_nplr_half_modes_reconstruct_A(measure):
    """The M kept modes and their conjugates describe A: A = 2Re(V L V^*) - (2Re V P~)(..)^T
    (fout with max_real = -1e-4: A - 1e-4 I)."""
    N = 16
    A, B = hippo.transition(measure, N)
    shift = 1e-4 if measure == "fout" else 0.0
    Lam, Pt, Bt, V = hippo.nplr(measure, N, max_real=-shift if shift else None)
    assert np.all(Lam.imag <= 1e-9)
    Pr = 2 * (V @ Pt.T).real
    A_rec = 2 * (V @ np.diag(Lam) @ V.conj().T).real - Pr @ Pr.T
    P_want = hippo.rank_correction(measure, N)
    if measure == "fout":  # the dead state 1 is damped: A - e1 e1^T, P = [B; e1]
        A = A - np.outer(np.eye(N)[1], np.eye(N)[1]) * hippo.FOUT_DEAD_STATE_DAMPING ** 2
        P_want = np.concatenate([P_want, np.eye(1, N, 1) * hippo.FOUT_DEAD_STATE_DAMPING])
    np.testing.assert_allclose(A_rec, A - shift * np.eye(N), atol=1e-10)
    np.testing.assert_allclose(2 * (V @ Bt).real, B, atol=1e-10)
    np.testing.assert_allclose(Pr, P_want.T, atol=1e-10)


@pytest.mark.parametrize("measure", ["legs", "legt", "lagt"])
def test_nplr_b_is_real_and_max_real_clamps(measure):
    """Phase convention: B~ real >= 0 (no Im(B~) clipping needed); max_real clamps Re(Lambda)."""
    Lam, P, B, _ = hippo.nplr(measure, 32)
    np.testing.assert_allclose(B.imag, 0.0, atol=1e-12)
    assert np.all(B.real >= -1e-12)
    if measure == "legs":
        np.testing.assert_allclose(P[0], B / np.sqrt(2), atol=1e-12)
        np.testing.assert_allclose(Lam.real, -0.5, atol=1e-12)
    else:
        np.testing.assert_allclose(Lam.real, 0.0, atol=1e-12)
    Lc, _, _, _ = hippo.nplr(measure, 32, max_real=-1e-4)
    np.testing.assert_allclose(Lc.real, np.minimum(Lam.real, -1e-4))
    np.testing.assert_allclose(Lc.imag, Lam.imag)


@pytest.mark.parametrize("fn", [lambda N: hippo.nplr("legs", N), hippo.s4d_lin, hippo.s4d_inv,
                                hippo.s4d_legs, lambda N: hippo.transition("fout", N)])
def test_odd_N_raises(fn):
    with pytest.raises(ValueError, match="even"):
        fn(7)


def test_unknown_measure_raises():
    with pytest.raises(ValueError, match="measure"):
        hippo.transition("legx", 4)


def test_s4d_values():
    lin = hippo.s4d_lin(8)
    np.testing.assert_allclose(lin, -0.5 - 1j * np.pi * np.arange(4))
    inv = hippo.s4d_inv(64)
    assert inv.shape == (32,)
    np.testing.assert_allclose(inv[0], -0.5 - 1283.425461j, atol=1e-6)
    np.testing.assert_allclose(inv[3], -0.5 - 1j * (64 / np.pi) * (64 / 7 - 1))
    Lam, B = hippo.s4d_legs(8)
    np.testing.assert_allclose(Lam, hippo.nplr("legs", 8)[0])
    np.testing.assert_allclose(B, hippo.nplr("legs", 8)[2])
