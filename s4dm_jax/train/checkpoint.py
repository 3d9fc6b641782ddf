"""orbax checkpoints of the (seed-stacked) train state: resume with fallback to the newest intact
checkpoint, cumulative train time stored with each checkpoint, and a config guard."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Mapping

import jax
import orbax.checkpoint as ocp

# Config fields that must match for a run to resume from a workdir's checkpoints: the model,
# the data and its sampling, the seeds, and the optimiser (learning rates, schedule, decay).
RESUME_KEYS = ("model", "dataset", "seeds", "seed", "batch_size", "rtg_scale", "top_fraction",
               "top_fraction_by",
               "delayed_reward", "episode_start_windows", "optim", "sweep")
RUN_CONFIG_FILE = "run_config.json"
# Checkpoints that cannot be restored are moved here (never deleted) so training can go on.
SKIPPED_DIR = "skipped_checkpoints"


class CheckpointError(ValueError):
    """The workdir's checkpoints cannot be used as asked; the message says why and what to do."""


class CheckpointMismatchError(CheckpointError):
    """The workdir holds checkpoints of a run with a different model/data/seed/optimiser setup."""


@dataclasses.dataclass
class Restored:
    """Result of `restore_latest`: the state, its step (0: none), the cumulative train seconds
    that produced it (None when its metadata lacks them) and what was skipped, as messages."""

    state: object
    step: int
    train_s: float | None
    skipped: list[str]


def checkpoint_dir(workdir: str) -> str:
    return os.path.abspath(os.path.join(workdir, "checkpoints"))


def open_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
    """CheckpointManager on <workdir>/checkpoints: async saves, keep the last `keep` (>= 1)."""
    if int(keep) < 1:
        raise CheckpointError(f"keep_checkpoints={keep} would keep no checkpoint; use >= 1")
    options = ocp.CheckpointManagerOptions(max_to_keep=int(keep), create=True)
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def saved_steps(workdir: str) -> list[int]:
    """Steps of the finished checkpoints in <workdir>/checkpoints, ascending (no manager)."""
    directory = checkpoint_dir(workdir)
    if not os.path.isdir(directory):
        return []
    return sorted(int(name) for name in os.listdir(directory)
                  if name.isdigit() and os.path.isdir(os.path.join(directory, name)))


def resume_config(config) -> dict:
    """The RESUME_KEYS part of `config` as plain JSON values."""
    return json.loads(json.dumps({k: _plain(config[k]) for k in RESUME_KEYS}))


def config_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """'key.sub: saved X, now Y' for every leaf that differs (keys absent from `saved` are
    skipped only at the top level, where they mean "not recorded by an older version")."""
    diffs = []
    for key in sorted(set(saved) | set(current)):
        name = f"{prefix}{key}"
        if prefix == "" and key not in saved:
            continue
        a, b = saved.get(key, "<unset>"), current.get(key, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            if a.get("name") != b.get("name"):  # another model: its fields are not comparable
                diffs.append(f"{name}.name: saved {a.get('name')!r}, now {b.get('name')!r}")
            else:
                diffs += config_differences(a, b, f"{name}.")
        elif a != b:
            diffs.append(f"{name}: saved {a!r}, now {b!r}")
    return diffs


def check_run_config(workdir: str, config) -> None:
    """Raise CheckpointMismatchError if <workdir> holds checkpoints of a run whose RESUME_KEYS
    differ from `config` (naming each difference). Writes nothing."""
    path = os.path.join(workdir, RUN_CONFIG_FILE)
    if not (os.path.exists(path) and saved_steps(workdir)):
        return
    with open(path) as f:
        saved = json.load(f)
    diffs = config_differences(saved, resume_config(config))
    if diffs:
        fields = sorted({d.split(".")[0].split(":")[0] for d in diffs})
        what = " and ".join("optimiser" if f == "optim" else f for f in fields)
        raise CheckpointMismatchError(
            f"{workdir} holds checkpoints (step {max(saved_steps(workdir))}) of a run with a "
            f"different {what}: {'; '.join(diffs)}. Resuming would continue those parameters "
            "under other settings and label the result with the new ones, so nothing was "
            "changed. Use a new --workdir, or the saved values to resume that run.")


def write_run_config(workdir: str, config) -> None:
    """Write <workdir>/run_config.json (the RESUME_KEYS of `config`) atomically."""
    os.makedirs(workdir, exist_ok=True)
    atomic_write_text(os.path.join(workdir, RUN_CONFIG_FILE),
                      json.dumps(resume_config(config), indent=2, sort_keys=True))


def restore_latest(manager: ocp.CheckpointManager, state, workdir: str) -> Restored:
    """Restore the newest checkpoint that can be read into the structure/shardings of `state`.

    A checkpoint that fails to restore is moved to <workdir>/skipped_checkpoints/<step> (so a
    new one can be written at that step) and the next older one is tried; `skipped` says which
    and why. Raises CheckpointError when checkpoints exist but none can be restored.
    """
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)
    skipped = []
    for step in sorted(manager.all_steps(), reverse=True):
        _check_param_names(step, state, workdir)
        try:
            restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as e:  # orbax/tensorstore raise many types for damaged files
            reason = f"{type(e).__name__}: {_first_line(e)}"
            moved = _move_aside(workdir, step)
            skipped.append(f"checkpoint step {step} could not be restored ({reason}); it was "
                           f"moved to {moved}")
            continue
        if skipped:
            manager.reload()
        return Restored(restored, int(step), _train_seconds(manager, step), skipped)
    if skipped:
        manager.reload()
        raise CheckpointError(
            f"none of the checkpoints in {checkpoint_dir(workdir)} can be restored: "
            f"{'; '.join(skipped)}. Start again with a new --workdir (or delete "
            f"{checkpoint_dir(workdir)}); the damaged checkpoints were kept for inspection.")
    return Restored(state, 0, 0.0, [])


