"""Causal self-attention and the GPT-2 block against a float64 numpy reference."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4dm_jax.nn import CausalSelfAttention, TransformerBlock

B, T, H = 2, 6, 8


def reference_attention(p, x, key_mask, heads):
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), p)
    x = np.asarray(x, np.float64)
    dh = H // heads
    qkv = x @ p["qkv"]["kernel"] + p["qkv"]["bias"]
    out = np.zeros_like(x)
    for b in range(B):
        heads_out = []
        for h in range(heads):
            q = qkv[b, :, h * dh:(h + 1) * dh]
            k = qkv[b, :, H + h * dh:H + (h + 1) * dh]
            v = qkv[b, :, 2 * H + h * dh:2 * H + (h + 1) * dh]
            o = np.zeros((T, dh))
            for i in range(T):
                js = [j for j in range(i + 1) if key_mask[b, j] > 0]
                if not js:
                    js = list(range(T))  # fully masked row: uniform weights (padded query)
                s = np.array([q[i] @ k[j] / np.sqrt(dh) for j in js])
                w = np.exp(s - s.max())
                w /= w.sum()
                o[i] = sum(wj * v[j] for wj, j in zip(w, js, strict=True))
            heads_out.append(o)
        out[b] = np.concatenate(heads_out, -1) @ p["proj"]["kernel"] + p["proj"]["bias"]
    return out


def test_attention_matches_reference_with_causal_and_padding_masks():
    attn = CausalSelfAttention(H, n_heads=2)
    x = jax.random.normal(jax.random.PRNGKey(0), (B, T, H))
    key_mask = np.ones((B, T), np.float32)
    key_mask[1, :2] = 0  # left padding in the second sequence
    params = attn.init(jax.random.PRNGKey(1), x, key_mask)
    y = np.asarray(attn.apply(params, x, jnp.asarray(key_mask)))
    y_ref = reference_attention(params["params"], x, key_mask, 2)
    np.testing.assert_allclose(y[0], y_ref[0], atol=1e-5)
    np.testing.assert_allclose(y[1, 2:], y_ref[1, 2:], atol=1e-5)  # real queries


def test_transformer_block_is_causal_and_ignores_masked_keys():
    blk = TransformerBlock(H, n_heads=2, dropout=0.1)
    x = jax.random.normal(jax.random.PRNGKey(0), (B, T, H))
    mask = jnp.ones((B, T)).at[:, 0].set(0)
    params = blk.init(jax.random.PRNGKey(1), x, mask)
    y = np.asarray(blk.apply(params, x, mask))
    y2 = np.asarray(blk.apply(params, x.at[:, 4:].add(1.0).at[:, 0].add(7.0), mask))
    np.testing.assert_allclose(y2[:, 1:4], y[:, 1:4], atol=1e-6)
    assert np.abs(y2[:, 4:] - y[:, 4:]).max() > 1e-3
    yt = blk.apply(params, x, mask, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
    assert np.abs(np.asarray(yt) - y).max() > 1e-4


def _layer_norm(x, p, eps):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * np.asarray(p["scale"]) + np.asarray(p["bias"])


REFERENCE_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "gelu": np.vectorize(lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2)))),
    "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))),
}


@pytest.mark.parametrize("activation", sorted(REFERENCE_ACTIVATIONS))
def test_transformer_block_matches_reference(activation):
    """x + Attn(LN(x)), then + fc_out(act(fc(LN(.)))) with LayerNorm epsilon 1e-5 (GPT-2's)."""
    blk = TransformerBlock(H, n_heads=2, dropout=0.1, activation=activation)
    x = jax.random.normal(jax.random.PRNGKey(0), (B, T, H))
    x = x.at[1, 3].multiply(1e-3)  # a token of variance ~1e-6: the LayerNorm epsilon matters
    key_mask = np.ones((B, T), np.float32)
    key_mask[1, :2] = 0
    params = blk.init(jax.random.PRNGKey(1), x, key_mask)
    # O(1) random weights so the MLP (and its activation) visibly shape the output
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    params = jax.tree_util.tree_unflatten(
        tree, [0.5 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)])
    y = np.asarray(blk.apply(params, x, jnp.asarray(key_mask)))

    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params["params"])
    x64 = np.asarray(x, np.float64)
    h1 = x64 + reference_attention(p["attn"], _layer_norm(x64, p["ln_1"], 1e-5), key_mask, 2)
    mid = _layer_norm(h1, p["ln_2"], 1e-5) @ p["fc"]["kernel"] + p["fc"]["bias"]
    ref = h1 + REFERENCE_ACTIVATIONS[activation](mid) @ p["fc_out"]["kernel"] + p["fc_out"]["bias"]
    np.testing.assert_allclose(y[0], ref[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y[1, 2:], ref[1, 2:], rtol=1e-4, atol=1e-4)  # real queries


def test_block_initialisation_is_gpt2():
    """Dense weights N(0, 0.02), biases 0, LayerNorm 1/0 (kzl's GPT-2 _init_weights)."""
    blk = TransformerBlock(128, n_heads=1)
    params = blk.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 128)))["params"]
    for dense in (params["attn"]["qkv"], params["attn"]["proj"], params["fc"], params["fc_out"]):
        w = np.asarray(dense["kernel"])
        assert abs(w.std() / 0.02 - 1) < 5 / np.sqrt(2 * w.size)
        np.testing.assert_array_equal(dense["bias"], 0.0)
    for ln in (params["ln_1"], params["ln_2"]):
        np.testing.assert_array_equal(ln["scale"], 1.0)
        np.testing.assert_array_equal(ln["bias"], 0.0)
    with pytest.raises(ValueError, match="activation"):
        TransformerBlock(8, activation="tanh").init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 8)))
