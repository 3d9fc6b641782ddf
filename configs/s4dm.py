"""S4 Decision Model (S4DM). `--config=configs/s4dm.py:<preset>`, preset "embedded" (default:
a few minutes on a CPU) or "<env>-<dataset>" (e.g. "hopper-medium")."""

import ml_collections

from s4dm_jax.configs import base
from s4dm_jax.models import DEFAULTS


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
    c = base.get_base_config(preset)
    # Seed's best setting: state size 256, 16 S4 layers, lr 6.1e-4 (DEFAULTS["s4dm"]).
    c.model = ml_collections.ConfigDict({"name": "s4dm", **DEFAULTS["s4dm"]})
    c.optim.learning_rate = 6.1e-4
    c.optim.ssm_learning_rate = 1e-3
    # Whole episodes from their first step: training sees the same history as the recurrent
    # state at evaluation (see README, "Models").
    c.episode_start_windows = True
    c.model.context_len = 1000
    c.batch_size = 16
    if c.preset == "embedded":
        c.model.update(d_model=32, n_layers=4, dropout=0.0)
        c.model.ssm.d_state = 64
        c.optim.learning_rate = 1e-3
        c.optim.warmup_steps = 200
        c.num_steps = 1000
        c.steps_per_call = 50
        c.log_every = 100
        c.checkpoint_every = 500
        c.eval.episodes = 5
    return c
