"""S4 Decision Model (S4DM). `--config=configs/s4dm.py:<preset>`, preset "embedded" (default:
a few minutes on a CPU) or "<env>-<dataset>" (e.g. "hopper-medium")."""

import ml_collections

from s4dm_jax.configs import base, presets
from s4dm_jax.models import DEFAULTS


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
    c = base.get_base_config(preset)
    # Seed's best setting: state size 256, 16 S4 layers, lr 6.1e-4 (DEFAULTS["s4dm"]).
    c.model = ml_collections.ConfigDict({"name": "s4dm", **DEFAULTS["s4dm"]})
    c.optim.learning_rate = 6.1e-4
    c.optim.ssm_learning_rate = 1e-3
    # Whole episodes from their first step: training sees the same history as the recurrent
    # state at evaluation (see docs/models.md).
    c.episode_start_windows = True
    c.model.context_len = 1000
    c.batch_size = 16
    return presets.apply_embedded(c, {"model.d_model": 32, "model.n_layers": 4,
                                      "model.dropout": 0.0, "model.ssm.d_state": 64,
                                      "num_steps": 1000})
