"""Causal self-attention (Flax's MultiHeadDotProductAttention under our causal + padding mask)
and the GPT-2 block against a float64 numpy reference and the former hand-written attention."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4dm_jax.nn import TransformerBlock, causal_attention_mask, gpt2_self_attention

B, T, H = 2, 6, 8


def _fused(p):
    """Library attention params -> GPT-2's fused layout: c_attn (qkv) [H, 3H] and c_proj [H, H]
    (query/key/value kernels [H, heads, dh] and biases [heads, dh] flattened head-major)."""
    h = p["query"]["kernel"].shape[0]
    return {"qkv": {"kernel": np.concatenate([np.reshape(p[n]["kernel"], (h, h))
                                              for n in ("query", "key", "value")], 1),
                    "bias": np.concatenate([np.reshape(p[n]["bias"], (h,))
                                            for n in ("query", "key", "value")])},
            "proj": {"kernel": np.reshape(p["out"]["kernel"], (h, h)),
                     "bias": np.asarray(p["out"]["bias"])}}


def reference_attention(p, x, key_mask, heads):
    """float64 numpy attention of the library attention params `p` (query, key, value, out)."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), _fused(p))
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


class HandWrittenAttention(nn.Module):
    """The package's former attention (before Flax's MultiHeadDotProductAttention replaced it):
    fused qkv Dense, logits masked to -1e9, float32 softmax, dropout on the weights and on the
    projected output. Kept here to show the library version computes the same function."""

    d_model: int
    n_heads: int = 1
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, key_mask=None, *, train: bool = False):
        b, t, h = x.shape
        dh = h // self.n_heads
        qkv = nn.Dense(3 * h, name="qkv")(x)
        q, k, v = jnp.split(qkv.reshape(b, t, 3, self.n_heads, dh), 3, axis=2)
        q, k, v = (z[:, :, 0] for z in (q, k, v))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(dh).astype(x.dtype)
        allowed = jnp.tril(jnp.ones((t, t), bool))[None, None]
        if key_mask is not None:
            allowed = allowed & (key_mask[:, None, None, :] > 0)
        logits = jnp.where(allowed, logits, jnp.asarray(-1e9, logits.dtype))
        weights = nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
        weights = nn.Dropout(self.dropout)(weights, deterministic=not train)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, t, h)
        out = nn.Dense(h, name="proj")(out)
        return nn.Dropout(self.dropout)(out, deterministic=not train)


def _padded_inputs():
    x = jax.random.normal(jax.random.PRNGKey(0), (B, T, H))
    key_mask = np.ones((B, T), np.float32)
    key_mask[1, :2] = 0  # left padding in the second sequence
    return x, key_mask


def test_attention_matches_reference_with_causal_and_padding_masks():
    attn = gpt2_self_attention(H, n_heads=2)
    x, key_mask = _padded_inputs()
    mask = causal_attention_mask(jnp.asarray(key_mask), T)
    params = attn.init(jax.random.PRNGKey(1), x, mask=mask)
    y = np.asarray(attn.apply(params, x, mask=mask))
    y_ref = reference_attention(params["params"], x, key_mask, 2)
    np.testing.assert_allclose(y[0], y_ref[0], atol=1e-5)
    np.testing.assert_allclose(y[1, 2:], y_ref[1, 2:], atol=1e-5)  # real queries


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_library_attention_equals_the_former_hand_written_one_on_copied_weights(heads):
    """Same weights (the library's copied into the fused layout) -> same outputs at every
    position (padded queries too: both give fully masked rows uniform weights), float32."""
    x, key_mask = _padded_inputs()
    key_mask[0, :5] = 0  # a sequence with a single real token
    lib = gpt2_self_attention(H, n_heads=heads)
    mask = causal_attention_mask(jnp.asarray(key_mask), T)
    # O(1) random weights and biases, so every parameter visibly shapes the output
    shapes = lib.init(jax.random.PRNGKey(1), x, mask=mask)
    leaves, tree = jax.tree_util.tree_flatten(shapes)
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    params = jax.tree_util.tree_unflatten(
        tree, [0.5 * jax.random.normal(k, a.shape) for k, a in zip(keys, leaves, strict=True)])
    hand = HandWrittenAttention(H, n_heads=heads)
    hand_params = {"params": jax.tree_util.tree_map(jnp.asarray, _fused(params["params"]))}
    assert jax.tree_util.tree_map(jnp.shape, hand_params) == jax.tree_util.tree_map(
        jnp.shape, hand.init(jax.random.PRNGKey(0), x, jnp.asarray(key_mask)))
    y_lib = np.asarray(lib.apply(params, x, mask=mask))
    y_hand = np.asarray(hand.apply(hand_params, x, jnp.asarray(key_mask)))
    np.testing.assert_allclose(y_lib, y_hand, rtol=1e-5, atol=1e-5)
    # without a padding mask: causal only
    y_lib = np.asarray(lib.apply(params, x, mask=causal_attention_mask(None, T)))
    np.testing.assert_allclose(y_lib, np.asarray(hand.apply(hand_params, x)), rtol=1e-5,
                               atol=1e-5)


def test_attention_dropout_is_drawn_per_batch_element_like_pytorch():
    """Identical sequences in a batch get different attention-dropout masks (PyTorch's
    nn.Dropout; Flax's default broadcast_dropout=True would share one mask across the batch)."""
    x = jnp.broadcast_to(jax.random.normal(jax.random.PRNGKey(0), (1, T, H)), (B, T, H))
    attn = gpt2_self_attention(H, n_heads=2, dropout=0.5)
    mask = causal_attention_mask(None, T)
    params = attn.init(jax.random.PRNGKey(1), x, mask=mask, deterministic=True)
    y = np.asarray(attn.apply(params, x, mask=mask, deterministic=False,
                              rngs={"dropout": jax.random.PRNGKey(2)}))
    assert np.abs(y[0] - y[1]).max() > 1e-3
    y_eval = np.asarray(attn.apply(params, x, mask=mask, deterministic=True))
    np.testing.assert_allclose(y_eval[0], y_eval[1], atol=1e-6)


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
    attn = params["attn"]
    for dense in (attn["query"], attn["key"], attn["value"], attn["out"], params["fc"],
                  params["fc_out"]):
        w = np.asarray(dense["kernel"])
        assert abs(w.std() / 0.02 - 1) < 5 / np.sqrt(2 * w.size)
        np.testing.assert_array_equal(dense["bias"], 0.0)
    for ln in (params["ln_1"], params["ln_2"]):
        np.testing.assert_array_equal(ln["scale"], 1.0)
        np.testing.assert_array_equal(ln["bias"], 0.0)
    with pytest.raises(ValueError, match="activation"):
        TransformerBlock(8, activation="tanh").init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 8)))
    with pytest.raises(ValueError, match="n_heads"):
        TransformerBlock(8, n_heads=3).init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 8)))
