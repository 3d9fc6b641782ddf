"""Ablations as named variants of grid cells (same protocol, data and evaluation as the grid).

    budget     a longer training budget (BUDGET_STEPS gradient steps, the protocol's schedule
               continued), evaluated every BUDGET_EVAL_EVERY steps on the way: does a model's
               score, and S4DM's gap to DT, change with more training?
    context    DT's context length K in {1, 5, 20, 50}, and S4DM trained on K-step windows
               starting anywhere (window inference) against its whole-episode default, at its
               preset batch (16 sequences: 16 K tokens per step against 16 episodes' ~16,000)
               and at DT's (64 windows: the same tokens per step as DT at each K)
    delayed    the sparse-reward variant (the whole return at the episode's last step; DT paper
               Table 7): every model, delayed_reward=True
    kernel     S4DM's S4 kernel: dplr with legs / legt / lagt / fout, diag (S4D) with
               diag-lin / diag-inv / legs
    targets    return conditioning: a trained grid cell evaluated at a range of target returns
               (achieved vs target, DT paper Figure 4); evaluation only
    tuned      the S4DM sweep's best point (N 64, 8 layers, lr 2e-3; BENCHMARKS "S4DM sweep, 2
               seeds") on the grid beside the preset, and DT / Decision Mamba at a larger
               learning rate (1e-3, BC's own), so that a faster rate is not given to S4DM alone

Each trained variant is a cell `results/ablations/<protocol>/<env>-<dataset>/<model>-<variant>.json`
(run, skipped and resumed like grid cells); `targets` writes `<model>-targets.json`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os

import numpy as np

from s4dm_jax.provenance import git_commit, machine_record
from s4dm_jax.study import grid
from s4dm_jax.train.trainer import train_and_evaluate

BUDGET_STEPS = (5_000,)
BUDGET_EVAL_EVERY = 1_000
CONTEXT_LENGTHS = (1, 5, 20, 50)
DT_BATCH = 64  # DT's preset batch (windows per step), for S4DM's windows at DT's batch
KERNELS = (("dplr", "legs"), ("dplr", "legt"), ("dplr", "lagt"), ("dplr", "fout"),
           ("diag", "diag-lin"), ("diag", "diag-inv"), ("diag", "legs"))
# The 2-seed S4DM sweep's best point (halfcheetah-medium-replay, quick budget; also the best of
# the 1-seed hopper-medium sweep) and the baselines' larger rate: the quick-tuned protocol's.
SWEEP_BEST = grid.QUICK_TUNED["s4dm"]
BASELINE_LR = grid.QUICK_TUNED["dt"]["optim.learning_rate"]
# Target returns for the return-conditioning curve, per env (0.25x to 1.5x the DT paper's
# higher target).
TARGET_SWEEP = {"hopper": np.linspace(900, 5400, 7).tolist(),
                "halfcheetah": np.linspace(3000, 18000, 7).tolist(),
                "walker2d": np.linspace(1250, 7500, 7).tolist()}


def variants(ablation: str) -> list[tuple[str, str, dict]]:
    """(model, variant name, config overrides) of one ablation."""
    if ablation == "budget":
        return [(m, f"steps{n}", {"num_steps": n, "eval.every": BUDGET_EVAL_EVERY})
                for m in grid.MODELS for n in BUDGET_STEPS]
    if ablation == "context":
        out = [("dt", f"K{k}", {"model.context_len": k}) for k in CONTEXT_LENGTHS]
        for batch in ("", "-batch64"):
            out += [("s4dm", f"K{k}{batch}",
                     {"model.context_len": k, "episode_start_windows": False,
                      "model.inference": "window", **({"batch_size": DT_BATCH} if batch else {})})
                    for k in CONTEXT_LENGTHS]
        return out + [("s4dm", "episodes", {})]
    if ablation == "delayed":
        return [(m, "delayed", {"delayed_reward": True}) for m in grid.MODELS]
    if ablation == "kernel":
        out = []
        for mode, init in KERNELS:
            over = {"model.ssm.mode": mode, "model.ssm.init": init}
            if mode == "diag":
                over["model.ssm.discretization"] = "zoh"  # S4D's default
            out.append(("s4dm", f"{mode}-{init}", over))
        return out
    if ablation == "tuned":
        return [("s4dm", "N64-L8-lr2e-3", dict(SWEEP_BEST))] + [
            (m, "lr1e-3", {"optim.learning_rate": BASELINE_LR}) for m in ("dt", "mamba")]
    raise ValueError(f"unknown ablation {ablation!r}; choose from {ABLATIONS}")


ABLATIONS = ("budget", "context", "delayed", "kernel", "targets", "tuned")
TRAINED_ABLATIONS = tuple(a for a in ABLATIONS if a != "targets")


def is_grid_cell(model: str, overrides: dict, env: str, dataset: str,
                 protocol: grid.Protocol) -> bool:
    """True when the variant's config is the grid cell's (e.g. DT at K = 20, S4DM dplr-legs):
    its result is the benchmark cell's, not trained twice."""
    base = grid.cell_config(model, env, dataset, protocol).to_dict()
    return grid.cell_config(model, env, dataset, protocol, overrides).to_dict() == base


def trained_cell(model: str, variant: str | None, overrides: dict, env: str, dataset: str,
                 protocol: grid.Protocol) -> tuple[str, str]:
    """(study, cell name) where a variant is trained: ("ablations", "<model>-<variant>"), or
    the benchmark grid's own cell ("benchmark", model) when its config is the grid cell's."""
    if is_grid_cell(model, overrides, env, dataset, protocol):
        return "benchmark", model
    return "ablations", f"{model}-{variant}"


