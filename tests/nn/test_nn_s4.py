"""S4Layer / S4Block / S4Stack: convolution path vs recurrent step path vs an independent
float64 numpy reference built from the layer's own parameters (dense conjugate-completed system,
explicit matrix powers), and one-channel layers vs the dense HiPPO systems themselves."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4dm_jax.nn import S4Block, S4Config, S4Layer, S4Stack, ssm_param_mask
from s4dm_jax.nn.s4 import MAX_RE_LAMBDA, OLD_LAMBDA_RE, STEP_COLLECTION
from s4dm_jax.ssm import hippo

H, N, L, B = 4, 16, 24, 2

CONFIGS = [
    ("dplr", "legs", "bilinear"),
    ("dplr", "legt", "bilinear"),
    ("dplr", "fout", "bilinear"),
    ("diag", "diag-lin", "zoh"),
    ("diag", "diag-inv", "bilinear"),
    ("diag", "legs", "zoh"),
    ("diag", "lagt", "bilinear"),
]


def _layer(mode, init, disc, n_ssm=1, l_max=L):
    return S4Layer(H, l_max, S4Config(d_state=N, mode=mode, init=init, discretization=disc,
                                      n_ssm=n_ssm))


def _init(module, seed=0):
    return module.init(jax.random.PRNGKey(seed), jnp.zeros((1, module.l_max, H)))


def _np_complex(p, name):
    return np.asarray(p[name + "_re"], np.float64) + 1j * np.asarray(p[name + "_im"], np.float64)


def _np_system(params, mode, disc, h, l_max):
    """Dense discrete system (Ab, Bb, C) of channel h in float64 numpy: the conjugate-completed
    2M-state system for dplr (C solved from the trained C~: (I - Ab^l_max)^T C = C~), the
    M-mode diagonal system (output 2 Re) for diag. Returns (Ab, Bb, C, real_output)."""
    p = params["params"]
    lam_re = -np.exp(np.asarray(p["log_neg_Lambda_re"], np.float64))
    lam_all = lam_re + 1j * np.asarray(p["Lambda_im"], np.float64)
    n_ssm = lam_all.shape[0]
    s = h // (H // n_ssm)
    lam, bvec = lam_all[s], _np_complex(p, "B")[s]
    dt = float(np.exp(np.asarray(p["log_dt"], np.float64))[h])
    if mode == "dplr":
        pm = _np_complex(p, "P")[s]  # (r, M)
        p2 = np.concatenate([pm, pm.conj()], 1)
        a = np.diag(np.concatenate([lam, lam.conj()])) - p2.T @ p2.conj()
        b2 = np.concatenate([bvec, bvec.conj()])
        eye = np.eye(len(b2))
        ab = np.linalg.solve(eye - dt / 2 * a, eye + dt / 2 * a)
        bb = np.linalg.solve(eye - dt / 2 * a, dt * b2)
        ct = _np_complex(p, "C_tilde")[h]
        ct2 = np.concatenate([ct, ct.conj()])
        c2 = np.linalg.solve((eye - np.linalg.matrix_power(ab, l_max)).T, ct2)
        return ab, bb, c2, False
    c = _np_complex(p, "C")[h]
    if disc == "bilinear":
        ab = (1 + dt / 2 * lam) / (1 - dt / 2 * lam)
        bb = dt * bvec / (1 - dt / 2 * lam)
    else:
        ab = np.exp(dt * lam)
        bb = (ab - 1) / lam * bvec
    return np.diag(ab), bb, c, True


def reference_kernel(params, mode, disc, length, l_max=L):
    """K [length, H] by explicit powers of each channel's dense system (float64)."""
    out = np.zeros((length, H))
    for h in range(H):
        ab, bb, c, two_re = _np_system(params, mode, disc, h, l_max)
        x = bb
        for l in range(length):
            y = c @ x
            out[l, h] = 2 * y.real if two_re else y.real
            x = ab @ x
    return out


def reference_conv(u, k, d):
    """y[b, l, h] = sum_{j<=l} K[l-j, h] u[b, j, h] + D[h] u[b, l, h] (float64 loops)."""
    u = np.asarray(u, np.float64)
    y = np.zeros_like(u)
    for l in range(u.shape[1]):
        y[:, l] = np.einsum("jh,bjh->bh", k[l::-1], u[:, :l + 1])
    return y + np.asarray(d, np.float64) * u


