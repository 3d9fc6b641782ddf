"""S4 / S4D layer and the S4 residual block (Flax linen).

S4Layer maps H channels independently with one linear SSM each, through two call paths that
compute the same function:
  * `__call__(u [B,L,H])`: convolution path (kernel K [L,H], causal FFT convolution) for training;
  * `step(state, u_t [B,H])`: recurrent path with an explicit complex state [B,H,M], O(M H) per
    step, for inference.

Kernel modes:
  * "dplr" (S4): A = Lambda - P P^*, bilinear discretisation, kernel by Cauchy + Woodbury.
    The layer learns C itself (not the official C_tilde): the convolution path turns it into
    C_tilde = (I - Ab^L)^T C for the actual input length L on every call (`dplr_c_tilde_scan`,
    O(L M) per channel, equal to ssm.kernels.dplr_c_tilde), and `step` uses C directly. So the
    step path needs no matrix inverse or power, reproduces the convolution path for any
    sequence length and runs past the training length without re-baking C. (The price: an
    L-step scan per layer in the training forward pass.)
  * "diag" (S4D): A = diag(Lambda), kernel by Vandermonde, "zoh" or "bilinear" discretisation.

Parameters (complex values as real pairs): Lambda_re/_im [n_ssm, M], P_re/_im [n_ssm, r, M]
(dplr only), B_re/_im [n_ssm, M], C_re/_im [H, M], D [H], log_dt [H]. M = d_state // 2 modes
of a conjugate-symmetric system (outputs are 2 Re(.)). `n_ssm` copies of (Lambda, P, B) are
shared by the H channels (n_ssm = 1: tied across channels, the official S4 `n_ssm=1` option;
n_ssm = H: fully independent); C, D and dt are always per channel. Re(Lambda) is clipped to
<= -1e-4 when used. The SSM parameters (Lambda, P, B, log_dt) are what `ssm_param_mask` selects.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from s4dm_jax.ssm import conv, discretize, hippo, kernels, recurrence

MEASURES = ("legs", "legt", "lagt", "fout")
INITS = MEASURES + ("diag-lin", "diag-inv")
MAX_RE_LAMBDA = -1e-4


@functools.lru_cache(maxsize=64)
def ssm_init_arrays(init: str, d_state: int, mode: str):
    """Cached `_ssm_init_arrays` (Flax runs `setup`, and so this, on every init, apply and
    trace; the N x N eigendecomposition of `hippo.nplr` is not free). Arrays are read-only."""
    arrays = _ssm_init_arrays(init, d_state, mode)
    for a in arrays:
        if a is not None:
            a.flags.writeable = False
    return arrays


def _ssm_init_arrays(init: str, d_state: int, mode: str):
    """Initial (Lambda (M,), P (r, M) or None, B (M,)) complex128 numpy for an init name.

    dplr + measure: NPLR of the HiPPO measure. dplr + diag-*: S4D eigenvalues, B = 1, P = 0
    (rank 1; P then stays 0 in training since its gradient vanishes at 0). diag + legs: S4D-LegS
    (hippo.s4d_legs); diag + other measures: the NPLR's diagonal part (Lambda, B), P dropped;
    diag-lin / diag-inv: S4D-Lin / S4D-Inv with B = 1.
    """
    if init not in INITS:
        raise ValueError(f"unknown S4 init {init!r}; choose one of {INITS}")
    if d_state % 2:
        raise ValueError(f"d_state={d_state} must be even (N/2 conjugate modes are kept)")
    m = d_state // 2
    if init in MEASURES:
        if mode == "diag" and init == "legs":
            lam, b = hippo.s4d_legs(d_state)
            return np.asarray(lam, np.complex128), None, np.asarray(b, np.complex128)
        lam, p, b, _ = hippo.nplr(init, d_state)
        lam, p, b = (np.asarray(z, np.complex128) for z in (lam, p, b))
        return lam, (p if mode == "dplr" else None), b
    lam = hippo.s4d_lin(d_state) if init == "diag-lin" else hippo.s4d_inv(d_state)
    lam = np.asarray(lam, np.complex128)
    p = np.zeros((1, m), np.complex128) if mode == "dplr" else None
    return lam, p, np.ones(m, np.complex128)


def _const_init(value: np.ndarray):
    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.broadcast_to(jnp.asarray(value, dtype), shape)

    return init


def _log_dt_init(dt_min: float, dt_max: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, math.log(dt_min), math.log(dt_max))

    return init


def dplr_c_tilde_scan(Lambda, P, B, C, dt, length: int):
    """C~ = (I - Ab^L)^T C in O(L M rank) (same value as ssm.kernels.dplr_c_tilde).

    A = diag(Lambda) - P^T conj(P) gives A^T = diag(Lambda) - conj(P)^T P, again DPLR, and
    Ab^T is the bilinear discretisation of A^T (Ab is a rational function of A). So (Ab^T)^L C
    is L zero-input DPLR steps from x0 = C (ssm.recurrence.dplr_scan), with no dense M x M
    matrix power or inverse. Lambda (M,), P (r, M), B (M,), C (M,) complex, dt scalar -> (M,).
    """
    pc = jnp.conj(P)
    x_l, _ = recurrence.dplr_scan(Lambda, pc, pc, B, C, dt, jnp.zeros((length,), dt.dtype),
                                  x0=C)
    return C - x_l


class S4Layer(nn.Module):
    """H independent SSM channels (see the module docstring).

    Attributes:
      d_model: channels H.
      d_state: state size N (even; M = N/2 complex modes are stored).
      mode: "dplr" (S4, Cauchy kernel, bilinear only) or "diag" (S4D, Vandermonde kernel).
      ssm_init: "legs" | "legt" | "lagt" | "fout" | "diag-lin" | "diag-inv".
      discretization: "bilinear" | "zoh" ("zoh" needs mode="diag").
      n_ssm: number of (Lambda, P, B) copies shared by the channels (divides H).
      dt_min, dt_max: range of the log-uniform dt init.
    """

    d_model: int
    d_state: int = 64
    mode: str = "dplr"
    ssm_init: str = "legs"
    discretization: str = "bilinear"
    n_ssm: int = 1
    dt_min: float = 1e-3
    dt_max: float = 1e-1

    def setup(self):
        if self.mode not in ("dplr", "diag"):
            raise ValueError(f"S4Layer mode must be 'dplr' or 'diag', got {self.mode!r}")
        if self.discretization not in ("bilinear", "zoh"):
            raise ValueError(f"discretization must be 'bilinear' or 'zoh', got "
                             f"{self.discretization!r}")
        if self.mode == "dplr" and self.discretization != "bilinear":
            raise ValueError("mode='dplr' (Cauchy kernel) is defined for bilinear "
                             "discretisation only; use mode='diag' for zoh")
        if self.d_model % self.n_ssm:
            raise ValueError(f"n_ssm={self.n_ssm} must divide d_model={self.d_model}")
        lam, p, b = ssm_init_arrays(self.ssm_init, self.d_state, self.mode)
        m, s = lam.shape[0], self.n_ssm
        self.Lambda_re = self.param("Lambda_re", _const_init(lam.real), (s, m))
        self.Lambda_im = self.param("Lambda_im", _const_init(lam.imag), (s, m))
        if p is not None:
            self.P_re = self.param("P_re", _const_init(p.real), (s, *p.shape))
            self.P_im = self.param("P_im", _const_init(p.imag), (s, *p.shape))
        self.B_re = self.param("B_re", _const_init(b.real), (s, m))
        self.B_im = self.param("B_im", _const_init(b.imag), (s, m))
        std = 0.5 ** 0.5  # complex normal with unit variance
        self.C_re = self.param("C_re", nn.initializers.normal(std), (self.d_model, m))
        self.C_im = self.param("C_im", nn.initializers.normal(std), (self.d_model, m))
        self.D = self.param("D", nn.initializers.normal(1.0), (self.d_model,))
        self.log_dt = self.param("log_dt", _log_dt_init(self.dt_min, self.dt_max),
                                 (self.d_model,))

    # ------------------------------------------------------------------ parameters per channel
    def _channel_params(self):
        """Per-channel complex (Lambda [H,M], P [H,r,M] | None, B [H,M], C [H,M]) and dt [H]."""
        rep = self.d_model // self.n_ssm

        def per_channel(x):
            return jnp.repeat(x, rep, axis=0)

        lam = jax.lax.complex(jnp.minimum(self.Lambda_re, MAX_RE_LAMBDA), self.Lambda_im)
        b = jax.lax.complex(self.B_re, self.B_im)
        p = jax.lax.complex(self.P_re, self.P_im) if self.mode == "dplr" else None
        c = jax.lax.complex(self.C_re, self.C_im)
        lam, b = per_channel(lam), per_channel(b)
        p = per_channel(p) if p is not None else None
        return lam, p, b, c, jnp.exp(self.log_dt)

    def kernel(self, length: int) -> jax.Array:
        """Convolution kernel K [L, H] (real): K[l, h] = 2 Re(C_h Ab_h^l Bb_h)."""
        lam, p, b, c, dt = self._channel_params()
        if self.mode == "dplr":
            def one(lam_h, p_h, b_h, c_h, dt_h):
                ct = dplr_c_tilde_scan(lam_h, p_h, b_h, c_h, dt_h, length)
                return kernels.cauchy_dplr(lam_h, p_h, b_h, ct, dt_h, length)

            k = jax.vmap(one)(lam, p, b, c, dt)
        else:
            def one(lam_h, b_h, c_h, dt_h):
                return kernels.vandermonde(lam_h, b_h, c_h, dt_h, length,
                                           method=self.discretization)

            k = jax.vmap(one)(lam, b, c, dt)
        return k.T  # [L, H]

    def __call__(self, u: jax.Array) -> jax.Array:
        """Convolution path: u [B, L, H] -> y [B, L, H], y = K * u + D u (causal)."""
        k = self.kernel(u.shape[1]).astype(u.dtype)
        return jax.vmap(conv.causal_conv, in_axes=(0, None, None))(u, k, self.D)

    # ------------------------------------------------------------------ recurrent path
    def init_state(self, batch_size: int, dtype=jnp.complex64) -> jax.Array:
        """Zero state [B, H, M] (complex)."""
        return s4_init_state(batch_size, self.d_model, self.d_state, dtype)

    def step(self, state: jax.Array, u_t: jax.Array):
        """Recurrent path: state [B,H,M] complex, u_t [B,H] -> (state, y_t [B,H])."""
        lam, p, b, c, dt = self._channel_params()
        if self.mode == "dplr":
            def one(lam_h, p_h, b_h, c_h, dt_h, x_h, u_h):
                return recurrence.dplr_step(lam_h, p_h, p_h, b_h, c_h, dt_h, x_h, u_h)

            channels = jax.vmap(one)
            state, y = jax.vmap(channels, in_axes=(None,) * 5 + (0, 0))(
                lam, p, b, c, dt, state, u_t)
        else:
            disc = (discretize.zoh_diag if self.discretization == "zoh"
                    else discretize.bilinear_diag)
            ab, bb = jax.vmap(disc)(lam, b, dt)

            def one(ab_h, bb_h, c_h, x_h, u_h):
                return recurrence.step(ab_h, bb_h, c_h, x_h, u_h, conj_symmetric=True)

            channels = jax.vmap(one)
            state, y = jax.vmap(channels, in_axes=(None, None, None, 0, 0))(
                ab, bb, c, state, u_t)
        return state, y.astype(u_t.dtype) + self.D * u_t


def s4_init_state(batch_size: int, d_model: int, d_state: int, dtype=jnp.complex64):
    """Zero S4 recurrent state [B, H, d_state // 2] (complex)."""
    return jnp.zeros((batch_size, d_model, d_state // 2), dtype)


class S4Block(nn.Module):
    """Residual S4 block: x + Dropout(GLU(Dense(2H)(Dropout(GELU(S4(LN(x))))))).

    Attributes: d_model, d_state, mode, ssm_init, discretization, n_ssm (see S4Layer), dropout.
    """

    d_model: int
    d_state: int = 64
    mode: str = "dplr"
    ssm_init: str = "legs"
    discretization: str = "bilinear"
    n_ssm: int = 1
    dropout: float = 0.0

    def setup(self):
        self.norm = nn.LayerNorm()
        self.s4 = S4Layer(self.d_model, self.d_state, self.mode, self.ssm_init,
                          self.discretization, self.n_ssm)
        self.out = nn.Dense(2 * self.d_model)
        self.drop = nn.Dropout(self.dropout)

    def _post(self, x, y, train):
        y = self.drop(nn.gelu(y), deterministic=not train)
        y = nn.glu(self.out(y), axis=-1)
        return x + self.drop(y, deterministic=not train)

    def __call__(self, x, mask=None, *, train: bool = False):
        """x [B,L,H], mask [B,L] or None -> [B,L,H].

        The S4 input is zeroed at padded positions (mask 0), so left padding leaves the SSM
        state at zero, exactly like `step` starting from `init_state`.
        """
        u = self.norm(x)
        if mask is not None:
            u = u * mask[..., None]
        return self._post(x, self.s4(u), train)

    def init_state(self, batch_size: int, dtype=jnp.complex64):
        return s4_init_state(batch_size, self.d_model, self.d_state, dtype)

    def step(self, state, x_t):
        """state [B,H,M], x_t [B,H] -> (state, y_t [B,H]) (inference: no dropout)."""
        state, y = self.s4.step(state, self.norm(x_t))
        return state, self._post(x_t, y, False)
