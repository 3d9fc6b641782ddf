"""The benchmark grid: env x dataset x model cells, each trained with N vmapped seeds under a
named protocol, evaluated, and summarised in one small JSON file.

Results layout (under `results_root`, default `results/`; commit these small files):

    <results_root>/benchmark/<protocol>/<env>-<dataset>/<model>.json   one finished cell
    <results_root>/benchmark/<protocol>/<env>-<dataset>/<model>.missing.json   a cell that could
        not run (why, and the command that fixes it)

and under `runs_root` (default `runs/`; checkpoints, TensorBoard, never committed):

    <runs_root>/benchmark/<protocol>/<env>-<dataset>/<model>/   the cell's workdir

A finished cell (its JSON exists) is skipped when it was made with the same config (one made
with another config, e.g. after a preset changed, is reported as stale and left untouched); a
killed one resumes from its workdir's orbax checkpoint (the runner's own resume).
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import hashlib
import importlib
import json
import os
from collections.abc import Iterable, Sequence

import ml_collections

from s4dm_jax.configs import presets
from s4dm_jax.data import DatasetError
from s4dm_jax.data.minari_io import default_store_root
from s4dm_jax.models import model_param_count
from s4dm_jax.provenance import git_commit, machine_record
from s4dm_jax.train.history import read_history
from s4dm_jax.train.trainer import train_and_evaluate

ENVS = ("halfcheetah", "hopper", "walker2d")
DATASETS = ("medium", "medium-replay")
MODELS = ("s4dm", "dt", "mamba", "bc")
# Observation and action sizes of the gymnasium -v5 MuJoCo envs (parameter counts without data).
ENV_DIMS = {"halfcheetah": (17, 6), "hopper": (11, 3), "walker2d": (17, 6)}


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Training and evaluation budget shared by every model of a grid.

    num_steps: gradient steps (each model at its preset batch size: S4DM 16 whole episodes,
      DT / Decision Mamba 64 windows of K = 20, BC 256 states).
    warmup_steps: linear learning-rate warmup (None: the preset's, 10k for DT/Mamba/S4DM).
    eval_episodes: evaluation episodes per seed and target return.
    seeds: vmapped seeds per cell.
    model_overrides: {model: {"dotted.field": value}} settings chosen for this budget (applied
      to the model's preset before a cell's own overrides); empty: the presets as they are.
    seed: config.seed, the first training seed (seeds seed .. seed + seeds - 1; evaluation env
      copies reset with seed + 10_000 + i): the sweep's is disjoint from the grid's.
    in_data_target: also evaluate at the in-data target, fixed by a rule written before any
      run: the dataset's best episode return (its generator record's dataset_return_max),
      rounded to a whole number, after the two published targets.
    """

    name: str
    num_steps: int
    warmup_steps: int | None
    eval_episodes: int
    seeds: int
    description: str
    model_overrides: dict = dataclasses.field(default_factory=dict)
    seed: int = 0
    in_data_target: bool = False


@dataclasses.dataclass(frozen=True)
class CellSpec:
    """One cell of a study: `model` on `<env>-<dataset>` under `protocol`, trained with
    `overrides` ({"dotted.field": value}, applied last) and stored as `name` (default: the
    model) under `study` ("benchmark", "ablations" or "sweep")."""

    model: str
    env: str
    dataset: str
    protocol: Protocol
    study: str = "benchmark"
    overrides: dict = dataclasses.field(default_factory=dict)
    name: str | None = None

    @property
    def file_name(self) -> str:
        return self.name or self.model

    def config(self, provenance: dict | None = None) -> ml_collections.ConfigDict:
        """The cell's config (cell_config), with the protocol's in-data target taken from the
        dataset's generator record `provenance` when the protocol asks for one."""
        extra = in_data_overrides(self, provenance or {})
        return cell_config(self.model, self.env, self.dataset, self.protocol,
                           {**self.overrides, **extra})

    def paths(self, results_root: str, runs_root: str) -> tuple[str, str]:
        """(summary JSON path, workdir)."""
        return cell_paths(results_root, runs_root, self.study, self.protocol.name, self.env,
                          self.dataset, self.file_name)