def run_variant(spec: grid.CellSpec, variant: str, *, results_root="results",
                runs_root="runs", show_progress=True) -> dict:
    """One trained ablation cell: `spec` (model, data, protocol and the variant's overrides)
    under study "ablations", named model-variant, or the benchmark grid's own cell when the
    variant is the preset (see trained_cell)."""
    study, name = trained_cell(spec.model, variant, spec.overrides, spec.env, spec.dataset,
                               spec.protocol)
    return grid.run_cell(dataclasses.replace(spec, study=study, name=name),
                         results_root=results_root, runs_root=runs_root,
                         show_progress=show_progress)


def trained_variant(model: str, variant: str) -> tuple[str, dict]:
    """(ablation, config overrides) of the trained ablation variant `<model>-<variant>` (e.g.
    s4dm, diag-diag-lin); ValueError naming the model's variants when there is none."""
    table = {(m, v): (a, o) for a in TRAINED_ABLATIONS for m, v, o in variants(a)}
    if (model, variant) not in table:
        names = ", ".join(sorted(v for m, v in table if m == model))
        raise ValueError(f"{model} has no trained ablation variant {variant!r}; choose from "
                         f"{names}")
    return table[(model, variant)]


def _targets_stale(stored: dict, targets: list, trained: dict | None) -> str | None:
    """Why a stored targets file may not be reused: other targets, no record of the trained
    cell it evaluated (an older file), or that cell has changed since."""
    if [float(t) for t in stored.get("targets", [])] != [float(t) for t in targets]:
        return f"it was evaluated at other targets ({stored.get('targets')})"
    if "cell_config_hash" not in stored:
        return "it records no config hash of the trained cell it evaluated (an older file)"
    if trained is None or stored["cell_config_hash"] != grid.config_hash(trained["config"]):
        return "the trained cell it evaluated has changed since (config hash)"
    if grid.data_changes(stored.get("dataset_provenance", {}),
                         trained.get("dataset_provenance", {})):
        return "the trained cell's data differ from the file's"
    return None


def run_targets(spec: grid.CellSpec, *, variant: str | None = None, targets=None,
                results_root="results", runs_root="runs", show_progress=True) -> dict:
    """Evaluate a trained cell's checkpoint at every target return of TARGET_SWEEP[env]
    (evaluation only): the grid cell of `spec` (model, data, protocol), or with `variant` the
    ablation cell `<model>-<variant>` (which must have been trained). Writes
    <model>[-<variant>]-targets.json with the trained cell's config hash and data provenance,
    and reuses such a file only when both still match (else it is reported stale and left
    untouched); the evaluation's own records go to the runs directory of that name, so the
    trained cell's are unchanged."""
    model, env, dataset, protocol = spec.model, spec.env, spec.dataset, spec.protocol
    name = f"{model}-{variant}-targets" if variant else f"{model}-targets"
    path, records_dir = grid.cell_paths(results_root, runs_root, "ablations", protocol.name,
                                        env, dataset, name)
    ablation, overrides = trained_variant(model, variant) if variant else (None, {})
    study, cell = trained_cell(model, variant, overrides, env, dataset, protocol)
    trained_path, workdir = grid.cell_paths(results_root, runs_root, study, protocol.name, env,
                                            dataset, cell)
    trained = None
    if os.path.exists(trained_path):
        with open(trained_path) as fh:
            trained = json.load(fh)
    targets = list(targets or TARGET_SWEEP[env])
    if os.path.exists(path):
        with open(path) as fh:
            stored = json.load(fh)
        reason = _targets_stale(stored, targets, trained)
        if reason is None:
            return stored
        return {"status": "stale", "reason": f"{path} is kept, not reused: {reason}; move it "
                "away to evaluate again"}
    if study == "ablations":
        command = (f"python experiments/ablations.py --ablation {ablation} "
                   f"--env {env} --dataset {dataset} --protocol {protocol.name}")
    else:
        command = (f"python experiments/benchmark.py --envs {env} --datasets {dataset} "
                   f"--models {model} --protocol {protocol.name}")
    if trained is None or not os.path.isdir(os.path.join(workdir, "checkpoints")):
        return {"status": "missing", "reason": f"no trained cell in {workdir}: train it first "
                f"({command})"}
    config = grid.cell_config(model, env, dataset, protocol,
                              {**overrides, "eval.target_returns": targets})
    results = train_and_evaluate(config, workdir, show_progress=show_progress,
                                 evaluate_only=True, records_dir=records_dir)
    summary = {"study": "ablations", "ablation": "targets", "env": env, "dataset": dataset,
               "model": model, "variant": variant, "overrides": overrides,
               "protocol": protocol.name, "status": "finished", "targets": targets,
               "achieved_mean": [e["mean_return"] for e in results["eval"]],
               "achieved_per_seed": [e["mean_return_per_seed"] for e in results["eval"]],
               "normalized_mean": [e.get("normalized_score") for e in results["eval"]],
               "trained_steps": results["trained_steps"],
               "cell_config_hash": grid.config_hash(trained["config"]),
               "dataset_provenance": trained.get("dataset_provenance", {}),
               "machine": machine_record(), "git_commit": git_commit(),
               "finished_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    grid.write_json(path, summary)
    return summary
