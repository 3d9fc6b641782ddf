"""Decision Mamba baseline (DT tokens, Mamba blocks; Ota's defaults d_state 16, d_conv 4,
expand 2). Evaluated as trained: `inference="window"` re-runs the model on the last K = 20 steps
at each environment step, as the reference does. `--config.model.inference=recurrent` (O(1) per
step) needs whole-episode training: `--config.episode_start_windows=True
--config.model.context_len=<longest episode>`. `--config=configs/mamba.py:<preset>`."""

import ml_collections

from s4dm_jax.configs import base
from s4dm_jax.models import DEFAULTS


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
    c = base.get_base_config(preset)
    c.model = ml_collections.ConfigDict({"name": "mamba", **DEFAULTS["mamba"]})
    c.optim.learning_rate = 4e-4
    c.optim.warmup_steps = 10_000
    c.batch_size = 64
    if c.preset == "embedded":
        c.model.update(d_model=64, n_layers=2, dropout=0.0)
        c.optim.learning_rate = 1e-3
        c.optim.warmup_steps = 200
        c.num_steps = 1500
        c.steps_per_call = 50
        c.log_every = 100
        c.checkpoint_every = 500
        c.eval.episodes = 5
    return c