# Settings chosen at the quick budget (1k steps), the better one kept (TUNED_ON states each
# model's tuning budget). S4DM: the 2-seed sweep's best point (BENCHMARKS "S4DM sweep, 2
# seeds": N 64, 8 layers, lr 2e-3 of {6.1e-4, 2e-3}; 18,462 parameters). DT and Decision Mamba:
# lr 1e-3 against their presets' rates (study.references: DT's reference 1e-4; our Decision
# Mamba preset 4e-4, where Ota's scripts use 1e-4 or 1e-3 per dataset), set for 100k steps
# (BENCHMARKS "The sweep's choice on the grid"). BC keeps its preset's 1e-3.
QUICK_TUNED = {
    "s4dm": {"model.ssm.d_state": 64, "model.n_layers": 8, "optim.learning_rate": 2e-3},
    "dt": {"optim.learning_rate": 1e-3},
    "mamba": {"optim.learning_rate": 1e-3},
}
# S4DM on DT's batch: 64 windows of K = 20 starting anywhere, window inference (the context
# ablation's K20-batch64 variant): about 1,280 transitions per step, as DT and Decision Mamba.
EQUAL_TRANSITIONS = {"model.context_len": 20, "episode_start_windows": False,
                     "model.inference": "window", "batch_size": 64}
# First training seed of sweeps: seeds 1000.., evaluation env seeds 11000.. (the grid's: 0..
# and 10000..10600 at most), so no sweep selects on the grid's own seeds.
SWEEP_SEED = 1000


PROTOCOLS = {
    "full": Protocol(
        "full", num_steps=100_000, warmup_steps=None, eval_episodes=100, seeds=3,
        description="the published protocol (DT paper, CORL): 100k gradient steps, preset "
                    "batch sizes and K = 20 for DT, 100 evaluation episodes per seed and "
                    "target, and the in-data target beside the two published ones",
        in_data_target=True),
    "quick": Protocol(
        "quick", num_steps=1_000, warmup_steps=100, eval_episodes=10, seeds=3,
        description="CPU budget: 1k gradient steps (warmup 100), preset batch sizes, 10 "
                    "evaluation episodes per seed and target, 3 seeds; the 6 x 4 grid took "
                    "7-8 hours on a 2-core CPU (2026-12-01/02)"),
    "quick-tuned": Protocol(
        "quick-tuned", num_steps=1_000, warmup_steps=100, eval_episodes=10, seeds=3,
        description="the quick budget with settings chosen for it: S4DM at the 2-seed "
                    "sweep's best point (N 64, 8 layers, lr 2e-3), DT and Decision Mamba at "
                    "lr 1e-3 (their presets' 1e-4 and 4e-4 are set for 100k steps; "
                    "study.references), BC as preset",
        model_overrides=QUICK_TUNED),
    "sweep": Protocol(
        "sweep", num_steps=500, warmup_steps=50, eval_episodes=5, seeds=1,
        description="S4DM hyperparameter sweep budget: 500 gradient steps (warmup 50), 5 "
                    "evaluation episodes per target, 1 seed per learning rate (the learning "
                    "rates of one shape train side by side in one vmapped program); training "
                    "and evaluation seeds disjoint from the grid's",
        seed=SWEEP_SEED),
    "quick-equal-transitions": Protocol(
        "quick-equal-transitions", num_steps=1_000, warmup_steps=100, eval_episodes=10,
        seeds=3, description="quick-tuned with S4DM on DT's batch, 64 windows of K = 20 "
                             "starting anywhere (window inference), so that S4DM, DT and "
                             "Decision Mamba see the same transitions per step; plus the "
                             "in-data target (defined, not run yet)",
        model_overrides={**QUICK_TUNED, "s4dm": {**QUICK_TUNED["s4dm"], **EQUAL_TRANSITIONS}},
        in_data_target=True),
}

