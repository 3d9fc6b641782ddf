"""Decision Mamba baseline (DT tokens, Mamba blocks; Ota's defaults d_state 16, d_conv 4,
expand 2). Evaluated as trained: `inference="window"` re-runs the model on the last K = 20 steps
at each environment step, as the reference does. `--config.model.inference=recurrent` (O(1) per
step) needs whole-episode training: `--config.episode_start_windows=True
--config.model.context_len=<longest episode>`. `--config=configs/mamba.py:<preset>`."""

import ml_collections

from s4dm_jax.configs import base, presets
from s4dm_jax.models import DEFAULTS


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
    c = base.get_base_config(preset)
    c.model = ml_collections.ConfigDict({"name": "mamba", **DEFAULTS["mamba"]})
    c.optim.learning_rate = 4e-4
    c.optim.warmup_steps = 10_000
    c.batch_size = 64
    return presets.apply_embedded(c, {"model.d_model": 64, "model.n_layers": 2,
                                      "model.dropout": 0.0})