def _param_names(tree, prefix: str = "") -> set[str]:
    """Dotted names of the leaves of a nested-mapping parameter tree."""
    if not isinstance(tree, Mapping):
        return {prefix}
    return set().union(*(_param_names(v, f"{prefix}.{k}" if prefix else str(k))
                         for k, v in tree.items()))


def _check_param_names(step: int, state, workdir: str) -> None:
    """Refuse (without moving it) a readable checkpoint whose parameters have other names than
    the model's: it was written by another parameter layout (e.g. an S4 layer's `Lambda_re`
    before 2026-12-04), it is not damaged. Unreadable metadata is left to the restore."""
    try:  # (the manager's item_metadata needs a registered handler: read the step's own)
        meta = ocp.StandardCheckpointer().metadata(
            os.path.join(checkpoint_dir(workdir), str(step), "default"))
        saved = getattr(getattr(meta, "item_metadata", meta), "tree", meta)["params"]
    except Exception:  # damaged or unexpected metadata: restore_latest's fallback handles it
        return
    on_disk, wanted = _param_names(saved), _param_names(state["params"])
    if on_disk != wanted:
        def some(names):
            names = sorted(names)
            return ", ".join(names[:6]) + (f" (+{len(names) - 6} more)" if len(names) > 6 else "")
        raise CheckpointError(
            f"checkpoint step {step} in {checkpoint_dir(workdir)} holds parameters of another "
            f"layout than this model's (only in the checkpoint: {some(on_disk - wanted) or '-'}; "
            f"only in the model: {some(wanted - on_disk) or '-'}): it was written by another "
            "version of the code or model. It was left in place; resume it with the version "
            "that wrote it, or train in a new --workdir.")


def load_params(workdir: str):
    """The trained parameters of <workdir>'s newest checkpoint (seed axis first), read back as
    saved (no model needed); raises CheckpointError when there is none."""
    steps = saved_steps(workdir)
    if not steps:
        raise CheckpointError(f"{workdir} has no checkpoint to load")
    manager = ocp.CheckpointManager(checkpoint_dir(workdir))
    try:
        return manager.restore(steps[-1], args=ocp.args.StandardRestore())["params"]
    finally:
        manager.close()


def save(manager: ocp.CheckpointManager, step: int, state, train_s: float) -> None:
    """Save `state` at `step` (async) with the cumulative train seconds in its metadata."""
    manager.save(step, args=ocp.args.StandardSave(state),
                 custom_metadata={"train_s": float(train_s)})


def atomic_write_text(path: str, text: str) -> None:
    """Write `text` to `path` via a fsync'd temporary file and os.replace (no torn files)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def _train_seconds(manager, step) -> float | None:
    try:
        value = manager.metadata(step).custom_metadata.get("train_s")
    except Exception:  # a missing/damaged _CHECKPOINT_METADATA only loses the time
        return None
    return None if value is None else float(value)


def _move_aside(workdir: str, step: int) -> str:
    target_root = os.path.join(os.path.abspath(workdir), SKIPPED_DIR)
    os.makedirs(target_root, exist_ok=True)
    target = os.path.join(target_root, str(step))
    if os.path.exists(target):
        target = f"{target}-{time.strftime('%Y%m%d-%H%M%S')}"
    shutil.move(os.path.join(checkpoint_dir(workdir), str(step)), target)
    return target


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= 200 else line[:200] + "..."


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _plain(value):
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value
