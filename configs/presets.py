"""The CPU-sized "embedded" preset, defined once for every model.

`--config=configs/<model>.py:embedded` (the default) trains on the small Hopper dataset shipped
in the package in a few minutes on a CPU: fewer steps, a short warm-up, frequent logging and
checkpoints, 5 evaluation episodes. A model file passes only the embedded settings that differ
for it (e.g. smaller layers) to `apply_embedded`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections

# Dotted config field -> value, applied to every model's config under the "embedded" preset.
EMBEDDED = {
    "optim.learning_rate": 1e-3,
    "optim.warmup_steps": 200,
    "num_steps": 1500,
    "steps_per_call": 50,
    "log_every": 100,
    "checkpoint_every": 500,
    "eval.episodes": 5,
}


def set_fields(config: ml_collections.ConfigDict, fields: Mapping[str, Any]) -> None:
    """Set dotted fields ("optim.learning_rate") of `config` in place (they must exist)."""
    for dotted, value in fields.items():
        *parents, leaf = dotted.split(".")
        node = config
        for name in parents:
            node = node[name]
        if leaf not in node:
            raise KeyError(f"preset field {dotted!r} is not a config field")
        node[leaf] = value


def apply_embedded(config: ml_collections.ConfigDict,
                   model_fields: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
    """Under the "embedded" preset, set `EMBEDDED` then the model's own `model_fields` (which
    win where both name a field); under a T-Maze preset ("tmaze-...", configs/base.py) only the
    model's "model.*" fields; other presets are returned unchanged."""
    if config.preset == "embedded":
        set_fields(config, {**EMBEDDED, **(model_fields or {})})
    elif str(config.preset).startswith("tmaze-"):  # the same CPU-sized model on T-Maze data
        set_fields(config, {k: v for k, v in (model_fields or {}).items()
                            if k.startswith("model.")})
        episode = int(config.eval.max_episode_steps)
        if config.episode_start_windows:  # whole episodes: the context is the episode
            set_fields(config, {"model.context_len": episode})
        if "max_ep_len" in config.model:  # timestep embeddings must cover the whole episode
            set_fields(config, {"model.max_ep_len": max(int(config.model.max_ep_len), episode)})
    return config
