"""GPT-2 style causal transformer block (pre-LayerNorm, masked attention, 4x MLP).

Initialised as GPT-2 (and kzl's DT, whose GPT-2 `_init_weights` this follows): every Dense weight
N(0, 0.02), biases 0, LayerNorm scale 1 / bias 0 with epsilon 1e-5. No 1/sqrt(2 n_layer)
rescaling of the residual projections: kzl's GPT-2 copy does not apply it (later HuggingFace
GPT-2 versions and minGPT do).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax.numpy as jnp

GPT2_INIT_STD = 0.02
LAYER_NORM_EPS = 1e-5  # GPT-2's layer_norm_epsilon and PyTorch's LayerNorm default

# MLP activations: "relu" (kzl's DT experiments), "gelu" (exact erf GELU: CORL's nn.GELU and
# HuggingFace's "gelu"), "gelu_tanh" (GPT-2's original tanh approximation, HF's "gelu_new").
ACTIVATIONS = {
    "relu": nn.relu,
    "gelu": functools.partial(nn.gelu, approximate=False),
    "gelu_tanh": functools.partial(nn.gelu, approximate=True),
}

# Large negative logit for masked attention entries (finite, so fully masked rows give a uniform
# distribution instead of NaN; such rows only occur at padded query positions).
_NEG = -1e9


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention.

    Attributes:
      d_model: width H (divisible by n_heads).
      n_heads: number of heads.
      dropout: dropout rate on the attention weights and on the output.
      init_std: std of the N(0, init_std) Dense weights (biases start at 0).
    """

    d_model: int
    n_heads: int = 1
    dropout: float = 0.0
    init_std: float = GPT2_INIT_STD

    @nn.compact
    def __call__(self, x, key_mask=None, *, train: bool = False):
        """x [B, T, H], key_mask [B, T] (1 = real token, 0 = padding) -> [B, T, H].

        Query i attends to keys j <= i whose key_mask is 1.
        """
        b, t, h = x.shape
        if h % self.n_heads:
            raise ValueError(f"d_model={h} is not divisible by n_heads={self.n_heads}")
        dh = h // self.n_heads
        init = nn.initializers.normal(self.init_std)
        qkv = nn.Dense(3 * h, kernel_init=init, name="qkv")(x)
        q, k, v = jnp.split(qkv.reshape(b, t, 3, self.n_heads, dh), 3, axis=2)
        q, k, v = (z[:, :, 0] for z in (q, k, v))  # [B, T, heads, dh]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(dh).astype(x.dtype)
        allowed = jnp.tril(jnp.ones((t, t), bool))[None, None]
        if key_mask is not None:
            allowed = allowed & (key_mask[:, None, None, :] > 0)
        logits = jnp.where(allowed, logits, jnp.asarray(_NEG, logits.dtype))
        weights = nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
        weights = nn.Dropout(self.dropout)(weights, deterministic=not train)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, t, h)
        out = nn.Dense(h, kernel_init=init, name="proj")(out)
        return nn.Dropout(self.dropout)(out, deterministic=not train)


class TransformerBlock(nn.Module):
    """GPT-2 block: x += Attn(LN(x)); x += MLP(LN(x)) with MLP = Dense(4H), activation, Dense(H).

    Attributes: d_model, n_heads, dropout (attention weights, attention output, MLP output),
    mlp_ratio, activation (a key of ACTIVATIONS), init_std (N(0, init_std) Dense weights).
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
        x = x + CausalSelfAttention(self.d_model, self.n_heads, self.dropout, self.init_std,
                                    name="attn")(y, key_mask, train=train)
        y = nn.LayerNorm(epsilon=LAYER_NORM_EPS, name="ln_2")(x)
        y = nn.Dense(self.mlp_ratio * self.d_model, kernel_init=init, name="fc")(y)
        y = ACTIVATIONS[self.activation](y)
        y = nn.Dense(self.d_model, kernel_init=init, name="fc_out")(y)
        return x + nn.Dropout(self.dropout)(y, deterministic=not train)
