"""Decision models behind one interface (see models.base.DecisionModel).

    model = make_model("s4dm", obs_dim=11, act_dim=3, d_model=32, n_layers=4)
    params = model.init(jax.random.PRNGKey(0))
    preds = model.apply(params, batch)                    # training view [B,K,act]
    carry = model.init_carry(batch_size)                  # inference view, one env step at a time
    carry, action = model.step(params, carry, rtg_t, s_t, a_prev, t)

Names: "s4dm" (S4 Decision Model), "dt" (Decision Transformer), "mamba" (Decision Mamba),
"bc" (behaviour cloning MLP). `DEFAULTS[name]` lists each model's keyword arguments.
"""

from __future__ import annotations

import copy

import jax

from s4dm_jax.models import bc, dt, mamba, s4dm
from s4dm_jax.models.base import (
    DecisionModel,
    action_loss,
    module_kwargs,
    param_count,
    param_table,
)

_MODULES = {
    "s4dm": s4dm.S4DMModule,
    "dt": dt.DecisionTransformerModule,
    "mamba": mamba.DecisionMambaModule,
    "bc": bc.BCModule,
}

# Each model's module fields, plus the DecisionModel's compute dtype (mixed precision).
DEFAULTS = {name: {**module_defaults, "compute_dtype": "float32"} for name, module_defaults in (
    ("s4dm", s4dm.DEFAULTS), ("dt", dt.DEFAULTS), ("mamba", mamba.DEFAULTS),
    ("bc", bc.DEFAULTS))}


def make_model(name: str, obs_dim: int, act_dim: int, *, discrete: bool = False,
               **kwargs) -> DecisionModel:
    """Build a DecisionModel.

    Args:
      name: "s4dm" | "dt" | "mamba" | "bc".
      obs_dim: observation size.
      act_dim: action size (discrete: number of actions).
      discrete: integer actions, logits output and cross-entropy loss.
      **kwargs: hyperparameters overriding DEFAULTS[name] (unknown keys raise TypeError).
    """
    if name not in _MODULES:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(_MODULES)}")
    unknown = sorted(set(kwargs) - set(DEFAULTS[name]))
    if unknown:
        raise TypeError(f"model {name!r} does not take {unknown}; accepted keyword arguments: "
                        f"{sorted(DEFAULTS[name])}")
    config = copy.deepcopy(DEFAULTS[name])
    for key, value in kwargs.items():  # nested settings (e.g. ssm) update field by field
        if isinstance(config.get(key), dict) and hasattr(value, "items"):
            config[key] = {**config[key], **dict(value)}
        else:
            config[key] = value
    if "hidden_dims" in config:
        config["hidden_dims"] = tuple(int(w) for w in config["hidden_dims"])
    fields = {k: v for k, v in config.items() if k != "compute_dtype"}
    module = _MODULES[name](obs_dim=int(obs_dim), act_dim=int(act_dim), discrete=bool(discrete),
                            **module_kwargs(_MODULES[name], fields))
    return DecisionModel(name, module, obs_dim=obs_dim, act_dim=act_dim, discrete=discrete,
                         context_len=config["context_len"], config=config,
                         compute_dtype=config["compute_dtype"])


def model_param_count(name: str, obs_dim: int, act_dim: int, **kwargs) -> int:
    """Trainable parameters of `make_model(name, obs_dim, act_dim, **kwargs)`, counted from
    shapes only (jax.eval_shape of its init: nothing is computed)."""
    model = make_model(name, obs_dim, act_dim, **kwargs)
    return param_count(jax.eval_shape(model.init, jax.random.PRNGKey(0)))


__all__ = ["DEFAULTS", "DecisionModel", "action_loss", "make_model", "model_param_count",
           "param_count", "param_table"]
