"""GPT-2 style causal transformer block (pre-LayerNorm, masked attention, 4x MLP).

Initialised as GPT-2 (and kzl's DT, whose GPT-2 `_init_weights` this follows): every Dense weight
N(0, 0.02), biases 0, LayerNorm scale 1 / bias 0 with epsilon 1e-5. No 1/sqrt(2 n_layer)
rescaling of the residual projections: kzl's GPT-2 copy does not apply it (later HuggingFace
GPT-2 versions and minGPT do).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from s4dm_jax.nn.dropout import Dropout, apply_dropout

GPT2_INIT_STD = 0.02
LAYER_NORM_EPS = 1e-5  # GPT-2's layer_norm_epsilon and PyTorch's LayerNorm default

# MLP activations: "relu" (kzl's DT experiments), "gelu" (exact erf GELU: CORL's nn.GELU and
# HuggingFace's "gelu"), "gelu_tanh" (GPT-2's original tanh approximation, HF's "gelu_new").
ACTIVATIONS = {
    "relu": nn.relu,
    "gelu": functools.partial(nn.gelu, approximate=False),
    "gelu_tanh": functools.partial(nn.gelu, approximate=True),
}


def causal_attention_mask(key_mask: jax.Array | None, length: int) -> jax.Array:
    """Which keys each query may attend to: bool [B or 1, 1, T, T], True where key j <= query i
    and key_mask[b, j] > 0 (key_mask [B, T], 1 = real token, 0 = padding; None: causal only)."""
    causal = nn.make_causal_mask(jnp.ones((1, length)), dtype=jnp.bool_)
    if key_mask is None:
        return causal
    padding = nn.make_attention_mask(jnp.ones_like(key_mask, jnp.bool_), key_mask > 0,
                                     dtype=jnp.bool_)
    return nn.combine_masks(causal, padding, dtype=jnp.bool_)


# Framework-imposed signature (10 parameters): Flax's `attention_fn`, which
# MultiHeadDotProductAttention calls with these keywords.
def gpt2_attention(query, key, value, mask=None, dropout_rng=None, dropout_rate: float = 0.0,
                   deterministic: bool = True, dtype=None, precision=None,
                   force_fp32_for_softmax: bool = False) -> jax.Array:
    """Flax's `dot_product_attention` (the `attention_fn` of MultiHeadDotProductAttention:
    query, key, value [B, T, heads, d] -> [B, T, heads, d]) with the package's dropout
    (`nn.dropout`) on the attention weights, drawn per batch element, head, query and key (as
    PyTorch's nn.Dropout in GPT-2's attn_dropout), and the weights (float32 after a float32
    softmax) multiplied with the values in the values' dtype, so the rest of the block keeps the
    compute dtype."""
    weights = nn.dot_product_attention_weights(
        query, key, mask=mask, deterministic=True, dtype=dtype, precision=precision,
        force_fp32_for_softmax=force_fp32_for_softmax)
    if not deterministic and dropout_rate > 0.0:
        weights = apply_dropout(weights, dropout_rng, dropout_rate)
    return jnp.einsum("...hqk,...khd->...qhd", weights.astype(value.dtype), value,
                      precision=precision)


def gpt2_self_attention(d_model: int, n_heads: int = 1, dropout: float = 0.0,
                        init_std: float = GPT2_INIT_STD,
                        name: str | None = None) -> nn.MultiHeadDotProductAttention:
    """GPT-2's multi-head self-attention as Flax's MultiHeadDotProductAttention: query, key,
    value and output Dense with N(0, init_std) weights and zero biases, `gpt2_attention` (dropout
    on the attention weights per element, softmax in float32 under mixed precision).
    Call it as attn(x [B,T,H], mask=causal_attention_mask(key_mask, T), deterministic=not train).
    It computes the same function as GPT-2's fused c_attn / c_proj (tests/nn copy the weights
    across from a fused hand-written attention); the residual dropout after the output
    projection is the caller's (TransformerBlock)."""
    if d_model % n_heads:
        raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
    return nn.MultiHeadDotProductAttention(
        num_heads=n_heads, qkv_features=d_model, out_features=d_model, dropout_rate=dropout,
        broadcast_dropout=False, kernel_init=nn.initializers.normal(init_std),
        force_fp32_for_softmax=True, attention_fn=gpt2_attention, name=name)


class TransformerBlock(nn.Module):
    """GPT-2 block: x += Dropout(Attn(LN(x))); x += Dropout(MLP(LN(x))) with MLP = Dense(4H),
    activation, Dense(H).

    Attn: `gpt2_self_attention` under `causal_attention_mask`. Dropout placement as GPT-2 (and
    kzl's DT): on the attention weights, then the residual dropout after the attention's output
    projection and after the MLP.

    Attributes: d_model, n_heads (divides d_model), dropout (attention weights, attention output,
    MLP output), mlp_ratio, activation (a key of ACTIVATIONS), init_std (N(0, init_std) Dense
    weights).
    """

    d_model: int
    n_heads: int = 1
    dropout: float = 0.1
    mlp_ratio: int = 4
    activation: str = "relu"
    init_std: float = GPT2_INIT_STD

    @nn.compact
    def __call__(self, x, key_mask=None, *, train: bool = False):
        """x [B, T, H], key_mask [B, T] or None -> [B, T, H] (causal)."""
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got "
                             f"{self.activation!r}")
        init = nn.initializers.normal(self.init_std)
        y = nn.LayerNorm(epsilon=LAYER_NORM_EPS, name="ln_1")(x)
        attn = gpt2_self_attention(self.d_model, self.n_heads, self.dropout, self.init_std,
                                   name="attn")
        y = attn(y, mask=causal_attention_mask(key_mask, x.shape[1]), deterministic=not train)
        x = x + Dropout(self.dropout)(y, deterministic=not train)
        y = nn.LayerNorm(epsilon=LAYER_NORM_EPS, name="ln_2")(x)
        y = nn.Dense(self.mlp_ratio * self.d_model, kernel_init=init, name="fc")(y)
        y = ACTIVATIONS[self.activation](y)
        y = nn.Dense(self.d_model, kernel_init=init, name="fc_out")(y)
        return x + Dropout(self.dropout)(y, deterministic=not train)
