"""S4Layer / S4Block: convolution path vs recurrent step path vs an independent float64 numpy
reference built from the layer's own parameters (dense A, explicit matrix powers)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4dm_jax.nn import S4Block, S4Layer, ssm_param_mask
from s4dm_jax.nn.s4 import MAX_RE_LAMBDA

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


def _layer(mode, init, disc, n_ssm=1):
    return S4Layer(H, N, mode=mode, ssm_init=init, discretization=disc, n_ssm=n_ssm)


def _init(module, seed=0):
    x = jnp.zeros((1, L, H))
    return module.init(jax.random.PRNGKey(seed), x)


def _np_complex(p, name):
    return np.asarray(p[name + "_re"], np.float64) + 1j * np.asarray(p[name + "_im"], np.float64)


def reference_kernel(params, mode, disc, length):
    """K [L, H] = 2 Re(C_h Ab_h^l Bb_h) in float64 numpy with dense matrices."""
    p = params["params"]
    lam_re = np.minimum(np.asarray(p["Lambda_re"], np.float64), MAX_RE_LAMBDA)
    lam = lam_re + 1j * np.asarray(p["Lambda_im"], np.float64)
    b_all, c_all = _np_complex(p, "B"), _np_complex(p, "C")
    dt_all = np.exp(np.asarray(p["log_dt"], np.float64))
    n_ssm = lam.shape[0]
    m = lam.shape[1]
    out = np.zeros((length, H))
    for h in range(H):
        s = h // (H // n_ssm)
        a = np.diag(lam[s])
        if mode == "dplr":
            pm = _np_complex(p, "P")[s]  # (r, M)
            a = a - pm.T @ pm.conj()
        dt, bvec, c = dt_all[h], b_all[s], c_all[h]
        eye = np.eye(m)
        if disc == "bilinear":
            inv = np.linalg.inv(eye - dt / 2 * a)
            ab, bb = inv @ (eye + dt / 2 * a), inv @ (dt * bvec)
        else:  # zoh, diagonal a
            ev = np.exp(dt * np.diag(a))
            ab, bb = np.diag(ev), (ev - 1) / np.diag(a) * bvec
        x = bb
        for l in range(length):
            out[l, h] = 2 * np.real(c @ x)
            x = ab @ x
    return out


def reference_conv(u, k, d):
    """y[b, l, h] = sum_{j<=l} K[l-j, h] u[b, j, h] + D[h] u[b, l, h] (float64 loops)."""
    u = np.asarray(u, np.float64)
    y = np.zeros_like(u)
    for l in range(u.shape[1]):
        y[:, l] = np.einsum("jh,bjh->bh", k[l::-1], u[:, :l + 1])
    return y + np.asarray(d, np.float64) * u


def _step_loop(module, params, u):
    state = module.init_state(u.shape[0])

    def body(st, u_t):
        st, y = module.apply(params, st, u_t, method=module.step)
        return st, y

    _, ys = jax.lax.scan(body, state, jnp.swapaxes(u, 0, 1))
    return jnp.swapaxes(ys, 0, 1)


@pytest.mark.parametrize("mode,init,disc", CONFIGS)
def test_s4layer_conv_step_and_reference_agree(mode, init, disc):
    layer = _layer(mode, init, disc)
    params = _init(layer)
    u = jax.random.normal(jax.random.PRNGKey(1), (B, L, H))
    y_conv = np.asarray(layer.apply(params, u))
    y_step = np.asarray(jax.jit(lambda p, u: _step_loop(layer, p, u))(params, u))
    k_ref = reference_kernel(params, mode, disc, L)
    k = np.asarray(layer.apply(params, L, method=layer.kernel))
    scale = np.abs(k_ref).max()
    assert np.abs(k - k_ref).max() <= 1e-4 * scale
    y_ref = reference_conv(u, k_ref, params["params"]["D"])
    scale = np.abs(y_ref).max()
    assert np.abs(y_conv - y_ref).max() <= 1e-4 * scale
    assert np.abs(y_step - y_conv).max() <= 1e-4 * scale


def test_s4layer_independent_ssms_and_re_lambda_clip():
    layer = _layer("dplr", "legs", "bilinear", n_ssm=H)
    params = _init(layer)
    p = params["params"]
    assert p["Lambda_re"].shape == (H, N // 2) and p["P_re"].shape == (H, 1, N // 2)
    # make the SSMs differ and push one Re(Lambda) above the clip
    key = jax.random.PRNGKey(3)
    p = dict(p)
    p["Lambda_im"] = p["Lambda_im"] * (1 + 0.1 * jax.random.normal(key, p["Lambda_im"].shape))
    p["Lambda_re"] = p["Lambda_re"].at[1, 0].set(0.3)
    params = {"params": p}
    k = np.asarray(layer.apply(params, L, method=layer.kernel))
    k_ref = reference_kernel(params, "dplr", "bilinear", L)
    np.testing.assert_allclose(k, k_ref, atol=1e-4 * np.abs(k_ref).max())
    u = jax.random.normal(jax.random.PRNGKey(1), (B, L, H))
    np.testing.assert_allclose(_step_loop(layer, params, u), layer.apply(params, u),
                               atol=1e-4 * np.abs(k_ref).max() * 10)


def test_s4layer_step_continues_past_training_length():
    """The recurrent path is one SSM for all lengths: 2L steps == conv path over 2L."""
    layer = _layer("dplr", "legs", "bilinear")
    params = _init(layer)
    u = jax.random.normal(jax.random.PRNGKey(2), (1, 2 * L, H))
    y_conv = np.asarray(layer.apply(params, u))
    y_step = np.asarray(_step_loop(layer, params, u))
    assert np.abs(y_step - y_conv).max() <= 1e-4 * np.abs(y_conv).max()


def test_s4layer_init_values():
    layer = _layer("diag", "diag-lin", "zoh")
    p = _init(layer)["params"]
    np.testing.assert_allclose(p["Lambda_re"][0], -0.5)
    np.testing.assert_allclose(p["Lambda_im"][0], -np.pi * np.arange(N // 2), rtol=1e-6)
    np.testing.assert_allclose(p["B_re"][0], 1.0)
    dt = np.exp(np.asarray(p["log_dt"]))
    assert ((dt >= 1e-3) & (dt <= 1e-1)).all()
    legs = _init(_layer("dplr", "legs", "bilinear"))["params"]
    np.testing.assert_allclose(legs["Lambda_re"], -0.5, atol=1e-6)  # LegS NPLR: Re = -1/2


def test_s4layer_rejects_bad_settings():
    u = jnp.zeros((1, L, H))
    with pytest.raises(ValueError, match="bilinear"):
        _layer("dplr", "legs", "zoh").init(jax.random.PRNGKey(0), u)
    with pytest.raises(ValueError, match="even"):
        S4Layer(H, 15).init(jax.random.PRNGKey(0), u)
    with pytest.raises(ValueError, match="init"):
        S4Layer(H, N, ssm_init="nope").init(jax.random.PRNGKey(0), u)
    with pytest.raises(ValueError, match="n_ssm"):
        S4Layer(H, N, n_ssm=3).init(jax.random.PRNGKey(0), u)


@pytest.mark.parametrize("mode,init,disc", [("dplr", "legs", "bilinear"),
                                            ("diag", "diag-inv", "zoh")])
def test_s4block_step_equals_conv_and_padding_is_invisible(mode, init, disc):
    block = S4Block(H, N, mode=mode, ssm_init=init, discretization=disc, dropout=0.1)
    x = jax.random.normal(jax.random.PRNGKey(4), (B, L, H))
    params = block.init(jax.random.PRNGKey(0), x)
    y = np.asarray(block.apply(params, x, jnp.ones((B, L))))
    y_step = np.asarray(jax.jit(lambda p, x: _step_loop(block, p, x))(params, x))
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


def test_ssm_param_mask_selects_exactly_the_ssm_leaves():
    block = S4Block(H, N)
    params = block.init(jax.random.PRNGKey(0), jnp.zeros((1, L, H)))
    mask = ssm_param_mask(params)
    flagged = {"/".join(str(k.key) for k in path)
               for path, v in jax.tree_util.tree_leaves_with_path(mask) if v}
    assert flagged == {f"params/s4/{n}" for n in
                       ("Lambda_re", "Lambda_im", "P_re", "P_im", "B_re", "B_im", "log_dt")}
    assert jax.tree_util.tree_structure(mask) == jax.tree_util.tree_structure(params)
    # also works on the inner params dict
    assert sum(jax.tree_util.tree_leaves(ssm_param_mask(params["params"]))) == 7


def test_dplr_c_tilde_scan_matches_dense_power():
    from s4dm_jax.nn.s4 import dplr_c_tilde_scan, ssm_init_arrays
    from s4dm_jax.ssm import kernels

    lam, p, b = ssm_init_arrays("legt", 8, "dplr")  # rank 2
    rng = np.random.default_rng(0)
    c = rng.normal(size=4) + 1j * rng.normal(size=4)
    with jax.enable_x64(True):
        ct = np.asarray(dplr_c_tilde_scan(jnp.asarray(lam), jnp.asarray(p), jnp.asarray(b),
                                          jnp.asarray(c), jnp.asarray(0.05), 13))
        ct_dense = np.asarray(kernels.dplr_c_tilde(lam, p, b, c, 0.05, 13))
    a = np.diag(lam) - p.T @ p.conj()
    eye = np.eye(4)
    ab = np.linalg.solve(eye - 0.025 * a, eye + 0.025 * a)
    ref = (eye - np.linalg.matrix_power(ab, 13)).T @ c
    np.testing.assert_allclose(ct, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ct, ct_dense, rtol=1e-10, atol=1e-12)
