"""GPT-2 style causal transformer block (pre-LayerNorm, masked attention, 4x GELU MLP)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

# Large negative logit for masked attention entries (finite, so fully masked rows give a uniform
# distribution instead of NaN; such rows only occur at padded query positions).
_NEG = -1e9


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention.

    Attributes:
      d_model: width H (divisible by n_heads).
      n_heads: number of heads.
      dropout: dropout rate on the attention weights and on the output.
    """

    d_model: int
    n_heads: int = 1
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, key_mask=None, *, train: bool = False):
        """x [B, T, H], key_mask [B, T] (1 = real token, 0 = padding) -> [B, T, H].

        Query i attends to keys j <= i whose key_mask is 1.
        """
        b, t, h = x.shape
        if h % self.n_heads:
            raise ValueError(f"d_model={h} is not divisible by n_heads={self.n_heads}")
        dh = h // self.n_heads
        qkv = nn.Dense(3 * h, name="qkv")(x)
        q, k, v = jnp.split(qkv.reshape(b, t, 3, self.n_heads, dh), 3, axis=2)
        q, k, v = (z[:, :, 0] for z in (q, k, v))  # [B, T, heads, dh]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(dh).astype(x.dtype)
        allowed = jnp.tril(jnp.ones((t, t), bool))[None, None]
        if key_mask is not None:
            allowed = allowed & (key_mask[:, None, None, :] > 0)
        logits = jnp.where(allowed, logits, jnp.asarray(_NEG, logits.dtype))
        weights = nn.softmax(logits, axis=-1)
        weights = nn.Dropout(self.dropout)(weights, deterministic=not train)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, t, h)
        out = nn.Dense(h, name="proj")(out)
        return nn.Dropout(self.dropout)(out, deterministic=not train)


class TransformerBlock(nn.Module):
    """GPT-2 block: x += Attn(LN(x)); x += MLP(LN(x)) with MLP = Dense(4H), GELU, Dense(H)."""

    d_model: int
    n_heads: int = 1
    dropout: float = 0.1
    mlp_ratio: int = 4

    @nn.compact
    def __call__(self, x, key_mask=None, *, train: bool = False):
        """x [B, T, H], key_mask [B, T] or None -> [B, T, H] (causal)."""
        y = nn.LayerNorm(name="ln_1")(x)
        x = x + CausalSelfAttention(self.d_model, self.n_heads, self.dropout, name="attn")(
            y, key_mask, train=train)
        y = nn.LayerNorm(name="ln_2")(x)
        y = nn.Dense(self.mlp_ratio * self.d_model, name="fc")(y)
        y = nn.gelu(y, approximate=True)  # GPT-2 uses the tanh approximation
        y = nn.Dense(self.d_model, name="fc_out")(y)
        return x + nn.Dropout(self.dropout)(y, deterministic=not train)
