"""Optimiser: AdamW with linear warmup and global-norm clipping; SSM parameters get their own
learning rate and no weight decay (as in the official S4 code)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def warmup_schedule(peak: float, warmup_steps: int) -> optax.Schedule:
    """Linear warmup from ~0 to `peak` over `warmup_steps`, then constant."""
    if warmup_steps <= 0:
        return optax.constant_schedule(peak)
    return lambda step: peak * jnp.minimum((step + 1) / warmup_steps, 1.0)


def make_optimizer(optim_cfg, ssm_mask=None) -> optax.GradientTransformation:
    """optax optimiser from `config.optim`.

    Args:
      optim_cfg: learning_rate, ssm_learning_rate, weight_decay, warmup_steps, grad_clip, b1, b2.
      ssm_mask: pytree of bools like the params (True = SSM parameter: Lambda, P, B, log dt),
        or None when the model has no SSM parameters.
    """
    def adamw(lr, wd):
        return optax.adamw(
            warmup_schedule(lr, optim_cfg.warmup_steps), b1=optim_cfg.b1, b2=optim_cfg.b2,
            weight_decay=wd,
        )

    main = adamw(optim_cfg.learning_rate, optim_cfg.weight_decay)
    if ssm_mask is not None:
        labels = _labels_from_mask(ssm_mask)
        main = optax.multi_transform(
            {"other": main, "ssm": adamw(optim_cfg.ssm_learning_rate, 0.0)}, labels
        )
    return optax.chain(optax.clip_by_global_norm(optim_cfg.grad_clip), main)


def _labels_from_mask(mask):
    return jax.tree_util.tree_map(lambda is_ssm: "ssm" if is_ssm else "other", mask)
