"""The DecisionModel interface shared by all decision models, plus losses and parameter counts.

A DecisionModel is a stateless Python object wrapping a flax.linen Module; all its methods are
pure functions of their arguments (jit/vmap/grad friendly). Batches are dicts
  "rtg" f32 [B,K], "states" f32 [B,K,obs], "actions" f32 [B,K,act] (discrete: int32 [B,K]),
  "timesteps" int32 [B,K], "mask" f32 [B,K] (1 = real step, 0 = left padding).
The wrapped module implements `__call__(batch, train)` -> preds [B,K,act] and
`step(carry, rtg_t, s_t, a_prev, t)` -> (carry, out [B,act]); a module whose step needs
quantities derived from the parameters once per rollout (S4DM: each S4 layer's readout C from
its trained C~) also implements `setup_step()`, which fills the "step" variable collection.
Models that re-run themselves on the last K steps at each environment step (DT, Decision
Mamba's default) keep that window in their carry with `init_window` / `windowed_step`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from s4dm_jax.nn import SSM_PARAM_NAMES
from s4dm_jax.nn.s4 import STEP_COLLECTION

COMPUTE_DTYPES = ("float32", "bfloat16")


def check_choice(field: str, value, choices) -> None:
    """ValueError naming `field` unless `value` is one of `choices` (a config field's check)."""
    if value not in choices:
        raise ValueError(f"{field} must be one of {sorted(choices)}, got {value!r}")


class DecisionModel:
    """Return-conditioned sequence model with a training call and a recurrent `step`.

    Attributes:
      name: "s4dm" | "dt" | "mamba" | "bc".
      obs_dim, act_dim: observation size; action size (discrete: number of actions).
      discrete: True -> logits and cross-entropy, actions are int32 indices.
      context_len: training window K.
      config: the model's full hyperparameters (DEFAULTS updated with the given kwargs).
      module: the flax.linen Module.
      compute_dtype: "float32", or "bfloat16" for mixed precision (accelerators): `apply` and
        `step` run the network on bfloat16 copies of the float32 parameters and inputs, except
        the S4 SSM parameters (Lambda, P, B, log dt), and the S4 kernel and convolution, the
        Mamba selective scan and the attention softmax, which run in float32; outputs and
        gradients are float32 (the parameters stay float32).
    """

    def __init__(self, name: str, module: nn.Module, *, obs_dim: int, act_dim: int,
                 discrete: bool, context_len: int, config: Mapping[str, Any],
                 compute_dtype: str = "float32"):
        check_choice("compute_dtype", compute_dtype, COMPUTE_DTYPES)
        self.compute_dtype = jnp.dtype(compute_dtype)
        self.name = name
        self.module = module
        self.obs_dim = int(obs_dim)
        self.act_dim = int(act_dim)
        self.discrete = bool(discrete)
        self.context_len = int(context_len)
        self.config = dict(config)
        self._init_fns = {}  # batch_size -> compiled init (a cache; the model stays stateless)

    def __repr__(self) -> str:
        return (f"DecisionModel({self.name!r}, obs_dim={self.obs_dim}, act_dim={self.act_dim}, "
                f"discrete={self.discrete}, config={self.config})")

    # ------------------------------------------------------------------ training path
    def dummy_batch(self, batch_size: int = 1, context_len: int | None = None) -> dict:
        """All-zero batch with mask ones (shapes only; used by `init`)."""
        window = init_window(batch_size, context_len or self.context_len, self.obs_dim,
                             self.act_dim, self.discrete)
        return {**window, "mask": jnp.ones_like(window["mask"])}

    def init(self, rng: jax.Array, batch_size: int = 1) -> dict:
        """Variables dict {"params": ...} for a fresh model (compiled; traceable too)."""
        fn = self._init_fns.get(batch_size)
        if fn is None:
            def fn(key):
                p_rng, d_rng = jax.random.split(key)
                variables = self.module.init({"params": p_rng, "dropout": d_rng},
                                             self.dummy_batch(batch_size), train=False)
                return {"params": variables["params"]}

            fn = self._init_fns[batch_size] = jax.jit(fn)
        return fn(rng)

    def apply(self, params: dict, batch: Mapping[str, jax.Array], *, train: bool = False,
              rng: jax.Array | None = None) -> jax.Array:
        """Predictions for every step: f32 [B,K,act] in [-1,1] or logits [B,K,n_actions].

        preds[:, t] depends only on rtg/states up to t and actions up to t-1.
        """
        if train and rng is None:
            raise ValueError("apply(..., train=True) needs rng (the dropout key)")
        rngs = {"dropout": rng} if rng is not None else {}
        preds = self.module.apply(self._compute(params), self._compute(dict(batch)),
                                  train=train, rngs=rngs)
        return preds.astype(jnp.float32)

    def _compute(self, tree):
        """`tree` in the compute dtype: floating leaves cast, except the S4 SSM parameters
        (and non-float leaves: integers, the complex step readouts). Identity in float32."""
        if self.compute_dtype == jnp.float32:
            return tree

        def cast(path, x):
            if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
                return x
            if path and getattr(path[-1], "key", None) in SSM_PARAM_NAMES:
                return x
            return x.astype(self.compute_dtype)

        return jax.tree_util.tree_map_with_path(cast, tree)

    def loss(self, params: dict, batch: Mapping[str, jax.Array], rng: jax.Array,
             train: bool = True, per_window: bool = False) -> tuple[jax.Array, dict]:
        """Masked MSE (continuous) or cross-entropy (discrete) over the real (mask 1) steps;
        `per_window`: see `action_loss` (used with whole-episode windows)."""
        preds = self.apply(params, batch, train=train, rng=rng)
        return action_loss(preds, batch["actions"], batch["mask"], self.discrete,
                           per_window=per_window)

    @property
    def requires_whole_episode_training(self) -> bool:
        """True when `step` carries a recurrent state over the whole episode (Decision Mamba with
        inference="recurrent"): only valid for a model trained on whole episodes from their
        first step (config.episode_start_windows=True, context_len >= the longest episode)."""
        return bool(getattr(self.module, "requires_whole_episode_training", False))

    # ------------------------------------------------------------------ inference path
    def prepare_step(self, params: dict) -> dict:
        """Variables for `step`: `params` plus what the module precomputes from them once per
        rollout (its "step" collection). Pure and jittable; identity for models that need
        nothing. Call it again whenever the parameters change."""
        if not hasattr(self.module, "setup_step"):
            return params
        _, extra = self.module.apply(params, method="setup_step", mutable=[STEP_COLLECTION])
        return {**params, **extra}

    def init_carry(self, batch_size: int):
        """Carry for `step` at the start of an episode (fixed shapes)."""
        return self.module.init_carry(batch_size)

    def step(self, params: dict, carry, rtg_t: jax.Array, s_t: jax.Array, a_prev: jax.Array,
             t: jax.Array):
        """One environment step.

        Args: params from `prepare_step`; carry; rtg_t f32 [B]; s_t f32 [B,obs]; a_prev
          f32 [B,act] (discrete: int32 [B]), zeros at t=0; t int32 [B] (the episode timestep).
        Returns: (carry, a_t f32 [B,act] in [-1,1] | logits f32 [B,n_actions]).
        """
        carry, out = self.module.apply(self._compute(params), carry, self._compute(rtg_t),
                                       self._compute(s_t), self._compute(a_prev), t,
                                       method="step")
        return carry, out.astype(jnp.float32)


def hyperparameter_defaults(module_cls) -> dict:
    """{field: default} of a decision-model module's hyperparameters: every dataclass field but
    the shapes (obs_dim, act_dim, discrete) and Flax's own (parent, name). The module's fields
    are the one source of truth for DEFAULTS, `make_model` and the configs. A field holding a
    dataclass (e.g. S4DM's `ssm: S4Config`) becomes a nested dict of its fields."""
    skip = {"obs_dim", "act_dim", "discrete", "parent", "name"}
    return {f.name: (dataclasses.asdict(f.default) if dataclasses.is_dataclass(f.default)
                     else f.default)
            for f in dataclasses.fields(module_cls) if f.name not in skip}


def module_kwargs(module_cls, config: Mapping[str, Any]) -> dict:
    """Keyword arguments for `module_cls` from plain config values: a nested mapping given for
    a dataclass-valued field is turned back into that dataclass (unknown keys -> TypeError)."""
    defaults = {f.name: f.default for f in dataclasses.fields(module_cls)}
    out = dict(config)
    for key, value in config.items():
        default = defaults.get(key)
        if dataclasses.is_dataclass(default) and isinstance(value, Mapping):
            fields = {f.name for f in dataclasses.fields(default)}
            unknown = sorted(set(value) - fields)
            if unknown:
                raise TypeError(f"{key} does not take {unknown}; accepted: {sorted(fields)}")
            out[key] = dataclasses.replace(default, **dict(value))
    return out


def action_loss(preds: jax.Array, actions: jax.Array, mask: jax.Array, discrete: bool, *,
                per_window: bool = False) -> tuple[jax.Array, dict]:
    """Masked action loss; preds [B,K,act] (discrete: logits [B,K,n]), mask [B,K].

    Continuous: (preds - actions)^2 averaged over action dims; discrete: cross-entropy(logits,
    actions), also reports accuracy. Steps with mask 0 contribute nothing (their targets may
    hold any padding value). Per-step values are averaged
      * per_window=False (default, DT-style windows): over all real steps of the batch;
      * per_window=True (whole-episode windows): over each window's real steps, then over the
        B windows. With episodes drawn in proportion to their length (data.sampling) every
        transition of the data set then has the same expected weight, 1 / (number of
        transitions), whatever the batch size; averaging over all real steps would weight a
        transition in proportion to its episode's length.
    """
    mask = mask.astype(jnp.float32)
    if per_window:
        weights = mask / jnp.maximum(mask.sum(-1, keepdims=True), 1.0) / mask.shape[0]
    else:
        weights = mask / jnp.maximum(mask.sum(), 1.0)
    if discrete:
        labels = jnp.clip(actions, 0, preds.shape[-1] - 1)
        logp = jax.nn.log_softmax(preds.astype(jnp.float32), axis=-1)
        nll = -jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
        loss = (nll * weights).sum()
        acc = ((preds.argmax(-1) == labels) * weights).sum()
        return loss, {"ce": loss, "accuracy": acc}
    se = jnp.square(preds.astype(jnp.float32) - actions.astype(jnp.float32)).mean(-1)
    loss = (se * weights).sum()
    return loss, {"mse": loss}


def init_window(batch_size: int, context_len: int, obs_dim: int, act_dim: int,
                discrete: bool) -> dict:
    """Empty (all padding) window of the last K steps for `windowed_step`: a batch dict with
    rtg [B,K], states [B,K,obs], actions [B,K,act] (discrete int32 [B,K]), timesteps, mask 0."""
    b, k = batch_size, context_len
    actions = (jnp.zeros((b, k), jnp.int32) if discrete
               else jnp.zeros((b, k, act_dim), jnp.float32))
    return {"rtg": jnp.zeros((b, k), jnp.float32),
            "states": jnp.zeros((b, k, obs_dim), jnp.float32),
            "actions": actions,
            "timesteps": jnp.zeros((b, k), jnp.int32),
            "mask": jnp.zeros((b, k), jnp.float32)}


def windowed_step(model_call, window: dict, rtg_t, s_t, a_prev, t):
    """One environment step of a model that re-runs itself on the last K steps (DT's recipe).

    Shifts the window left by one, writes a_prev into the previous step's action slot (harmless
    if that slot is padding) and (rtg_t, s_t, t, mask 1) with a zero action into the last slot,
    then runs `model_call(window) -> preds [B,K,act]` on it. Fixed shapes: no growing arrays,
    no recompilation. Until K steps have passed the window is left-padded (mask 0), exactly as
    the sampler pads training windows, so the output equals the training call on the last K
    steps. Returns (window, preds[:, -1]).
    """
    w = jax.tree_util.tree_map(lambda x: jnp.roll(x, -1, axis=1), window)
    if w["mask"].shape[1] > 1:
        w["actions"] = w["actions"].at[:, -2].set(a_prev.astype(w["actions"].dtype))
    w["actions"] = w["actions"].at[:, -1].set(jnp.zeros_like(w["actions"][:, -1]))
    w["rtg"] = w["rtg"].at[:, -1].set(rtg_t.astype(jnp.float32))
    w["states"] = w["states"].at[:, -1].set(s_t.astype(jnp.float32))
    w["timesteps"] = w["timesteps"].at[:, -1].set(t.astype(jnp.int32))
    w["mask"] = w["mask"].at[:, -1].set(1.0)
    # the window is stored in float32; the model runs on it in rtg_t's dtype (bfloat16 under
    # mixed precision)
    dtype = rtg_t.dtype if jnp.issubdtype(rtg_t.dtype, jnp.floating) else jnp.float32
    run = {k: v.astype(dtype) if jnp.issubdtype(v.dtype, jnp.floating) else v
           for k, v in w.items()}
    return w, model_call(run)[:, -1]


def param_count(params) -> int:
    """Number of scalar parameters in a pytree (a variables dict or a params dict)."""
    return int(sum(np.prod(np.shape(x)) for x in jax.tree_util.tree_leaves(params)))


def param_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Markdown table from a list of dicts (columns: the first row's keys unless given).

    Integers are printed with thousands separators, floats with 3 significant digits.
    """
    rows = list(rows)
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())

    def fmt(v):
        if isinstance(v, bool) or v is None:
            return str(v)
        if isinstance(v, (int, np.integer)):
            return f"{int(v):,}"
        if isinstance(v, (float, np.floating)):
            return f"{float(v):.3g}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)
