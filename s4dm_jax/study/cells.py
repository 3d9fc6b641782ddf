"""Result files of a study read back and validated before any table uses them.

A cell enters a table only when its record matches the protocol the table is for: the
protocol's fields, the config the protocol gives that model and dataset (plus, for an ablation
variant, exactly that variant's overrides), a dataset provenance record, a commit, and the
protocol's seeds x episodes. Every other file is listed under "Excluded" with its reason.
Duplicate keys are errors (ValueError), not silently collapsed.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections.abc import Sequence

import numpy as np

from s4dm_jax.study import ablations, grid

# A seed "collapsed" when every one of its evaluation episodes ended within this fraction of
# the episode limit (e.g. 50 of 1000 steps): the walker2d and hopper failures of issue 27.
COLLAPSE_FRACTION = 0.05


def load_cells(results_root: str, study: str = "benchmark", protocol: str = "quick") -> list:
    """Every cell JSON (finished or missing) of one study and protocol, sorted by path; each
    gets "_path" (relative to results_root)."""
    pattern = os.path.join(results_root, study, protocol, "*", "*.json")
    cells = []
    for path in sorted(glob.glob(pattern)):
        with open(path) as fh:
            cell = json.load(fh)
        cell["_path"] = os.path.relpath(path, results_root)
        cells.append(cell)
    return cells


def normalised(returns, ds: dict):
    """D4RL normalised score 100 (R - ref_min) / (ref_max - ref_min) with a cell's dataset refs."""
    return 100.0 * (returns - ds["ref_min_score"]) / (ds["ref_max_score"] - ds["ref_min_score"])


def episode_scores(cell: dict, target_index: int = 0) -> np.ndarray:
    """Normalised score of every evaluation episode [seeds, episodes] for one target return."""
    entry = cell["results"]["eval"][target_index]
    return normalised(np.asarray(entry["returns_per_seed"], np.float64),
                      cell["results"]["dataset"])


def cell_name(cell: dict) -> str:
    """The file name a cell is stored under (its variant name, or the model)."""
    return cell.get("name") or cell["model"]


def _protocol_name(cell: dict) -> str | None:
    proto = cell.get("protocol")
    return proto.get("name") if isinstance(proto, dict) else proto


def protocol_changes(stored: dict, protocol: grid.Protocol) -> list[str]:
    """'field: stored -> protocol' for each protocol field (not the description) that differs;
    a field the stored record lacks holds the field's default (it was added later)."""
    out = []
    for field in dataclasses.fields(protocol):
        if field.name == "description":
            continue
        default = (field.default_factory() if field.default_factory is not dataclasses.MISSING
                   else field.default)
        have = json.loads(json.dumps(stored.get(field.name, default)))
        want = json.loads(json.dumps(getattr(protocol, field.name)))
        if have != want:
            out.append(f"{field.name}: {have!r} -> {want!r}")
    return out


def expected_overrides(cell: dict, study: str) -> dict | None:
    """The overrides a cell of `study` must have been trained with: {} for a grid cell, the
    variant's for an ablation cell `<model>-<variant>`; None when its name is no known
    variant."""
    name, model = cell_name(cell), cell["model"]
    if study == "benchmark":
        return {} if name == model else None
    if not name.startswith(model + "-"):
        return None
    try:
        return ablations.trained_variant(model, name[len(model) + 1:])[1]
    except ValueError:
        return None