def _step_loop(module, variables, u):
    """Run `module.step` over u [B, T, H] (variables from `_prepare`)."""
    state = module.init_state(u.shape[0],
                              jnp.complex128 if u.dtype == jnp.float64 else jnp.complex64)

    def body(st, u_t):
        return module.apply(variables, st, u_t, method=module.step)

    _, ys = jax.lax.scan(body, state, jnp.swapaxes(u, 0, 1))
    return jnp.swapaxes(ys, 0, 1)


def _prepare(module, params):
    _, extra = module.apply(params, method=module.setup_step, mutable=[STEP_COLLECTION])
    return {**params, **extra}


@pytest.mark.parametrize("mode,init,disc", CONFIGS)
def test_s4layer_conv_step_and_reference_agree(mode, init, disc):
    layer = _layer(mode, init, disc)
    params = _init(layer)
    u = jax.random.normal(jax.random.PRNGKey(1), (B, L, H))
    y_conv = np.asarray(layer.apply(params, u))
    y_step = np.asarray(jax.jit(lambda p, u: _step_loop(layer, p, u))(_prepare(layer, params), u))
    k_ref = reference_kernel(params, mode, disc, L)
    k = np.asarray(layer.apply(params, L, method=layer.kernel))
    # fout's zero-frequency pair lies 1e-4 from the node w = 1: in float32 its DC bin is
    # accurate to ~1e-4 relative (measured 1.7e-4), spread evenly over the kernel.
    tol = 1e-3 if init == "fout" else 1e-4
    scale = np.abs(k_ref).max()
    assert np.abs(k - k_ref).max() <= tol * scale
    y_ref = reference_conv(u, k_ref, params["params"]["D"])
    scale = np.abs(y_ref).max()
    assert np.abs(y_conv - y_ref).max() <= tol * scale
    assert np.abs(y_step - y_conv).max() <= tol * scale


