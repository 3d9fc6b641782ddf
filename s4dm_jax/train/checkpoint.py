"""orbax checkpoints of the (seed-stacked) train state, with resume and a config guard."""

from __future__ import annotations

import json
import os

import jax
import orbax.checkpoint as ocp

# Config fields that must match for a run to resume from a workdir's checkpoints.
RESUME_KEYS = ("model", "dataset", "seeds", "seed", "batch_size", "rtg_scale", "top_fraction",
               "delayed_reward", "episode_start_windows")


class CheckpointMismatchError(ValueError):
    """The workdir holds checkpoints of a run with a different model/data/seed setup."""


def open_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
    """CheckpointManager on <workdir>/checkpoints: async saves, keep the last `keep`."""
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")),
                                 options=options)


def check_run_config(workdir: str, config) -> None:
    """Write <workdir>/run_config.json, or check that an existing one matches `config`.

    Raises CheckpointMismatchError naming the differing fields, so a resumed run never mixes
    parameters of different models or seeds (and nothing in the workdir is touched).
    """
    path = os.path.join(workdir, "run_config.json")
    current = json.loads(json.dumps({k: _plain(config[k]) for k in RESUME_KEYS}))
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        diff = [k for k in RESUME_KEYS if saved.get(k) != current[k]]
        if diff and os.path.isdir(os.path.join(workdir, "checkpoints")):
            raise CheckpointMismatchError(
                f"{workdir} holds checkpoints of a run with different {', '.join(diff)} "
                f"(saved: {[saved.get(k) for k in diff]}, now: {[current[k] for k in diff]}). "
                "Use a new --workdir, or the same config to resume that run."
            )
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w") as f:
        json.dump(current, f, indent=2, sort_keys=True)


def restore_latest(manager: ocp.CheckpointManager, state):
    """Restore the latest checkpoint into the structure/shardings of `state`.

    Returns (state, step) -- the given state and 0 when there is no checkpoint.
    """
    step = manager.latest_step()
    if step is None:
        return state, 0
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)
    restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    return restored, int(step)


def save(manager: ocp.CheckpointManager, step: int, state) -> None:
    manager.save(step, args=ocp.args.StandardSave(state))


def _plain(value):
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value