def check_cell(cell: dict, study: str, protocol: str) -> str | None:
    """Why a finished trained cell does not belong in a `study` / `protocol` table, or None
    when it does."""
    if _protocol_name(cell) != protocol:
        return f"protocol {_protocol_name(cell)!r}, not {protocol!r}"
    known = grid.PROTOCOLS.get(protocol)
    if not cell.get("dataset_provenance"):
        return "no dataset provenance recorded"
    if not cell.get("git_commit"):
        return "no commit recorded"
    stored = cell.get("config", {})
    if "config_hash" in cell and cell["config_hash"] != grid.config_hash(stored):
        return "config_hash does not match the stored config (edited file?)"
    overrides = cell.get("overrides") or {}
    if known is None:
        return None  # a protocol defined elsewhere (e.g. the notebook's): config not checked
    changes = protocol_changes(cell["protocol"], known)
    if changes:
        return f"protocol fields differ ({'; '.join(changes)})"
    expected = expected_overrides(cell, study)
    if expected is None:
        return f"{cell_name(cell)!r} is no cell of the {study} study (an override run?)"
    if json.loads(json.dumps(overrides)) != json.loads(json.dumps(expected)):
        return f"overrides {overrides} are not the cell's ({expected or 'none'})"
    spec = grid.CellSpec(cell["model"], cell["env"], cell["dataset"], known, study, overrides,
                         cell_name(cell))
    changes = grid.config_changes(stored, spec.config(cell["dataset_provenance"]).to_dict())
    if changes:
        return f"config differs from the protocol's ({'; '.join(changes)})"
    eval_ = cell["results"]["eval"]
    shapes = {np.shape(e["returns_per_seed"]) for e in eval_}
    if shapes != {(known.seeds, known.eval_episodes)}:
        return (f"seeds x episodes {sorted(shapes)} is not the protocol's "
                f"{known.seeds} x {known.eval_episodes}")
    return None


def check_targets(cell: dict, protocol: str, trained: dict | None) -> str | None:
    """Why a return-conditioning file (`run_targets`) does not belong in a `protocol` table,
    or None; `trained` is the cell it evaluated, when loaded. A file recording the config hash
    of the cell it evaluated must match that cell."""
    if _protocol_name(cell) != protocol:
        return f"protocol {_protocol_name(cell)!r}, not {protocol!r}"
    if "cell_config_hash" in cell:
        if trained is None:
            return "the trained cell it evaluated is not in the results"
        if cell["cell_config_hash"] != grid.config_hash(trained.get("config", {})):
            return "the trained cell it evaluated has changed since (config hash)"
    return None


def provenance_note(cell: dict) -> str:
    """'checked' for a targets file that records the config hash of the cell it evaluated,
    else a label saying it predates that record."""
    return "checked" if "cell_config_hash" in cell else "unchecked (file predates the record)"


@dataclasses.dataclass
class Selection:
    """The cells of one table: accepted (finished and valid), missing (status "missing"), and
    excluded [(relative path, reason)]."""

    accepted: list
    missing: list
    excluded: list


def select(cells: Sequence[dict], study: str, protocol: str) -> Selection:
    """Validate a study's cells for a protocol's tables (see check_cell / check_targets).
    Raises ValueError for two files of one (env, dataset, name) or a file whose content names
    another cell than its path."""
    seen, accepted, missing, excluded = {}, [], [], []
    trained = {(c["env"], c["dataset"], cell_name(c)): c for c in cells if "results" in c}
    for cell in cells:
        path = cell.get("_path", "?")
        key = (cell["env"], cell["dataset"], cell_name(cell)
               if cell.get("ablation") != "targets" else f"targets:{cell.get('variant')}"
               f":{cell['model']}")
        if key in seen:
            raise ValueError(f"duplicate cell {key}: {seen[key]} and {path}")
        seen[key] = path
        if cell.get("status") == "missing":
            missing.append(cell)
            continue
        if cell.get("status") != "finished":
            excluded.append((path, f"status {cell.get('status')!r}"))
            continue
        if cell.get("ablation") == "targets":
            name = f"{cell['model']}-{cell['variant']}" if cell.get("variant") else cell["model"]
            reason = check_targets(cell, protocol, trained.get((cell["env"], cell["dataset"],
                                                                name)))
        else:
            reason = check_cell(cell, study, protocol)
        if reason:
            excluded.append((path, reason))
        else:
            accepted.append(cell)
    return Selection(accepted, missing, excluded)