# What each protocol's settings were chosen on, and with how many configurations: the "tuned
# on" column of every table (short label, then the budget in full; BENCHMARKS "S4DM sweep, 2
# seeds" and "The sweep's choice on the grid"). A model or protocol not listed runs its
# preset, tuned on nothing here.
_S4DM_SWEEP = ("hc-mr sweep, 14 configs",
               "halfcheetah-medium-replay (a grid task), 14 configurations (7 shapes x 2 "
               "learning rates) x 2 seeds, quick protocol (the grid's training seeds 0-1 and "
               "evaluation seeds)")
_LR_PAIR = ("hc-m + hc-mr, 2 lrs", "halfcheetah-medium and -medium-replay (grid tasks), 2 "
            "learning rates (the preset's and 1e-3) x 3 seeds, quick protocol")
TUNED_ON = {
    "quick-tuned": {"s4dm": _S4DM_SWEEP, "dt": _LR_PAIR, "mamba": _LR_PAIR},
    "quick-equal-transitions": {"s4dm": _S4DM_SWEEP, "dt": _LR_PAIR, "mamba": _LR_PAIR},
}
_NOT_TUNED = ("-", "preset, not tuned")


def tuned_on(protocol: str, model: str) -> tuple[str, str]:
    """(short label, full statement) of what `model`'s settings under `protocol` were tuned
    on; ("-", "preset, not tuned") when nothing."""
    return TUNED_ON.get(protocol, {}).get(model, _NOT_TUNED)


def in_data_target(provenance: dict) -> float | None:
    """The in-data target: the dataset's best episode return, rounded (None without a
    generator record)."""
    best = provenance.get("dataset_return_max")
    return None if best is None else float(round(best))


def in_data_overrides(spec: CellSpec, provenance: dict) -> dict:
    """{"eval.target_returns": (published targets..., in-data target)} when the spec's protocol
    asks for the in-data target and the dataset's record gives it; else {}."""
    target = in_data_target(provenance)
    if not spec.protocol.in_data_target or target is None:
        return {}
    config = cell_config(spec.model, spec.env, spec.dataset, spec.protocol, spec.overrides)
    return {"eval.target_returns": (*config.eval.target_returns, target)}


