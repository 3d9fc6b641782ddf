"""Decision Transformer (Chen et al. 2021; reference code kzl/decision-transformer, gym/).

Tokens (R_1, s_1, a_1, R_2, s_2, a_2, ...): each modality has its own Linear embedding, every
token of step t gets the learned timestep embedding of t (max_ep_len entries, t clipped),
LayerNorm after stacking, GPT-2 blocks with causal + padding masks, final LayerNorm, and the action
is predicted from the state token (Linear + tanh, or logits for discrete actions).

Initialisation as in the reference: kzl builds the GPT-2 blocks with its own GPT2Model, whose
`_init_weights` draws every Linear/Conv1D weight from N(0, 0.02) with zero biases and LayerNorm
1/0 (no 1/sqrt(2 n_layer) rescaling of the residual projections), while the DT's own modules
outside GPT-2 (return/state/action embeddings, timestep embedding, action head) keep PyTorch's
defaults: Linear weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), Embedding N(0, 1).
LayerNorm epsilon 1e-5 (PyTorch's and GPT-2's). MLP activation: `activation`, ReLU by default as
in kzl's experiment.py (CORL's DT uses exact GELU: activation="gelu").
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from s4dm_jax.models.base import (
    embed_actions,
    hyperparameter_defaults,
    init_window,
    windowed_step,
)
from s4dm_jax.nn.transformer import ACTIVATIONS, LAYER_NORM_EPS, TransformerBlock


def torch_linear_init(fan_in: int):
    """PyTorch's default nn.Linear init for weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    (kaiming_uniform with a = sqrt(5) gives exactly this bound for the weight)."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def torch_dense(features: int, fan_in: int, name: str) -> nn.Dense:
    """nn.Dense initialised like a default PyTorch nn.Linear(fan_in, features)."""
    init = torch_linear_init(fan_in)
    return nn.Dense(features, kernel_init=init, bias_init=init, name=name)


def interleave(r, s, a):
    """Three token streams [B,K,H] -> [B,3K,H] ordered (r_1, s_1, a_1, r_2, ...)."""
    b, k, h = r.shape
    return jnp.stack([r, s, a], axis=2).reshape(b, 3 * k, h)


class TrajectoryEmbed(nn.Module):
    """Per-modality Linear embeddings (+ optional timestep embedding), interleaved to [B,3K,H].

    torch_init: initialise as PyTorch's defaults (Linear weight and bias U(+-1/sqrt(fan_in)),
    Embedding N(0, 1)), as the DT reference does; False keeps Flax's defaults (LeCun-normal
    weights, zero biases, Embedding N(0, 1/H)).
    """

    d_model: int
    act_dim: int
    discrete: bool
    max_ep_len: int = 1000
    use_timestep: bool = True
    torch_init: bool = False

    def _dense(self, fan_in: int, name: str) -> nn.Dense:
        if self.torch_init:
            return torch_dense(self.d_model, fan_in, name)
        return nn.Dense(self.d_model, name=name)

    @nn.compact
    def __call__(self, rtg, states, actions, timesteps):
        """rtg [B,K], states [B,K,obs], actions [B,K,act] | int [B,K], timesteps int [B,K]."""
        r = self._dense(1, "embed_return")(rtg[..., None].astype(jnp.float32))
        s = self._dense(states.shape[-1], "embed_state")(states.astype(jnp.float32))
        a_in = embed_actions(actions, self.discrete, self.act_dim)
        a = self._dense(a_in.shape[-1], "embed_action")(a_in)
        if self.use_timestep:
            t = jnp.clip(timesteps, 0, self.max_ep_len - 1)
            embed_init = (nn.initializers.normal(1.0) if self.torch_init
                          else nn.linear.default_embed_init)
            te = nn.Embed(self.max_ep_len, self.d_model, embedding_init=embed_init,
                          name="embed_timestep")(t)
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
    carry and re-runs the model on it (models.base.windowed_step: no growing arrays, no
    recompilation). activation: MLP activation of the GPT-2 blocks (nn.transformer.ACTIVATIONS)."""

    obs_dim: int
    act_dim: int
    discrete: bool = False
    context_len: int = 20
    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 1
    dropout: float = 0.1
    max_ep_len: int = 1000
    activation: str = "relu"

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got "
                             f"{self.activation!r}")
        super().__post_init__()

    def setup(self):
        self.embed = TrajectoryEmbed(self.d_model, self.act_dim, self.discrete, self.max_ep_len,
                                     torch_init=True)
        self.embed_ln = nn.LayerNorm(epsilon=LAYER_NORM_EPS)
        self.drop = nn.Dropout(self.dropout)
        self.blocks = [TransformerBlock(self.d_model, self.n_heads, self.dropout,
                                        activation=self.activation)
                       for _ in range(self.n_layers)]
        self.ln_f = nn.LayerNorm(epsilon=LAYER_NORM_EPS)
        self.head = torch_dense(self.act_dim, self.d_model, "head")

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
        return init_window(batch_size, self.context_len, self.obs_dim, self.act_dim,
                           self.discrete)

    def step(self, carry, rtg_t, s_t, a_prev, t):
        """carry (the last-K window), rtg_t [B], s_t [B,obs], a_prev [B,act] | int [B], t int [B]
        -> (carry, out [B,act]): the training call on the window's last step."""
        return windowed_step(lambda w: self(w, train=False), carry, rtg_t, s_t, a_prev, t)


DEFAULTS = hyperparameter_defaults(DecisionTransformerModule)