def excluded_section(excluded: Sequence[tuple[str, str]]) -> str:
    """Markdown list of the excluded files and why, "" when none."""
    if not excluded:
        return ""
    return "\n".join(["**Excluded** (result files that do not match this table's protocol; "
                      "not in any table or aggregate):", ""]
                     + [f"- `{path}`: {reason}" for path, reason in excluded])


def mixed_data(cells: Sequence[dict]) -> list[str]:
    """'<env>-<dataset> <name>: <how its data differ>' for every finished cell whose generator
    record differs from that of the first finished cell of the same dataset."""
    first, out = {}, []
    for cell in cells:
        if cell.get("status") != "finished":
            continue
        name = f"{cell['env']}-{cell['dataset']}"
        base = first.setdefault(name, cell)
        changes = grid.data_changes(cell.get("dataset_provenance", {}),
                                    base.get("dataset_provenance", {}))
        if changes:
            out.append(f"{name} {cell_name(cell)}: {'; '.join(changes)} "
                       f"(against {cell_name(base)})")
    return out


def same_data(cell: dict, base: dict) -> str:
    """Whether two cells trained on the same dataset realisation, by the generator's record
    (grid.data_changes): "yes", "no (...)" or "unknown" (no record)."""
    changes = grid.data_changes(cell.get("dataset_provenance", {}),
                                base.get("dataset_provenance", {}))
    if changes is None:
        return "unknown"
    return f"no ({'; '.join(changes)})" if changes else "yes"


def collapsed_seeds(cell: dict, target_index: int = 0) -> list[int]:
    """Seeds (positions) whose evaluation episodes all ended within COLLAPSE_FRACTION of the
    episode limit at one target ([] when the cell stores no episode lengths)."""
    entry = cell["results"]["eval"][target_index]
    if "lengths_per_seed" not in entry:
        return []
    limit = cell.get("config", {}).get("eval", {}).get("max_episode_steps", 1000)
    lengths = np.asarray(entry["lengths_per_seed"])
    return [int(s) for s in np.flatnonzero((lengths <= COLLAPSE_FRACTION * limit).all(axis=1))]


def transitions_per_step(cell: dict) -> tuple[float, str]:
    """(transitions in one gradient step's batch, how it is counted), from the cell's config
    and its dataset's mean episode length: whole-episode windows hold about min(K, mean
    length) steps each (a lower bound: episodes are drawn in proportion to their length),
    K-step windows at most K (fewer at an episode's end), BC one state."""
    cfg, ds = cell["config"], cell["results"]["dataset"]
    batch, k = cfg["batch_size"], cfg["model"].get("context_len", 1)
    if cfg["model"]["name"] == "bc":
        return float(batch), f"{batch} states"
    if cfg.get("episode_start_windows"):
        mean_len = ds["transitions"] / ds["episodes"]
        return batch * min(k, mean_len), f"{batch} episodes x {min(k, mean_len):.0f} (mean)"
    return float(batch * k), f"{batch} x {k} windows"


def best_during_training(cell: dict, target_index: int = 0) -> tuple[float, int] | None:
    """(best mean normalised score, its step) over the evaluations during training
    (config.eval.every records in train_curve) and the final one, at one target; None when
    the cell was evaluated only at the end ("last only")."""
    res = cell["results"]
    target = res["eval"][target_index]["target_return"]
    points = []
    for r in cell.get("train_curve", []):
        if "eval" in r and target in r["eval"]["target_returns"]:
            j = r["eval"]["target_returns"].index(target)
            ret = np.asarray(r["eval"]["returns_per_seed"][j], np.float64)
            points.append((float(normalised(ret, res["dataset"]).mean()), int(r["step"])))
    if not points:
        return None
    points.append((float(episode_scores(cell, target_index).mean()), int(res["trained_steps"])))
    return max(points, key=lambda p: (p[0], -p[1]))