@pytest.mark.parametrize("measure", ["legs", "legt", "lagt", "fout"])
@pytest.mark.parametrize("x64", [True, False])
def test_one_channel_layer_is_the_hippo_system(measure, x64):
    """A one-channel dplr layer with its init (Lambda, P, B), dt, C~ from C = c V and D = 0
    equals the dense bilinear HiPPO system (A - 1e-4 I where Re(Lambda) = 0 is clamped), by
    the convolution and by the step path. Measured: float64 <= 1e-12, float32 <= 3e-5."""
    n, length, dt = 16, 40, 0.05
    rng = np.random.default_rng(1)
    c, u = rng.normal(size=n), rng.normal(size=length)
    A, Bv = hippo.transition(measure, n)
    lam, P, Bt, V = hippo.nplr(measure, n, max_real=MAX_RE_LAMBDA)  # the layer's init
    A = A + min(0.0, MAX_RE_LAMBDA - float(np.real(hippo.nplr_full(measure, n)[0][0]))) * np.eye(n)
    eye = np.eye(n)
    ab = np.linalg.solve(eye - dt / 2 * A, eye + dt / 2 * A)
    bb = np.linalg.solve(eye - dt / 2 * A, dt * Bv)
    x, y_ref = np.zeros(n), []
    for u_t in u:
        x = ab @ x + bb * u_t
        y_ref.append(c @ x)
    y_ref = np.array(y_ref)
    # C~ for the layer: first half of (I - Ab2^L)^T C2 in the DPLR basis, where C2 = c [V, conj V]
    # and Ab2 = W^-1 ab W with W = [V, conj V] (the same system in the other basis).
    W = np.concatenate([V, V.conj()], 1)
    ab2 = np.linalg.solve(W, ab @ W)
    c2 = c @ W
    ct = ((np.eye(n) - np.linalg.matrix_power(ab2, length)).T @ c2)[:n // 2]
    layer = S4Layer(1, length, S4Config(d_state=n, init=measure))
    dtype = jnp.float64 if x64 else jnp.float32
    with jax.enable_x64(x64):
        params = layer.init(jax.random.PRNGKey(0), jnp.zeros((1, length, 1), dtype))
        p = dict(params["params"])
        # the init values in full precision (Flax initialises parameters in float32)
        p.update(log_neg_Lambda_re=np.log(-lam.real)[None], Lambda_im=lam.imag[None],
                 P_re=P.real[None], P_im=P.imag[None], B_re=Bt.real[None], B_im=Bt.imag[None])
        p.update(C_tilde_re=jnp.asarray(ct.real[None], dtype),
                 C_tilde_im=jnp.asarray(ct.imag[None], dtype),
                 D=jnp.zeros((1,), dtype), log_dt=jnp.full((1,), np.log(dt), dtype))
        p = {k: jnp.asarray(v, dtype) for k, v in p.items()}
        params = {"params": p}
        uu = jnp.asarray(u[None, :, None], dtype)
        y_conv = np.asarray(layer.apply(params, uu))[0, :, 0]
        variables = _prepare(layer, params)
        y_step = np.asarray(_step_loop(layer, variables, uu))[0, :, 0]
    tol = 1e-10 if x64 else 1e-4
    scale = np.abs(y_ref).max()
    assert np.abs(y_conv - y_ref).max() <= tol * scale
    assert np.abs(y_step - y_ref).max() <= tol * scale


def test_s4layer_independent_ssms_and_re_lambda_log():
    layer = _layer("dplr", "legs", "bilinear", n_ssm=H)
    params = _init(layer)
    p = params["params"]
    assert p["log_neg_Lambda_re"].shape == (H, N // 2) and p["P_re"].shape == (H, 1, N // 2)
    # make the SSMs differ, one Re(Lambda) much more damped and one much slower (-exp(-9))
    key = jax.random.PRNGKey(3)
    p = dict(p)
    p["Lambda_im"] = p["Lambda_im"] * (1 + 0.1 * jax.random.normal(key, p["Lambda_im"].shape))
    p["log_neg_Lambda_re"] = p["log_neg_Lambda_re"].at[1, 0].set(1.2).at[2, 3].set(-9.0)
    params = {"params": p}
    k = np.asarray(layer.apply(params, L, method=layer.kernel))
    k_ref = reference_kernel(params, "dplr", "bilinear", L)
    np.testing.assert_allclose(k, k_ref, atol=1e-4 * np.abs(k_ref).max())
    u = jax.random.normal(jax.random.PRNGKey(1), (B, L, H))
    np.testing.assert_allclose(_step_loop(layer, _prepare(layer, params), u),
                               layer.apply(params, u), atol=1e-4 * np.abs(k_ref).max() * 10)


def test_s4layer_step_continues_past_training_length():
    """The recurrent path runs the SSM whose first l_max kernel entries the conv path uses:
    past l_max it continues that same system (dense reference over 2 l_max steps)."""
    layer = _layer("dplr", "legs", "bilinear")
    params = _init(layer)
    u = jax.random.normal(jax.random.PRNGKey(2), (1, 2 * L, H))
    y_step = np.asarray(_step_loop(layer, _prepare(layer, params), u))
    k_ref = reference_kernel(params, "dplr", "bilinear", 2 * L)
    y_ref = reference_conv(u, k_ref, params["params"]["D"])
    assert np.abs(y_step - y_ref).max() <= 1e-4 * np.abs(y_ref).max()


def test_s4layer_step_without_setup_is_refused():
    layer = _layer("dplr", "legs", "bilinear")
    params = _init(layer)
    with pytest.raises(ValueError, match="prepare_step"):
        layer.apply(params, layer.init_state(1), jnp.zeros((1, H)), method=layer.step)
    with pytest.raises(ValueError, match="l_max"):
        layer.apply(params, jnp.zeros((1, L + 1, H)))


def test_s4layer_init_values():
    layer = _layer("diag", "diag-lin", "zoh")
    p = _init(layer)["params"]
    np.testing.assert_allclose(-np.exp(p["log_neg_Lambda_re"][0]), -0.5, rtol=1e-6)
    np.testing.assert_allclose(p["Lambda_im"][0], -np.pi * np.arange(N // 2), rtol=1e-6)
    np.testing.assert_allclose(p["B_re"][0], 1.0)
    dt = np.exp(np.asarray(p["log_dt"]))
    assert ((dt >= 1e-3) & (dt <= 1e-1)).all()
    legs = _init(_layer("dplr", "legs", "bilinear"))["params"]
    np.testing.assert_allclose(-np.exp(legs["log_neg_Lambda_re"]), -0.5, atol=1e-6)  # LegS
    # legt / lagt / fout: Re(Lambda) = 0 starts at the official init clamp -1e-4
    for measure in ("legt", "lagt", "fout"):
        q = _init(_layer("dplr", measure, "bilinear"))["params"]
        np.testing.assert_allclose(q["log_neg_Lambda_re"], np.log(1e-4), rtol=1e-6)
    np.testing.assert_allclose(legs["B_im"], 0.0, atol=1e-6)  # phase convention: B~ real
    lam, _, b, _ = hippo.nplr("legs", N)
    np.testing.assert_allclose(legs["Lambda_im"][0], lam.imag, rtol=1e-6)
    np.testing.assert_allclose(legs["B_re"][0], b.real, rtol=1e-6)


def test_s4config_rejects_bad_settings():
    with pytest.raises(ValueError, match="bilinear"):
        S4Config(mode="dplr", discretization="zoh")
    with pytest.raises(ValueError, match="even"):
        S4Config(d_state=15)
    with pytest.raises(ValueError, match="init"):
        S4Config(init="nope")
    with pytest.raises(ValueError, match="n_ssm"):
        S4Layer(H, L, S4Config(d_state=N, n_ssm=3)).init(jax.random.PRNGKey(0),
                                                          jnp.zeros((1, L, H)))


@pytest.mark.parametrize("mode,init,disc", [("dplr", "legs", "bilinear"),
                                            ("diag", "diag-inv", "zoh")])
def test_s4block_step_equals_conv_and_padding_is_invisible(mode, init, disc):
    block = S4Block(H, L, S4Config(d_state=N, mode=mode, init=init, discretization=disc),
                    dropout=0.1)
    x = jax.random.normal(jax.random.PRNGKey(4), (B, L, H))
    params = block.init(jax.random.PRNGKey(0), x)
    y = np.asarray(block.apply(params, x, jnp.ones((B, L))))
    y_step = np.asarray(jax.jit(lambda p, x: _step_loop(block, p, x))(_prepare(block, params), x))
    scale = np.abs(y).max()
    assert np.abs(y_step - y).max() <= 1e-4 * scale
    # left padding with garbage values and mask 0 leaves the real outputs unchanged
    pad = 5
    xp = jnp.concatenate([100 * jax.random.normal(jax.random.PRNGKey(9), (B, pad, H)),
                          x[:, :L - pad]], 1)
    mp = jnp.concatenate([jnp.zeros((B, pad)), jnp.ones((B, L - pad))], 1)
    yp = np.asarray(block.apply(params, xp, mp))
    assert np.abs(yp[:, pad:] - y[:, :L - pad]).max() <= 1e-4 * scale
    # dropout is active in training mode only
    yt = block.apply(params, x, None, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
    assert np.abs(np.asarray(yt) - y).max() > 1e-3


def test_s4block_is_its_formula_in_numpy():
    """S4Block (computed channels first) == x + GLU(Dense(GELU(S4(LN(x))))) written in numpy
    on [B, L, H] from the block's parameters, with S4(u) = causal convolution with the layer's
    kernel (tested against the dense HiPPO system above) + D u."""
    block = S4Block(H, L, S4Config(d_state=N))
    x = jax.random.normal(jax.random.PRNGKey(4), (B, L, H))
    params = block.init(jax.random.PRNGKey(0), x)
    y = np.asarray(block.apply(params, x), np.float64)
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params["params"])
    k = np.asarray(block.apply(params, L, method=lambda m, n: m.s4.kernel(n)), np.float64)
    xn = np.asarray(x, np.float64)
    mu, var = xn.mean(-1, keepdims=True), xn.var(-1, keepdims=True)
    u = (xn - mu) / np.sqrt(var + 1e-6) * p["norm"]["scale"] + p["norm"]["bias"]
    s4 = np.stack([np.stack([np.convolve(u[b, :, h], k[:, h])[:L] for h in range(H)], -1)
                   for b in range(B)]) + p["s4"]["D"] * u
    g = 0.5 * s4 * (1 + np.tanh(np.sqrt(2 / np.pi) * (s4 + 0.044715 * s4 ** 3)))
    z = g @ p["out"]["kernel"] + p["out"]["bias"]
    want = xn + z[..., :H] / (1 + np.exp(-z[..., H:]))
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("remat", [False, True])
def test_s4stack_equals_its_blocks_and_steps(remat):
    """nn.scan over layers == the same blocks applied one after another (parameters sliced from
    the stack); step over the stack == the convolution path; remat changes nothing."""
    n_layers, cfg = 3, S4Config(d_state=N)
    stack = S4Stack(n_layers, H, L, cfg, dropout=0.0, remat=remat)
    x = jax.random.normal(jax.random.PRNGKey(5), (B, L, H))
    params = stack.init(jax.random.PRNGKey(0), x)
    y = np.asarray(stack.apply(params, x))
    block = S4Block(H, L, cfg)
    h = x
    for i in range(n_layers):
        p_i = jax.tree_util.tree_map(lambda a, i=i: a[i], params["params"]["block"])
        h = block.apply({"params": p_i}, h)
    np.testing.assert_allclose(y, h, rtol=1e-5, atol=1e-5)
    variables = _prepare(stack, params)
    states = stack.init_state(B)
    assert states.shape == (B, n_layers, H, N // 2)

    def body(st, x_t):
        return stack.apply(variables, st, x_t, method=stack.step)

    _, ys = jax.lax.scan(body, states, jnp.swapaxes(x, 0, 1))
    np.testing.assert_allclose(np.swapaxes(ys, 0, 1), y, atol=1e-4 * np.abs(y).max())
    g = jax.grad(lambda p: jnp.sum(stack.apply(p, x) ** 2))(params)
    assert all(np.all(np.isfinite(v)) for v in jax.tree_util.tree_leaves(g))


def test_ssm_param_mask_selects_exactly_the_ssm_leaves():
    block = S4Block(H, L, S4Config(d_state=N))
    params = block.init(jax.random.PRNGKey(0), jnp.zeros((1, L, H)))
    mask = ssm_param_mask(params)
    flagged = {"/".join(str(k.key) for k in path)
               for path, v in jax.tree_util.tree_leaves_with_path(mask) if v}
    assert flagged == {f"params/s4/{n}" for n in
                       ("log_neg_Lambda_re", "Lambda_im", "P_re", "P_im", "B_re", "B_im", "log_dt")}
    assert jax.tree_util.tree_structure(mask) == jax.tree_util.tree_structure(params)
    # also works on the inner params dict
    assert sum(jax.tree_util.tree_leaves(ssm_param_mask(params["params"]))) == 7


@pytest.mark.parametrize("mode,init,disc", CONFIGS + [("dplr", "lagt", "bilinear"),
                                                     ("dplr", "diag-lin", "bilinear")])
def test_every_real_part_receives_gradient(mode, init, disc):
    """Re(Lambda) = -exp(log_neg_Lambda_re) has gradient for every mode, also for the legt /
    lagt / fout inits that start at Re(Lambda) = -1e-4, where the former clamp
    min(Re, -1e-4) had none. The gradient equals the chain rule through Re(Lambda): a finite
    difference in float64 of the loss in log_neg_Lambda_re (central, step 1e-3: measured
    relative error <= 2e-4 on jax 0.10.2; a step of 1e-6 is noise-bound for the fout modes,
    whose smallest gradients are ~1e-6 of the largest, so the tolerance adds 1e-4 of the
    largest gradient: on jax 0.12 a 7e-7 gradient differed by 1e-9)."""
    layer = _layer(mode, init, disc, n_ssm=2)
    with jax.enable_x64(True):
        params = layer.init(jax.random.PRNGKey(0), jnp.zeros((1, L, H), jnp.float64))
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        u = jax.random.normal(jax.random.PRNGKey(1), (B, L, H), jnp.float64)

        def loss(log_re):
            p = {"params": {**params["params"], "log_neg_Lambda_re": log_re}}
            return jnp.sum(layer.apply(p, u) ** 2)

        x0 = params["params"]["log_neg_Lambda_re"]
        g = np.asarray(jax.grad(loss)(x0))
        assert g.shape == (2, N // 2) and np.all(np.isfinite(g))
        assert np.all(g != 0), f"modes without gradient: {np.argwhere(g == 0)}"
        # central differences on three modes
        for idx in [(0, 0), (1, N // 4), (1, N // 2 - 1)]:
            e = jnp.zeros_like(x0).at[idx].set(1e-3)
            fd = (float(loss(x0 + e)) - float(loss(x0 - e))) / 2e-3
            assert abs(g[idx] - fd) <= 1e-3 * abs(fd) + 1e-4 * np.abs(g).max()


def test_parameters_with_the_old_re_lambda_name_are_refused():
    """Parameters saved before Re(Lambda) was stored as its log (leaf 'Lambda_re') get a clear
    error instead of a silently different model."""
    layer = _layer("dplr", "legs", "bilinear")
    p = dict(_init(layer)["params"])
    p[OLD_LAMBDA_RE] = -np.exp(p.pop("log_neg_Lambda_re"))
    with pytest.raises(ValueError, match="Lambda_re.*retrain"):
        layer.apply({"params": p}, jnp.zeros((1, L, H)))