def cell_config(model: str, env: str, dataset: str, protocol: Protocol,
                overrides: dict | None = None) -> ml_collections.ConfigDict:
    """The model's `<env>-<dataset>` preset with the protocol's budget and settings for `model`
    (and `overrides`, a {"dotted.field": value} dict applied last)."""
    config = importlib.import_module(f"s4dm_jax.configs.{model}").get_config(f"{env}-{dataset}")
    budget = {"num_steps": protocol.num_steps, "eval.episodes": protocol.eval_episodes,
              "seeds": protocol.seeds, "seed": protocol.seed,
              "log_every": max(1, min(config.log_every, protocol.num_steps // 20)),
              "checkpoint_every": max(1, min(config.checkpoint_every, protocol.num_steps // 5))}
    if protocol.warmup_steps is not None:
        budget["optim.warmup_steps"] = protocol.warmup_steps
    presets.set_fields(config, {**budget, **protocol.model_overrides.get(model, {}),
                                **(overrides or {})})
    return config


def preset_param_count(model: str, env: str, dataset: str = "medium",
                       overrides: dict | None = None) -> int:
    """Trainable parameters of `model`'s `<env>-<dataset>` preset (with `overrides`), counted
    from shapes only (jax.eval_shape of the model's init)."""
    config = cell_config(model, env, dataset, PROTOCOLS["quick"], overrides)
    kwargs = config.model.to_dict()
    name = kwargs.pop("name")
    return model_param_count(name, *ENV_DIMS[env], **kwargs)


def parse_assignments(items) -> dict:
    """["a.b=1", "c=x"] -> {"a.b": 1, "c": "x"} (values parsed as Python literals when they
    are, e.g. numbers, tuples, True); raises ValueError for an item without '='."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected FIELD=VALUE, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def cell_paths(results_root: str, runs_root: str, study: str, protocol: str, env: str,
               dataset: str, model: str) -> tuple[str, str]:
    """(summary JSON path, workdir) of a cell."""
    rel = os.path.join(study, protocol, f"{env}-{dataset}")
    return (os.path.join(results_root, rel, f"{model}.json"),
            os.path.join(runs_root, rel, model))


def dataset_available(spec: str) -> bool:
    """True when a Minari id / path is present locally (no download is attempted)."""
    if spec == "embedded" or os.path.exists(os.path.expanduser(spec)):
        return True
    return (default_store_root() / spec / "data" / "metadata.json").exists()


def dataset_provenance(spec: str) -> dict:
    """The generator's record stored in a local Minari dataset's metadata (command, seed,
    behaviour policy, mean return), or {} when there is none."""
    path = default_store_root() / spec / "data" / "metadata.json"
    try:
        with open(path) as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        return {}
    return meta.get("s4dm_provenance", {})


def write_json(path: str, data: dict) -> None:
    """Write `data` atomically (temporary file, then rename), creating the directory."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)


def config_changes(stored: dict, current: dict) -> list[str]:
    """'field: stored -> current' for every field whose value differs between a stored cell's
    config and the config a run would use now (compared as JSON, so tuples equal lists).
    Fields only one side has are not counted (a field added to the package later holds the
    value older cells ran with)."""
    def walk(a: dict, b: dict, prefix: str) -> list[str]:
        out = []
        for key in sorted(set(a) & set(b)):
            if isinstance(a[key], dict) and isinstance(b[key], dict):
                out += walk(a[key], b[key], f"{prefix}{key}.")
            elif a[key] != b[key]:
                out.append(f"{prefix}{key}: {a[key]!r} -> {b[key]!r}")
        return out

    return walk(json.loads(json.dumps(stored)), json.loads(json.dumps(current)), "")


# The generator's statistics that tell two realisations of one dataset recipe apart (the same
# command gives other data on another host: docs/datasets.md, "Reproducibility across hosts").
DATA_IDENTITY = (("dataset_episodes", "episodes", "{}"), ("dataset_steps", "steps", "{}"),
                 ("dataset_return_mean", "mean return", "{:.1f}"),
                 ("dataset_return_std", "return std", "{:.1f}"))


def data_changes(a: dict, b: dict) -> list[str] | None:
    """How two generator records (`dataset_provenance`) differ, over the statistics both hold:
    ['episodes 110 vs 100', ...]; [] for the same data, None when they share none (unknown)."""
    shared = [(k, label, fmt) for k, label, fmt in DATA_IDENTITY if k in a and k in b]
    if not shared:
        return None
    return [f"{label} {fmt.format(a[k])} vs {fmt.format(b[k])}"
            for k, label, fmt in shared if a[k] != b[k]]


def _stale_reason(stored: dict, config: ml_collections.ConfigDict, path: str) -> str | None:
    """Why a stored summary may not be reused for `config` (another config, or other data
    than the store's), or None."""
    changes = config_changes(stored.get("config", {}), config.to_dict())
    if changes:
        return (f"{path} was made with another config ({'; '.join(changes)}); it is kept, not "
                "reused: move it away to re-run the cell, or use another results directory")
    data = data_changes(stored.get("dataset_provenance", {}), dataset_provenance(config.dataset))
    if data:
        return (f"{path} was made on other data than the store's {config.dataset} "
                f"({'; '.join(data)}: regenerated on another host?); it is kept, not reused: "
                "move it away to re-run the cell on this data, or use another results "
                "directory")
    return None


def run_cell(spec: CellSpec, *, results_root="results", runs_root="runs",
             show_progress: bool = True) -> dict:
    """Train and evaluate one cell, or return its stored summary when that was made with the
    same config and data. Returns the summary dict ({"status": "finished" | "missing" |
    "stale", ...}; stale: a stored summary from another config, or from another realisation of
    the dataset than the one in the store now, left untouched). The summary records the
    protocol, the full config and its hash, the overrides, the dataset provenance and the
    commit (what `study.cells` checks before a table uses it)."""
    summary_path, workdir = spec.paths(results_root, runs_root)
    base_config = cell_config(spec.model, spec.env, spec.dataset, spec.protocol, spec.overrides)
    provenance = dataset_provenance(base_config.dataset)
    config = spec.config(provenance)
    cell = {"study": spec.study, "protocol": dataclasses.asdict(spec.protocol), "env": spec.env,
            "dataset": spec.dataset, "model": spec.model, "name": spec.file_name,
            "overrides": dict(spec.overrides)}
    if os.path.exists(summary_path):
        with open(summary_path) as fh:
            stored = json.load(fh)
        reason = _stale_reason(stored, config, summary_path)
        return {**cell, "status": "stale", "reason": reason} if reason else stored
    missing_path = summary_path[:-len(".json")] + ".missing.json"
    command = " ".join(generation_command(spec.env, spec.dataset))
    if not dataset_available(config.dataset):
        missing = {**cell, "status": "missing", "reason": f"dataset {config.dataset} is not in "
                   f"the Minari store {default_store_root()}", "command": command}
        write_json(missing_path, missing)
        return missing
    try:
        results = train_and_evaluate(config, workdir, show_progress=show_progress)
    except DatasetError as e:
        missing = {**cell, "status": "missing", "reason": str(e), "command": command}
        write_json(missing_path, missing)
        return missing
    results.pop("config", None)  # stored once below, with the cell's description
    curve = [{"step": r["step"], "loss": r["loss"], **({"eval": r["eval"]} if "eval" in r else {})}
             for r in read_history(workdir)]
    summary = {**cell, "status": "finished", "config": config.to_dict(),
               "config_hash": config_hash(config.to_dict()), "results": results,
               "train_curve": curve, "dataset_provenance": provenance,
               "machine": machine_record(), "git_commit": git_commit(),
               "finished_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    write_json(summary_path, summary)
    if os.path.exists(missing_path):
        os.remove(missing_path)
    return summary


def config_hash(config: dict) -> str:
    """SHA-256 (first 16 hex digits) of a config dict as sorted JSON: equal configs, equal
    hashes, on any machine."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def outcome(summary: dict) -> str:
    """A cell's status for the launcher's log, with the reason when it did not finish."""
    status = summary.get("status", "unknown")
    return status if status == "finished" else f"{status}: {summary.get('reason', '')}"


def grid_cells(envs: Iterable[str], datasets: Iterable[str],
               models: Iterable[str]) -> list[tuple[str, str, str]]:
    """(env, dataset, model) for every cell, env-major (one dataset's models run together)."""
    return [(e, d, m) for e in envs for d in datasets for m in models]


def generation_command(env: str, dataset: str) -> list[str]:
    """argv of the generator that creates s4dm/<env>/<dataset>-v0 by the D4RL recipe: medium at
    the D4RL size (1M steps) and medium-replay share one SAC run (~/.s4dm_jax/runs/<env>-
    medium-sac-s0, trained to one third of the expert return by the first of them to run)."""
    argv = ["python", "-m", "s4dm_jax.data.collect", "--env", env, "--dataset", dataset,
            "--seed", "0"]
    if dataset in ("medium", "random", "expert", "medium-expert"):
        argv += ["--steps", "1000000"]
    return argv


def missing_datasets(envs: Sequence[str], datasets: Sequence[str]) -> list[tuple[str, str]]:
    """(env, dataset) of every grid dataset s4dm/<env>/<dataset>-v0 not in the local store;
    medium-replay first, so medium reuses its SAC run."""
    order = sorted(datasets, key=lambda d: d != "medium-replay")
    return [(e, d) for e in envs for d in order if not dataset_available(f"s4dm/{e}/{d}-v0")]
