"""Causal self-attention and the GPT-2 block against a float64 numpy reference."""

import jax
import jax.numpy as jnp
import numpy as np

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
