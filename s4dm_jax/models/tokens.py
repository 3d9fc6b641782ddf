"""Token machinery shared by the sequence decision models (DT, Decision Mamba, S4DM).

A trajectory (R_t, s_t, a_t) becomes tokens of width H in one of two layouts:
  * interleaved (`TrajectoryEmbed`): three tokens per step, (R_1, s_1, a_1, R_2, ...), each
    modality with its own Linear embedding plus an optional learned timestep embedding; the
    action a_t is predicted from the s_t token (DT, Decision Mamba, S4DM "interleaved").
  * step (`StepEmbed`): one token per step, Dense(H)(concat(E_R(R_t), E_s(s_t), E_a(a_{t-1})))
    (S4DM's default).

`TokenModule` is the skeleton the three models fill in with their blocks: fields, embedding ->
LayerNorm -> dropout -> blocks -> final LayerNorm -> `ActionHead` (the one action head, BC's
too), and DT's inference (re-run on the last K steps, `models.base.windowed_step`).
`RecurrentTokenModule` adds the choice of a recurrent `step` (one block-stack update per token,
`step_blocks`; O(1) per environment step) for models whose blocks have a step view (S4, Mamba).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from s4dm_jax.models.base import check_choice, init_window, windowed_step
from s4dm_jax.nn.dropout import Dropout

INFERENCE_MODES = ("window", "recurrent")


def as_float(x: jax.Array) -> jax.Array:
    """A model input as floats: floating arrays keep their dtype (bfloat16 under mixed
    precision, see DecisionModel.compute_dtype), others become float32."""
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def embed_actions(actions: jax.Array, discrete: bool, act_dim: int,
                  dtype=jnp.float32) -> jax.Array:
    """Model input for actions: [..., act] floats unchanged (`as_float`), or one-hot [..., n]
    in `dtype` (the other inputs' dtype) of int indices.

    (One-hot followed by a Dense layer is an embedding table; out-of-range padding values such as
    -10 map to the zero vector.)
    """
    if discrete:
        return jax.nn.one_hot(actions, act_dim, dtype=dtype)
    return as_float(actions)


def torch_linear_init(fan_in: int):
    """PyTorch's default nn.Linear init for weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    (kaiming_uniform with a = sqrt(5) gives exactly this bound for the weight)."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def torch_dense(features: int, fan_in: int, name: str | None = None) -> nn.Dense:
    """nn.Dense initialised like a default PyTorch nn.Linear(fan_in, features)."""
    init = torch_linear_init(fan_in)
    return nn.Dense(features, kernel_init=init, bias_init=init, name=name)


class ActionHead(nn.Dense):
    """The action head of every decision model: Dense(act_dim) on features [..., H], then tanh
    (continuous actions in [-1, 1]) or raw logits (discrete). Fields: nn.Dense's (`features` =
    act_dim, initialisers) plus `discrete`."""

    discrete: bool = False

    def __call__(self, x: jax.Array) -> jax.Array:
        out = super().__call__(x)
        return out if self.discrete else jnp.tanh(out)


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
        rtg = as_float(rtg)
        r = self._dense(1, "embed_return")(rtg[..., None])
        s = self._dense(states.shape[-1], "embed_state")(as_float(states))
        a_in = embed_actions(actions, self.discrete, self.act_dim, rtg.dtype)
        a = self._dense(a_in.shape[-1], "embed_action")(a_in)
        if self.use_timestep:
            t = jnp.clip(timesteps, 0, self.max_ep_len - 1)
            embed_init = (nn.initializers.normal(1.0) if self.torch_init
                          else nn.linear.default_embed_init)
            te = nn.Embed(self.max_ep_len, self.d_model, embedding_init=embed_init,
                          name="embed_timestep")(t)
            r, s, a = r + te, s + te, a + te
        return interleave(r, s, a)


class StepEmbed(nn.Module):
    """One token per step: Dense(H)(concat(E_R(R_t), E_s(s_t), E_a(a_{t-1}))) (+ optional
    timestep embedding). Flax default initialisation."""

    d_model: int
    max_ep_len: int = 1000
    use_timestep: bool = False

    @nn.compact
    def __call__(self, rtg, states, a_prev, timesteps):
        """rtg [...], states [..., obs], a_prev [..., act] (already `embed_actions`), timesteps
        int [...] -> tokens [..., H]."""
        h = self.d_model
        tok = jnp.concatenate([
            nn.Dense(h, name="embed_return")(as_float(rtg)[..., None]),
            nn.Dense(h, name="embed_state")(as_float(states)),
            nn.Dense(h, name="embed_action")(a_prev),
        ], axis=-1)
        tok = nn.Dense(h, name="embed_token")(tok)
        if self.use_timestep:
            t = jnp.clip(timesteps, 0, self.max_ep_len - 1)
            tok = tok + nn.Embed(self.max_ep_len, h, name="embed_timestep")(t)
        return tok


def run_blocks(blocks, x, mask, train: bool):
    """The training view of a block stack: `blocks` is one module (e.g. nn.S4Stack) or a list
    of modules, each called as `block(x, mask, train=train)`; x [B,L,H], mask [B,L] -> [B,L,H]."""
    if isinstance(blocks, nn.Module):
        return blocks(x, mask, train=train)
    for blk in blocks:
        x = blk(x, mask, train=train)
    return x


def step_blocks(blocks, states, x):
    """The recurrent view of a block stack: advance it by one token. `blocks` is one module with
    `step(states, x_t) -> (states, y_t)` (states as it defines them) or a list of modules with
    that `step` (states: a list, one per block); x [B,H] -> (states, y [B,H])."""
    if isinstance(blocks, nn.Module):
        return blocks.step(states, x)
    new = []
    for blk, st in zip(blocks, states, strict=True):
        st, x = blk.step(st, x)
        new.append(st)
    return new, x


def interleaved_step(module, states, started, rtg_t, s_t, a_prev, t):
    """One environment step of a recurrent model over interleaved (R, s, a) tokens.

    Pushes the token of a_{t-1} (kept out of the state where `started` is False, i.e. at an
    episode's first step), then R_t and s_t, through the blocks' recurrent view
    (`step_blocks(module.blocks, states, token [B,H]) -> (states, out [B,H])`). a_{t-1} belongs
    to step t-1, so with a timestep embedding it gets t-1's.
    module: a bound TokenModule (module.embed a TrajectoryEmbed, module.embed_ln the LayerNorm
    after it); rtg_t [B], s_t [B,obs], a_prev [B,act] | int [B], t int [B], started bool [B]
    -> (states, out of the s_t token).
    """
    embed, embed_ln = module.embed, module.embed_ln

    def advance(st, x):
        return step_blocks(module.blocks, st, x)

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


class TokenModule(nn.Module):
    """Skeleton of a decision model over trajectory tokens.

    embed -> embed_ln -> dropout -> blocks -> ln_f -> action head on the outputs of the s_t
    tokens. A subclass supplies `make_blocks()` (one module or a list of modules, see
    `run_blocks`) and may override `make_embed()` / `embed_batch()` (the default: interleaved
    `TrajectoryEmbed` tokens, 3 per step). Class attributes (not hyperparameters): `torch_init`
    (PyTorch-default init of the embeddings and the action head, as the DT reference) and
    `layer_norm_eps`. `step` re-runs the model on the last K steps (`models.base.windowed_step`).
    """

    obs_dim: int
    act_dim: int
    discrete: bool = False
    context_len: int = 20
    d_model: int = 128
    n_layers: int = 3
    dropout: float = 0.1
    max_ep_len: int = 1000

    torch_init = False
    layer_norm_eps = 1e-6  # Flax's LayerNorm default
    tokens_per_step = 3  # (R_t, s_t, a_t); the action is read from the s_t token

    def make_embed(self) -> nn.Module:
        return TrajectoryEmbed(self.d_model, self.act_dim, self.discrete, self.max_ep_len,
                               torch_init=self.torch_init)

    def make_blocks(self):
        raise NotImplementedError(f"{type(self).__name__} must define make_blocks()")

    def setup(self):
        self.embed = self.make_embed()
        self.embed_ln = nn.LayerNorm(epsilon=self.layer_norm_eps)
        self.drop = Dropout(self.dropout)
        self.blocks = self.make_blocks()
        self.ln_f = nn.LayerNorm(epsilon=self.layer_norm_eps)
        init = ({"kernel_init": torch_linear_init(self.d_model),
                 "bias_init": torch_linear_init(self.d_model)} if self.torch_init else {})
        self.head = ActionHead(self.act_dim, discrete=self.discrete, **init)

    def embed_batch(self, batch):
        """batch dict (see models.base) -> (tokens [B,L,H], mask [B,L] in the tokens' dtype)."""
        x = self.embed(batch["rtg"], batch["states"], batch["actions"], batch["timesteps"])
        return x, jnp.repeat(batch["mask"].astype(x.dtype), 3, axis=1)

    def action_head(self, y):
        """Block outputs [..., H] -> actions [..., act] in [-1, 1] (tanh) or logits [..., n]."""
        return self.head(self.ln_f(y))

    def __call__(self, batch, train: bool = False):
        """batch dict (see models.base) -> preds [B,K,act] (tanh) or logits [B,K,n]."""
        x, mask = self.embed_batch(batch)
        x = self.drop(self.embed_ln(x), deterministic=not train)
        y = run_blocks(self.blocks, x, mask, train)
        if self.tokens_per_step == 3:
            y = y[:, 1::3]  # the s_t tokens
        return self.action_head(y)

    def init_carry(self, batch_size: int):
        """The empty last-K window (`models.base.init_window`)."""
        return init_window(batch_size, self.context_len, self.obs_dim, self.act_dim,
                           self.discrete)

    def step(self, carry, rtg_t, s_t, a_prev, t):
        """carry (the last-K window), rtg_t [B], s_t [B,obs], a_prev [B,act] | int [B], t int [B]
        -> (carry, out [B,act]): the training call on the window's last step."""
        return windowed_step(lambda w: self(w, train=False), carry, rtg_t, s_t, a_prev, t)


class RecurrentTokenModule(TokenModule):
    """A TokenModule whose blocks also run token by token, with a choice of inference.

    inference "window": `step` re-runs the model on the last K steps (as TokenModule);
    "recurrent": `step` advances the blocks' recurrent states, O(1) per environment step (the
    interleaved layout feeds a_{t-1} from the second step on, R_t and s_t: `interleaved_step`).
    The recurrent state spans the whole episode, so "recurrent" is only valid for a model trained
    on whole episodes from their first step (`requires_whole_episode_training`; the trainer and
    the evaluator check it). Carry: {"blocks": the blocks' states, "started": bool [B], False
    until the episode's first step is done}. A subclass supplies `init_block_states(batch_size)`
    (zero states; called on the unbound module); its blocks' `step` does the rest (`step_blocks`).
    """

    inference: str = "window"

    def __post_init__(self):
        check_choice("inference", self.inference, INFERENCE_MODES)
        super().__post_init__()

    @property
    def requires_whole_episode_training(self) -> bool:
        """The recurrent step's state spans the whole episode."""
        return self.inference == "recurrent"

    def init_block_states(self, batch_size: int):
        raise NotImplementedError(f"{type(self).__name__} must define init_block_states()")

    def init_carry(self, batch_size: int):
        if self.inference == "window":
            return super().init_carry(batch_size)
        return {"blocks": self.init_block_states(batch_size),
                "started": jnp.zeros((batch_size,), bool)}

    def recurrent_step(self, states, started, rtg_t, s_t, a_prev, t):
        """One environment step through the blocks' recurrent states: (states, features [B,H]
        of the s_t token). Interleaved tokens here; a layout with other tokens overrides it."""
        return interleaved_step(self, states, started, rtg_t, s_t, a_prev, t)

    def step(self, carry, rtg_t, s_t, a_prev, t):
        """carry, rtg_t [B], s_t [B,obs], a_prev [B,act] | int [B], t int [B] -> (carry, out)."""
        if self.inference == "window":
            return super().step(carry, rtg_t, s_t, a_prev, t)
        started = carry["started"]
        states, y = self.recurrent_step(carry["blocks"], started, rtg_t, s_t, a_prev, t)
        return {"blocks": states, "started": jnp.ones_like(started)}, self.action_head(y)
