"""Decision Transformer (Chen et al. 2021; reference code kzl/decision-transformer).

Tokens (R_1, s_1, a_1, R_2, s_2, a_2, ...): each modality has its own Linear embedding, every
token of step t gets the learned timestep embedding of t (max_ep_len entries, t clipped),
LayerNorm after stacking, GPT-2 blocks with causal + padding masks, final LayerNorm, and the action
is predicted from the state token (Linear + tanh, or logits for discrete actions).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from s4dm_jax.models.base import embed_actions, hyperparameter_defaults
from s4dm_jax.nn.transformer import TransformerBlock


def interleave(r, s, a):
    """Three token streams [B,K,H] -> [B,3K,H] ordered (r_1, s_1, a_1, r_2, ...)."""
    b, k, h = r.shape
    return jnp.stack([r, s, a], axis=2).reshape(b, 3 * k, h)


class TrajectoryEmbed(nn.Module):
    """Per-modality Linear embeddings (+ optional timestep embedding), interleaved to [B,3K,H]."""

    d_model: int
    act_dim: int
    discrete: bool
    max_ep_len: int = 1000
    use_timestep: bool = True

    @nn.compact
    def __call__(self, rtg, states, actions, timesteps):
        """rtg [B,K], states [B,K,obs], actions [B,K,act] | int [B,K], timesteps int [B,K]."""
        r = nn.Dense(self.d_model, name="embed_return")(rtg[..., None].astype(jnp.float32))
        s = nn.Dense(self.d_model, name="embed_state")(states.astype(jnp.float32))
        a = nn.Dense(self.d_model, name="embed_action")(
            embed_actions(actions, self.discrete, self.act_dim))
        if self.use_timestep:
            t = jnp.clip(timesteps, 0, self.max_ep_len - 1)
            te = nn.Embed(self.max_ep_len, self.d_model, name="embed_timestep")(t)
            r, s, a = r + te, s + te, a + te
        return interleave(r, s, a)


def interleaved_step(embed, embed_ln, advance, states, started, rtg_t, s_t, a_prev, t):
    """One environment step of a recurrent model over interleaved (R, s, a) tokens.

    Pushes the token of a_{t-1} (kept out of the state where `started` is False, i.e. at an
    episode's first step), then R_t and s_t, through `advance(states, token [B,H]) -> (states,
    out [B,H])`. a_{t-1} belongs to step t-1, so with a timestep embedding it gets t-1's.
    embed: a TrajectoryEmbed; embed_ln: the LayerNorm after it; rtg_t [B], s_t [B,obs],
    a_prev [B,act] | int [B], t int [B], started bool [B] -> (states, out of the s_t token).
    """
    tokens = embed(rtg_t[:, None], s_t[:, None], a_prev[:, None], t[:, None])
    r_tok, s_tok = embed_ln(tokens[:, 0]), embed_ln(tokens[:, 1])
    if embed.use_timestep:
        tokens = embed(rtg_t[:, None], s_t[:, None], a_prev[:, None],
                       jnp.maximum(t - 1, 0)[:, None])
    a_tok = embed_ln(tokens[:, 2])
    after_a, _ = advance(states, a_tok)
    states = jax.tree_util.tree_map(
        lambda new, old: jnp.where(started.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
        after_a, states)
    states, _ = advance(states, r_tok)
    return advance(states, s_tok)


class DecisionTransformerModule(nn.Module):
    """Decision Transformer. step keeps a fixed-size left-padded window of the last K steps in the
    carry and re-runs the model on it (no growing arrays, no recompilation)."""

    obs_dim: int
    act_dim: int
    discrete: bool = False
    context_len: int = 20
    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 1
    dropout: float = 0.1
    max_ep_len: int = 1000

    def setup(self):
        self.embed = TrajectoryEmbed(self.d_model, self.act_dim, self.discrete, self.max_ep_len)
        self.embed_ln = nn.LayerNorm()
        self.drop = nn.Dropout(self.dropout)
        self.blocks = [TransformerBlock(self.d_model, self.n_heads, self.dropout)
                       for _ in range(self.n_layers)]
        self.ln_f = nn.LayerNorm()
        self.head = nn.Dense(self.act_dim)

    def __call__(self, batch, train: bool = False):
        """batch dict (see models.base) -> preds [B,K,act] (tanh) or logits [B,K,n]."""
        x = self.embed(batch["rtg"], batch["states"], batch["actions"], batch["timesteps"])
        x = self.drop(self.embed_ln(x), deterministic=not train)
        key_mask = jnp.repeat(batch["mask"], 3, axis=1)
        for blk in self.blocks:
            x = blk(x, key_mask, train=train)
        x = self.ln_f(x)
        out = self.head(x[:, 1::3])  # state tokens
        return out if self.discrete else jnp.tanh(out)

    def init_carry(self, batch_size: int):
        b, k = batch_size, self.context_len
        actions = (jnp.zeros((b, k), jnp.int32) if self.discrete
                   else jnp.zeros((b, k, self.act_dim), jnp.float32))
        return {"rtg": jnp.zeros((b, k), jnp.float32),
                "states": jnp.zeros((b, k, self.obs_dim), jnp.float32),
                "actions": actions,
                "timesteps": jnp.zeros((b, k), jnp.int32),
                "mask": jnp.zeros((b, k), jnp.float32)}

    def step(self, carry, rtg_t, s_t, a_prev, t):
        """Shift the window left by one, write a_prev into the previous step's action slot and the
        new (rtg_t, s_t, t) into the last slot, run the model, return the last prediction."""
        def roll(x):
            return jnp.roll(x, -1, axis=1)

        w = jax.tree_util.tree_map(roll, carry)
        # previous step's action (its slot is now K-2; harmless if that slot is padding)
        if self.context_len > 1:
            w["actions"] = w["actions"].at[:, -2].set(a_prev.astype(w["actions"].dtype))
        w["actions"] = w["actions"].at[:, -1].set(jnp.zeros_like(w["actions"][:, -1]))
        w["rtg"] = w["rtg"].at[:, -1].set(rtg_t.astype(jnp.float32))
        w["states"] = w["states"].at[:, -1].set(s_t.astype(jnp.float32))
        w["timesteps"] = w["timesteps"].at[:, -1].set(t.astype(jnp.int32))
        w["mask"] = w["mask"].at[:, -1].set(1.0)
        preds = self(w, train=False)
        return w, preds[:, -1]


DEFAULTS = hyperparameter_defaults(DecisionTransformerModule)
