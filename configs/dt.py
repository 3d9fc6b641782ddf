"""Decision Transformer baseline (reference hyperparameters, initialisation and ReLU MLP of
kzl/decision-transformer; `--config.model.activation=gelu` for CORL's GELU).
`--config=configs/dt.py:<preset>`."""

import ml_collections

from s4dm_jax.configs import base, presets
from s4dm_jax.models import DEFAULTS


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
    c = base.get_base_config(preset)
    c.model = ml_collections.ConfigDict({"name": "dt", **DEFAULTS["dt"]})  # K=20, 128, 3 layers
    c.optim.learning_rate = 1e-4
    c.optim.weight_decay = 1e-4
    c.optim.warmup_steps = 10_000
    c.optim.grad_clip = 0.25
    c.batch_size = 64
    return presets.apply_embedded(c)
