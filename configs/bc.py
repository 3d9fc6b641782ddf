"""Behaviour cloning (MLP on the current state, CORL 256-256). `--config.top_fraction=0.1` gives
%BC (the best episodes holding 10% of the timesteps, as the DT reference).
`--config=configs/bc.py:<preset>`."""

import ml_collections

from s4dm_jax.configs import base, presets
from s4dm_jax.models import DEFAULTS


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
    c = base.get_base_config(preset)
    c.model = ml_collections.ConfigDict({"name": "bc", **DEFAULTS["bc"]})
    c.optim.learning_rate = 1e-3
    c.optim.weight_decay = 0.0
    c.optim.warmup_steps = 0
    c.optim.grad_clip = 1.0
    c.batch_size = 256
    # no warm-up (CORL's BC) and 100-step chunks (a BC step is cheap) under "embedded" too
    return presets.apply_embedded(c, {"optim.warmup_steps": 0, "steps_per_call": 100})
