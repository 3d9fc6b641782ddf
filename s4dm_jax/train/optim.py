"""Optimiser: AdamW with linear warmup and global-norm clipping; SSM parameters get their own
learning rate and no weight decay (as in the official S4 code).

The learning rates and the weight decay are injected hyperparameters: they live in the
optimiser state (optax.inject_hyperparams), so states initialised with different values and
stacked on a leading axis train different hyperparameters in one vmapped program (see
train.trainer's trials).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

# Optimiser fields that can differ between the trials of one vmapped program.
VMAPPABLE = ("learning_rate", "ssm_learning_rate", "weight_decay")


def warmup_schedule(peak: float, warmup_steps: int) -> optax.Schedule:
    """Linear warmup from ~0 to `peak` over `warmup_steps`, then constant."""
    if warmup_steps <= 0:
        return optax.constant_schedule(peak)
    return lambda step: peak * jnp.minimum((step + 1) / warmup_steps, 1.0)


def make_optimizer(optim_cfg, ssm_mask=None, **values) -> optax.GradientTransformation:
    """optax optimiser from `config.optim`.

    Args:
      optim_cfg: learning_rate, ssm_learning_rate, weight_decay, warmup_steps, grad_clip, b1, b2.
      ssm_mask: pytree of bools like the params (True = SSM parameter: Lambda, P, B, log dt),
        or None when the model has no SSM parameters.
      **values: overrides of the VMAPPABLE fields (numbers or traced scalars); they are only
        read by `init`, which stores them in the state.
    Update = -lr * warmup(step) * (adam + wd * param), clipped by global norm first.
    """
    unknown = sorted(set(values) - set(VMAPPABLE))
    if unknown:
        raise TypeError(f"make_optimizer does not take {unknown}; vmappable: {VMAPPABLE}")
    hp = {k: values.get(k, optim_cfg[k]) for k in VMAPPABLE}
    warmup = warmup_schedule(1.0, optim_cfg.warmup_steps)

    def adamw(lr, wd):
        inner = optax.inject_hyperparams(optax.adamw)(learning_rate=lr, b1=optim_cfg.b1,
                                                      b2=optim_cfg.b2, weight_decay=wd)
        return optax.chain(inner, optax.scale_by_schedule(warmup))

    main = adamw(hp["learning_rate"], hp["weight_decay"])
    if ssm_mask is not None:
        labels = _labels_from_mask(ssm_mask)
        main = optax.multi_transform(
            {"other": main, "ssm": adamw(hp["ssm_learning_rate"], 0.0)}, labels
        )
    return optax.chain(optax.clip_by_global_norm(optim_cfg.grad_clip), main)


def _labels_from_mask(mask):
    return jax.tree_util.tree_map(lambda is_ssm: "ssm" if is_ssm else "other", mask)
