"""Mamba block: scan path vs step path vs a float64 numpy loop over the same parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4dm_jax.nn import MambaBlock, MambaResidualBlock
from s4dm_jax.nn.mamba import causal_depthwise_conv
from s4dm_jax.ssm import selective

H, L, B = 8, 12, 2


def _softplus(x):
    return np.log1p(np.exp(x))


def _silu(x):
    return x / (1 + np.exp(-x))


def reference_mamba(p, x, d_state, d_conv):
    """Float64 numpy Mamba mixer, one timestep at a time."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), p)
    x = np.asarray(x, np.float64)
    e = p["D"].shape[0]
    rank = p["dt_proj"]["kernel"].shape[0]
    a = -np.exp(p["A_log"])
    out = np.zeros_like(x)
    for b in range(x.shape[0]):
        h = np.zeros((e, d_state))
        hist = np.zeros((d_conv, e))
        for t in range(x.shape[1]):
            xz = x[b, t] @ p["in_proj"]["kernel"]
            xi, z = xz[:e], xz[e:]
            hist = np.concatenate([hist[1:], xi[None]], 0)
            u = _silu((hist * p["conv_kernel"]).sum(0) + p["conv_bias"])
            proj = u @ p["x_proj"]["kernel"]
            dt_in, bt, ct = proj[:rank], proj[rank:rank + d_state], proj[rank + d_state:]
            delta = _softplus(dt_in @ p["dt_proj"]["kernel"] + p["dt_proj"]["bias"])
            h = np.exp(delta[:, None] * a) * h + (delta * u)[:, None] * bt[None]
            y = h @ ct + p["D"] * u
            out[b, t] = (y * _silu(z)) @ p["out_proj"]["kernel"]
    return out


def _run_steps(module, params, x):
    state = module.init_state(x.shape[0])

    def body(st, x_t):
        return module.apply(params, st, x_t, method=module.step)

    _, ys = jax.jit(lambda st, xs: jax.lax.scan(body, st, xs))(state, jnp.swapaxes(x, 0, 1))
    return np.swapaxes(np.asarray(ys), 0, 1)


def test_causal_depthwise_conv_matches_numpy():
    rng = np.random.default_rng(0)
    x, kernel, bias = rng.normal(size=(2, 9, 5)), rng.normal(size=(4, 5)), rng.normal(size=5)
    want = np.zeros_like(x)
    for t in range(9):
        for j in range(4):  # kernel[j] multiplies x[t - 3 + j] (zero before t = 0)
            if t - 3 + j >= 0:
                want[:, t] += kernel[j] * x[:, t - 3 + j]
    want += bias
    with jax.enable_x64(True):
        np.testing.assert_allclose(causal_depthwise_conv(x, kernel, bias), want, rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize("scan_method", selective.METHODS)
def test_mamba_block_scan_step_and_reference_agree(scan_method):
    block = MambaBlock(H, d_state=4, d_conv=3, expand=2, scan_method=scan_method)
    x = jax.random.normal(jax.random.PRNGKey(1), (B, L, H))
    params = block.init(jax.random.PRNGKey(0), x)
    p = params["params"]
    assert p["A_log"].shape == (2 * H, 4) and p["conv_kernel"].shape == (3, 2 * H)
    np.testing.assert_allclose(np.exp(p["A_log"][0]), [1, 2, 3, 4], rtol=1e-6)
    dt = np.log1p(np.exp(np.asarray(p["dt_proj"]["bias"])))
    assert ((dt > 9e-4) & (dt < 0.11)).all()
    y_scan = np.asarray(block.apply(params, x))
    y_ref = reference_mamba(p, x, 4, 3)
    scale = np.abs(y_ref).max()
    assert np.abs(y_scan - y_ref).max() <= 1e-4 * scale
    assert np.abs(_run_steps(block, params, x) - y_scan).max() <= 1e-4 * scale


def test_mamba_residual_block_step_equals_scan_and_padding_is_invisible():
    block = MambaResidualBlock(H, dropout=0.1)
    x = jax.random.normal(jax.random.PRNGKey(2), (B, L, H))
    params = block.init(jax.random.PRNGKey(0), x)
    y = np.asarray(block.apply(params, x, jnp.ones((B, L))))
    scale = np.abs(y).max()
    assert np.abs(_run_steps(block, params, x) - y).max() <= 1e-4 * scale
    pad = 4
    xp = jnp.concatenate([50 * jnp.ones((B, pad, H)), x[:, :L - pad]], 1)
    mp = jnp.concatenate([jnp.zeros((B, pad)), jnp.ones((B, L - pad))], 1)
    yp = np.asarray(block.apply(params, xp, mp))
    assert np.abs(yp[:, pad:] - y[:, :L - pad]).max() <= 1e-4 * scale


def test_mamba_block_is_causal():
    block = MambaBlock(H)
    x = jax.random.normal(jax.random.PRNGKey(3), (1, L, H))
    params = block.init(jax.random.PRNGKey(0), x)
    y = block.apply(params, x)
    y2 = block.apply(params, x.at[:, 7:].add(3.0))
    np.testing.assert_array_equal(np.asarray(y[:, :7]), np.asarray(y2[:, :7]))
    assert np.abs(np.asarray(y[:, 7:] - y2[:, 7:])).max() > 1e-3


@pytest.mark.parametrize("seeds", [1, 2])
def test_mamba_residual_block_gradients_under_seed_vmap(seeds):
    """The trainer vmaps the loss gradient over seeds (params stacked, size 1 included): every
    seed's gradient equals the unvmapped gradient, for the default and the reference scan."""
    x = jax.random.normal(jax.random.PRNGKey(4), (B, L, H))
    mask = jnp.ones((B, L)).at[0, :3].set(0.0)
    grads = {}
    for method in ("chunked", "sequential"):
        block = MambaResidualBlock(H, d_state=4, scan_method=method)
        keys = jax.random.split(jax.random.PRNGKey(0), seeds)
        params = jax.vmap(lambda k, block=block: block.init(k, x, mask))(keys)

        def loss(p, block=block):
            return jnp.sum(jnp.sin(block.apply(p, x, mask)))

        grads[method] = jax.jit(jax.vmap(jax.grad(loss)))(params)
        one = jax.tree_util.tree_map(lambda a: a[seeds - 1], params)
        single = jax.jit(jax.grad(loss))(one)
        for g, g1 in zip(jax.tree_util.tree_leaves(grads[method]),
                         jax.tree_util.tree_leaves(single), strict=True):
            np.testing.assert_allclose(g[seeds - 1], g1, rtol=1e-4, atol=1e-5)
    for g, g_ref in zip(jax.tree_util.tree_leaves(grads["chunked"]),
                        jax.tree_util.tree_leaves(grads["sequential"]), strict=True):
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-5)
