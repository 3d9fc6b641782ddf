"""Mamba block: scan path vs step path vs a float64 numpy loop over the same parameters."""

import jax
import jax.numpy as jnp
import numpy as np

from s4dm_jax.nn import MambaBlock, MambaResidualBlock

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


def test_mamba_block_scan_step_and_reference_agree():
    block = MambaBlock(H, d_state=4, d_conv=3, expand=2)
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
