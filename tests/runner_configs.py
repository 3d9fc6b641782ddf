"""Tiny, fast runner configs on the embedded dataset (shared by tests/train)."""

import importlib.util
import os

from s4dm_jax.configs.presets import set_fields

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(model: str, preset: str = "embedded"):
    spec = importlib.util.spec_from_file_location(f"cfg_{model}",
                                                  os.path.join(ROOT, "configs", f"{model}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(preset)


def tiny_config(model: str, **overrides):
    """The model's embedded-preset config, shrunk so a run takes seconds, then `overrides`
    (dotted fields as keys, e.g. **{"eval.every": 3}; they must exist)."""
    c = load_config(model)
    c.model.update(TINY_MODEL[model])
    c.batch_size = 8
    c.num_steps = 4
    c.steps_per_call = 2
    c.log_every = 2
    c.checkpoint_every = 2
    c.optim.warmup_steps = 2
    c.eval.episodes = 1
    c.eval.target_returns = [1800.0]
    c.eval.max_episode_steps = 15
    set_fields(c, overrides)
    return c


# Smallest sensible sizes per model (keys are the models' DEFAULTS keys).
TINY_MODEL = {
    # whole-episode training (the preset's episode_start_windows=True) needs K >= the longest
    # embedded episode (856 steps)
    "s4dm": dict(d_model=16, ssm=dict(d_state=8), n_layers=2, context_len=1000),
    "dt": dict(d_model=16, n_layers=1, n_heads=1, context_len=8),
    "mamba": dict(d_model=16, n_layers=1, context_len=8),
    "bc": dict(hidden_dims=(16, 16)),
}
