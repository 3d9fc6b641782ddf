"""S4 / S4D layer, the residual S4 block and a scanned stack of blocks (Flax linen).

S4Layer maps H channels independently with one linear SSM each, through two call paths that
compute the same function:
  * `__call__(u [B,L,H])`: convolution path (kernel K [L,H], causal FFT convolution), training;
  * `step(state, u_t [B,H])`: recurrent path with an explicit complex state [B,H,M], O(M H) per
    step, inference. It needs the readout C that `setup_step` computes once per rollout
    (through `DecisionModel.prepare_step`), stored in the "step" variable collection.

Kernel modes (`S4Config.mode`):
  * "dplr" (S4): A = diag(Lambda) - P P^* on the conjugate-completed N = 2M state system (the
    two halves are coupled through P; see ssm.kernels), bilinear discretisation, kernel by
    Cauchy + Woodbury. As in the official S4 code the layer trains C~ = (I - Ab^L)^T C for the
    kernel length L = `l_max` directly (parameters C_tilde_re/_im), so the training forward
    pass has no sequential work: kernel generation is vectorised over channels. `setup_step`
    converts C~ to C once (dense, O(N^3 log L) per channel). A "legs" init is the HiPPO-LegS
    system exactly; "legt", "lagt" and "fout" have Re(Lambda) = 0 and start as HiPPO's A minus
    1e-4 I (the init clamp Re(Lambda) <= -1e-4 of the official code; fout needs it, see
    hippo.nplr).
  * "diag" (S4D): A = diag(Lambda), kernel by Vandermonde ("zoh" or "bilinear"), C trained as C
    (parameters C_re/_im); 2 Re of the M-mode system is exact here.

Parameters (complex values as real pairs): log_neg_Lambda_re and Lambda_im [n_ssm, M], P_re/_im
[n_ssm, r, M] (dplr only), B_re/_im [n_ssm, M], C_tilde_re/_im (dplr) or C_re/_im (diag) [H, M],
D [H], log_dt [H]. `n_ssm` copies of (Lambda, P, B) are shared by the H channels (1: tied, the
official `n_ssm=1`; H: independent); C, D and dt are per channel. The real part is stored as
its log: Re(Lambda) = -exp(log_neg_Lambda_re), always < 0 and always with gradient (the
official S4's `real_transform="exp"`, state-spaces/s4 models/s4/s4.py `inv_transform` /
`param_transform`: initialised as log(max(-Re Lambda, 1e-4))). `ssm_param_mask` selects
Lambda, P, B and log_dt.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from s4dm_jax.nn.dropout import Dropout
from s4dm_jax.ssm import conv, discretize, hippo, kernels, recurrence

MEASURES = hippo.MEASURES
INITS = MEASURES + ("diag-lin", "diag-inv")
MAX_RE_LAMBDA = -1e-4  # initial Re(Lambda) is clamped to <= this (official S4's inv_transform)
OLD_LAMBDA_RE = "Lambda_re"  # the parameter name before Re(Lambda) was stored as its log
STEP_COLLECTION = "step"  # variable collection holding what `setup_step` precomputes


@dataclasses.dataclass(frozen=True)
class S4Config:
    """Hyperparameters of an S4 / S4D layer (one definition for layer, block, stack and model).

    d_state: state size N (even; M = N/2 complex modes are stored).
    mode: "dplr" (S4, Cauchy kernel, bilinear only) or "diag" (S4D, Vandermonde kernel).
    init: "legs" | "legt" | "lagt" | "fout" | "diag-lin" | "diag-inv".
    discretization: "bilinear" | "zoh" ("zoh" needs mode="diag").
    n_ssm: number of (Lambda, P, B) copies shared by the channels (divides H).
    dt_min, dt_max: range of the log-uniform dt init.
    """

    d_state: int = 64
    mode: str = "dplr"
    init: str = "legs"
    discretization: str = "bilinear"
    n_ssm: int = 1
    dt_min: float = 1e-3
    dt_max: float = 1e-1

    def __post_init__(self):
        if self.mode not in ("dplr", "diag"):
            raise ValueError(f"S4 mode must be 'dplr' or 'diag', got {self.mode!r}")
        if self.discretization not in ("bilinear", "zoh"):
            raise ValueError(f"discretization must be 'bilinear' or 'zoh', got "
                             f"{self.discretization!r}")
        if self.mode == "dplr" and self.discretization != "bilinear":
            raise ValueError("mode='dplr' (Cauchy kernel) is defined for bilinear "
                             "discretisation only; use mode='diag' for zoh")
        if self.init not in INITS:
            raise ValueError(f"unknown S4 init {self.init!r}; choose one of {INITS}")
        if int(self.d_state) <= 0 or int(self.d_state) % 2:
            raise ValueError(f"d_state={self.d_state} must be even and > 0 (N/2 conjugate "
                             "modes are kept)")
        if int(self.n_ssm) < 1:
            raise ValueError(f"n_ssm={self.n_ssm} must be >= 1")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}")


@functools.lru_cache(maxsize=64)
def ssm_init_arrays(init: str, d_state: int, mode: str):
    """Initial (Lambda (M,), P (r, M) or None, B (M,)) complex128 numpy for an init name.

    Cached: Flax runs `setup`, and so this, on every init, apply and trace, and the N x N
    eigendecomposition of `hippo.nplr` is not free. Arrays are read-only.
    dplr + measure: hippo.nplr(measure, N, max_real=-1e-4). dplr + diag-*: S4D eigenvalues,
    B = 1, P = 0 (rank 1; P then stays 0 in training since its gradient vanishes at 0).
    diag + legs: S4D-LegS (hippo.s4d_legs); diag + other measures: the NPLR's diagonal part
    (Lambda, B), P dropped; diag-lin / diag-inv: S4D-Lin / S4D-Inv with B = 1.
    """
    config = S4Config(d_state=d_state, mode=mode, init=init)  # validates
    m = config.d_state // 2
    if init in MEASURES:
        if mode == "diag" and init == "legs":
            lam, b = hippo.s4d_legs(d_state)
            p = None
        else:
            lam, p, b, _ = hippo.nplr(init, d_state, max_real=MAX_RE_LAMBDA)
            p = p if mode == "dplr" else None
    else:
        lam = hippo.s4d_lin(d_state) if init == "diag-lin" else hippo.s4d_inv(d_state)
        p = np.zeros((1, m)) if mode == "dplr" else None
        b = np.ones(m)
    arrays = tuple(None if a is None else np.asarray(a, np.complex128) for a in (lam, p, b))
    for a in arrays:
        if a is not None:
            a.flags.writeable = False
    return arrays


def _const_init(value: np.ndarray):
    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.broadcast_to(jnp.asarray(value, dtype), shape)

    return init


def _log_dt_init(dt_min: float, dt_max: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, math.log(dt_min), math.log(dt_max))

    return init


def s4_init_state(batch_size: int, d_model: int, d_state: int, dtype=jnp.complex64):
    """Zero S4 recurrent state [B, H, d_state // 2] (complex)."""
    return jnp.zeros((batch_size, d_model, d_state // 2), dtype)


class S4Layer(nn.Module):
    """H independent SSM channels (see the module docstring).

    Attributes:
      d_model: channels H.
      l_max: longest input length; the dplr kernel (and C~) is computed for this length and
        truncated to shorter inputs.
      ssm: S4Config.
    """

    d_model: int
    l_max: int
    ssm: S4Config = S4Config()

    def setup(self):
        cfg = self.ssm
        if self.d_model % cfg.n_ssm:
            raise ValueError(f"n_ssm={cfg.n_ssm} must divide d_model={self.d_model}")
        if int(self.l_max) < 1:
            raise ValueError(f"l_max={self.l_max} must be >= 1")
        lam, p, b = ssm_init_arrays(cfg.init, cfg.d_state, cfg.mode)
        m, s = lam.shape[0], cfg.n_ssm
        if self.has_variable("params", OLD_LAMBDA_RE):
            raise ValueError(
                f"these parameters store Re(Lambda) as '{OLD_LAMBDA_RE}' (a clamped real part, "
                "from a version before Re(Lambda) = -exp(log_neg_Lambda_re)); they cannot be "
                "used by this S4Layer: retrain, or convert with log_neg_Lambda_re = "
                f"log(-min({OLD_LAMBDA_RE}, {MAX_RE_LAMBDA}))")
        self.log_neg_Lambda_re = self.param(
            "log_neg_Lambda_re", _const_init(np.log(-np.minimum(lam.real, MAX_RE_LAMBDA))), (s, m))
        self.Lambda_im = self.param("Lambda_im", _const_init(lam.imag), (s, m))
        if p is not None:
            self.P_re = self.param("P_re", _const_init(p.real), (s, *p.shape))
            self.P_im = self.param("P_im", _const_init(p.imag), (s, *p.shape))
        self.B_re = self.param("B_re", _const_init(b.real), (s, m))
        self.B_im = self.param("B_im", _const_init(b.imag), (s, m))
        std = 0.5 ** 0.5  # complex normal with unit variance
        c_name = "C_tilde" if cfg.mode == "dplr" else "C"
        self.C_re = self.param(c_name + "_re", nn.initializers.normal(std), (self.d_model, m))
        self.C_im = self.param(c_name + "_im", nn.initializers.normal(std), (self.d_model, m))
        self.D = self.param("D", nn.initializers.normal(1.0), (self.d_model,))
        self.log_dt = self.param("log_dt", _log_dt_init(cfg.dt_min, cfg.dt_max),
                                 (self.d_model,))

    # ------------------------------------------------------------------ parameters per channel
    def _channel_params(self):
        """Per-channel complex (Lambda [H,M], P [H,r,M] | None, B [H,M], C [H,M]) and dt [H].

        C is the trained readout parameter: C~ in dplr mode, C in diag mode.
        """
        rep = self.d_model // self.ssm.n_ssm

        def per_channel(x):
            return jnp.repeat(x, rep, axis=0)

        def f32(x):  # the SSM is computed in (at least) float32, also under mixed precision
            return x.astype(jnp.promote_types(x.dtype, jnp.float32))

        lam = jax.lax.complex(-jnp.exp(f32(self.log_neg_Lambda_re)), f32(self.Lambda_im))
        b = jax.lax.complex(f32(self.B_re), f32(self.B_im))
        p = (jax.lax.complex(f32(self.P_re), f32(self.P_im)) if self.ssm.mode == "dplr"
             else None)
        c = jax.lax.complex(f32(self.C_re), f32(self.C_im))
        lam, b = per_channel(lam), per_channel(b)
        p = per_channel(p) if p is not None else None
        return lam, p, b, c, jnp.exp(f32(self.log_dt))

    def kernel(self, length: int) -> jax.Array:
        """Convolution kernel K [length, H] (real): K[l, h] = C2_h Ab_h^l Bb2_h (completed
        system; 2 Re of the M-mode system in diag mode)."""
        return self._channel_kernels(length).T

    def _channel_kernels(self, length: int) -> jax.Array:
        """`kernel` channels first: [H, length]."""
        if not 1 <= length <= self.l_max:
            raise ValueError(f"S4Layer got a sequence of length {length}, but its kernel is "
                             f"built for at most l_max={self.l_max}; raise l_max (the model's "
                             "context length)")
        lam, p, b, c, dt = self._channel_params()
        if self.ssm.mode == "dplr":
            return jax.vmap(kernels.cauchy_dplr, in_axes=(0, 0, 0, 0, 0, None))(
                lam, p, b, c, dt, self.l_max)[:, :length]
        return jax.vmap(kernels.vandermonde, in_axes=(0, 0, 0, 0, None, None))(
            lam, b, c, dt, length, self.ssm.discretization)

    def __call__(self, u: jax.Array) -> jax.Array:
        """Convolution path: u [B, L, H] -> y [B, L, H], y = K * u + D u (causal); computed in
        (at least) float32 and returned in u's dtype."""
        return jnp.swapaxes(self.channels_first(jnp.swapaxes(u, 1, 2)), 1, 2)

    def channels_first(self, u: jax.Array) -> jax.Array:
        """`__call__` in the channels-first layout u [B, H, L] -> y [B, H, L]: the FFTs run
        along the last (contiguous) axis, with no transposes (S4Stack keeps this layout
        through all its blocks)."""
        k = self._channel_kernels(u.shape[-1])  # [H, L]
        y = conv.causal_conv(u.astype(k.dtype), k, self.D.astype(k.dtype)[:, None], axis=-1)
        return y.astype(u.dtype)

    # ------------------------------------------------------------------ recurrent path
    def setup_step(self) -> None:
        """Store the step readout C [H, M] in the "step" collection (dplr: C from the trained
        C~ for l_max, `ssm.kernels.dplr_c_from_tilde`; diag: C itself). Call with
        `mutable=["step"]` once per set of parameters."""
        lam, p, b, c, dt = self._channel_params()
        if self.ssm.mode == "dplr":
            c = jax.vmap(kernels.dplr_c_from_tilde, in_axes=(0, 0, 0, 0, 0, None))(
                lam, p, b, c, dt, self.l_max)
        self.put_variable(STEP_COLLECTION, "C", c)

    def init_state(self, batch_size: int, dtype=jnp.complex64) -> jax.Array:
        """Zero state [B, H, M] (complex)."""
        return s4_init_state(batch_size, self.d_model, self.ssm.d_state, dtype)

    def step(self, state: jax.Array, u_t: jax.Array):
        """Recurrent path: state [B,H,M] complex, u_t [B,H] -> (state, y_t [B,H])."""
        if not self.has_variable(STEP_COLLECTION, "C"):
            raise ValueError(
                "S4Layer.step needs the readout computed from the trained parameters: call "
                "DecisionModel.prepare_step(params) (or apply setup_step with "
                f"mutable=['{STEP_COLLECTION}']) and pass its result to step")
        lam, p, b, _, dt = self._channel_params()
        c = self.get_variable(STEP_COLLECTION, "C")
        out_dtype, u_t = u_t.dtype, u_t.astype(dt.dtype)
        if self.ssm.mode == "dplr":
            channels = jax.vmap(recurrence.dplr_step)
            state, y = jax.vmap(channels, in_axes=(None,) * 6 + (0, 0))(
                lam, p, p, b, c, dt, state, u_t)
        else:
            disc = (discretize.zoh_diag if self.ssm.discretization == "zoh"
                    else discretize.bilinear_diag)
            ab, bb = jax.vmap(disc)(lam, b, dt)

            def one(ab_h, bb_h, c_h, x_h, u_h):
                return recurrence.step(ab_h, bb_h, c_h, x_h, u_h, conj_symmetric=True)

            channels = jax.vmap(one)
            state, y = jax.vmap(channels, in_axes=(None, None, None, 0, 0))(
                ab, bb, c, state, u_t)
        return state, (y.astype(u_t.dtype) + self.D.astype(u_t.dtype) * u_t).astype(out_dtype)


class ChannelDense(nn.Module):
    """`nn.Dense` over the channel axis 1 of x [B, H, ...] -> [B, features, ...] (the same
    parameters, "kernel" [H, features] and "bias" [features], initialisation and dtype
    promotion as nn.Dense), for the channels-first layout of S4Block."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias)
        y = jnp.einsum("bh...,hf->bf...", x, kernel)
        return y + bias.reshape((self.features,) + (1,) * (x.ndim - 2))


class S4Block(nn.Module):
    """Residual S4 block: x + Dropout(GLU(Dense(2H)(Dropout(GELU(S4(LN(x))))))).

    Computed channels first ([B, H, L]; `channels_first`), the layout in which the S4 layer's
    FFTs need no transposes; `__call__` takes and returns [B, L, H]. LayerNorm and Dense act on
    the channel axis 1, which is also the last axis of a step's x_t [B, H].

    Attributes: d_model, l_max, ssm (see S4Layer), dropout.
    """

    d_model: int
    l_max: int
    ssm: S4Config = S4Config()
    dropout: float = 0.0

    def setup(self):
        self.norm = nn.LayerNorm(reduction_axes=1, feature_axes=1)
        self.s4 = S4Layer(self.d_model, self.l_max, self.ssm)
        self.out = ChannelDense(2 * self.d_model)
        self.drop = Dropout(self.dropout)

    def _post(self, x, y, train):
        y = self.drop(nn.gelu(y), deterministic=not train)
        y = nn.glu(self.out(y), axis=1)
        return x + self.drop(y, deterministic=not train)

    def __call__(self, x, mask=None, *, train: bool = False):
        """x [B,L,H], mask [B,L] or None -> [B,L,H].

        The S4 input is zeroed at padded positions (mask 0), so left padding leaves the SSM
        state at zero, exactly like `step` starting from `init_state`.
        """
        y = self.channels_first(jnp.swapaxes(x, 1, 2), mask, train=train)
        return jnp.swapaxes(y, 1, 2)

    def channels_first(self, x, mask=None, *, train: bool = False):
        """`__call__` with x [B,H,L] -> [B,H,L] (mask [B,L] or None)."""
        u = self.norm(x)
        if mask is not None:
            u = u * mask[:, None, :]
        return self._post(x, self.s4.channels_first(u), train)

    def setup_step(self) -> None:
        self.s4.setup_step()

    def init_state(self, batch_size: int, dtype=jnp.complex64):
        return s4_init_state(batch_size, self.d_model, self.ssm.d_state, dtype)

    def step(self, state, x_t):
        """state [B,H,M], x_t [B,H] -> (state, y_t [B,H]) (inference: no dropout)."""
        state, y = self.s4.step(state, self.norm(x_t))
        return state, self._post(x_t, y, False)


class S4Stack(nn.Module):
    """`n_layers` S4Blocks of identical shape run under `nn.scan` (parameters stacked on a
    leading layer axis), so compile time does not grow with depth.

    Attributes: n_layers, d_model, l_max, ssm, dropout (see S4Block); remat: recompute each
    block's activations in the backward pass (`nn.remat`, less memory for long sequences on
    accelerators).
    """

    n_layers: int
    d_model: int
    l_max: int
    ssm: S4Config = S4Config()
    dropout: float = 0.0
    remat: bool = False

    def setup(self):
        self.block = S4Block(self.d_model, self.l_max, self.ssm, self.dropout)

    def _scan(self, fn, carry, xs=None):
        return nn.scan(fn, variable_axes={"params": 0, STEP_COLLECTION: 0},
                       split_rngs={"params": True, "dropout": True}, length=self.n_layers)(
            self.block, carry, xs)

    def __call__(self, x, mask=None, *, train: bool = False):
        """x [B,L,H], mask [B,L] or None -> [B,L,H] (the blocks run channels first)."""
        def body(block, h, _):
            return block.channels_first(h, mask, train=train), None

        if self.remat:
            body = nn.remat(body, prevent_cse=False)
        return jnp.swapaxes(self._scan(body, jnp.swapaxes(x, 1, 2))[0], 1, 2)

    def setup_step(self) -> None:
        """Every block's `S4Layer.setup_step` (into the "step" collection)."""
        def body(block, carry, _):
            block.setup_step()
            return carry, None

        self._scan(body, jnp.zeros(()))

    def init_state(self, batch_size: int, dtype=jnp.complex64):
        """Zero states of all layers [B, n_layers, H, M] (batch first, like every carry)."""
        return s4_stack_init_state(batch_size, self.n_layers, self.d_model, self.ssm.d_state,
                                   dtype)

    def step(self, states, x_t):
        """states [B,n_layers,H,M], x_t [B,H] -> (states, y_t [B,H])."""
        def body(block, h, state):
            state, h = block.step(state, h)
            return h, state

        y, states = self._scan(body, x_t, jnp.swapaxes(states, 0, 1))
        return jnp.swapaxes(states, 0, 1), y


def s4_stack_init_state(batch_size: int, n_layers: int, d_model: int, d_state: int,
                        dtype=jnp.complex64):
    """Zero states of an S4Stack [B, n_layers, H, d_state // 2] (complex)."""
    return jnp.zeros((batch_size, n_layers, d_model, d_state // 2), dtype)
