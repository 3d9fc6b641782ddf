"""results.json, a markdown summary and a plot (training loss + evaluation returns)."""

from __future__ import annotations

import dataclasses
import json
import os
import platform

import numpy as np


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """What a run adds to its evaluation in results.json (see `build_results`)."""

    num_params: int
    history: list[dict]          # the training record (train_history.jsonl entries)
    wall_times: dict[str, float]  # train_s, compile_s, eval_s
    devices: list[str]
    # train.trainer.trial_table: the leading axis of every per-seed list, one entry per trained
    # model with its seed and optimiser values (several per seed in a sweep)
    trials: list[dict]
    gif: str | None = None
    # the step of the evaluated parameters (None: config.num_steps); when it differs from
    # config.num_steps the results say so in "note"
    trained_steps: int | None = None


def build_results(config, dataset, result, run: RunRecord) -> dict:
    """Plain-JSON results of `result` (an evaluate.rollout RolloutResult [S, T, E]) on
    `dataset`: per-trial returns and normalised scores per target, plus summaries and `run`."""
    trained_steps = int(config.num_steps if run.trained_steps is None else run.trained_steps)
    has_refs = dataset.ref_min_score is not None and dataset.ref_max_score is not None
    per_target = []
    for ti, target in enumerate(result.targets):
        returns = result.returns[:, ti]  # [S, E]
        seed_means = returns.mean(axis=-1)
        entry = {
            "target_return": target,
            "returns_per_seed": returns.tolist(),
            "lengths_per_seed": result.lengths[:, ti].tolist(),
            "mean_return_per_seed": seed_means.tolist(),
            "std_return_per_seed": returns.std(axis=-1).tolist(),
            "mean_return": float(seed_means.mean()),
            "std_return_over_seeds": float(seed_means.std()),
            "std_return_over_episodes": float(returns.std()),
        }
        if has_refs:
            norm = np.asarray(dataset.normalized_score(seed_means), np.float64)
            entry.update(normalized_score_per_seed=norm.tolist(),
                         normalized_score=float(norm.mean()),
                         normalized_score_std_over_seeds=float(norm.std()))
        per_target.append(entry)
    results = {
        "config": config.to_dict(),
        "trained_steps": trained_steps,
        "model": config.model.name,
        "num_params": int(run.num_params),
        "dataset": {"spec": config.dataset, "name": dataset.name, "env_id": dataset.env_id,
                    "episodes": int(dataset.num_episodes),
                    "transitions": int(len(dataset.rewards)),
                    "ref_min_score": dataset.ref_min_score,
                    "ref_max_score": dataset.ref_max_score,
                    "ref_source": dataset.ref_source},
        "seeds": [t["seed"] for t in run.trials],
        "trials": run.trials,
        "eval": per_target,
        "eval_env_steps": result.env_steps,
        "final_train_loss_per_seed": run.history[-1]["loss"] if run.history else None,
        "wall_times": {**run.wall_times, "eval_rollout_s": result.wall_time_s},
        "devices": run.devices,
        "platform": platform.platform(),
        "gif": run.gif,
    }
    if trained_steps != int(config.num_steps):
        results["note"] = (f"the checkpoint at step {trained_steps} was evaluated as it is "
                           f"(--evaluate_only), not one at config.num_steps={config.num_steps}")
    return results


def trained_steps_of(results: dict) -> int:
    """Training steps of the parameters `results` describe (older results: config.num_steps)."""
    return int(results.get("trained_steps", results["config"]["num_steps"]))


def read_results(workdir: str) -> dict | None:
    """<workdir>/results.json, or None when absent or unreadable."""
    try:
        with open(os.path.join(workdir, "results.json")) as f:
            results = json.load(f)
    except (OSError, ValueError):
        return None
    return results if isinstance(results, dict) and "config" in results else None


def markdown_summary(results: dict) -> str:
    """A readable table of the evaluation."""
    d = results["dataset"]
    lines = [
        f"# {results['model']} on {d['name']} ({d['env_id']})",
        "",
        f"parameters: {results['num_params']:,}; seeds: {results['seeds']}; "
        f"trained {trained_steps_of(results):,} steps in {results['wall_times']['train_s']:.1f} s "
        f"(+ {results['wall_times'].get('compile_s', 0.0):.1f} s compiling), "
        f"eval {results['wall_times']['eval_s']:.1f} s",
        f"reference scores: min {d['ref_min_score']}, max {d['ref_max_score']} "
        f"({d['ref_source']})",
        "",
        "| target | return (mean ± std over seeds) | normalised score | per-seed returns |",
        "|---|---|---|---|",
    ]
    if results.get("note"):
        lines[2:2] = [f"note: {results['note']}"]
    for e in results["eval"]:
        norm = (f"{e['normalized_score']:.1f} ± {e['normalized_score_std_over_seeds']:.1f}"
                if "normalized_score" in e else "n/a")
        seeds = ", ".join(f"{r:.1f}" for r in e["mean_return_per_seed"])
        lines.append(f"| {e['target_return']:g} | {e['mean_return']:.1f} ± "
                     f"{e['std_return_over_seeds']:.1f} | {norm} | {seeds} |")
    return "\n".join(lines) + "\n"


def plot(path: str, results: dict, history: list) -> None:
    """curves.png: training loss per seed (left) and evaluation returns per target (right)."""
    # imported on use: matplotlib is slow to import and only plots need it; the Agg backend
    # (no display) is chosen before pyplot is imported
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(11, 4))
    if history:
        steps = [h["step"] for h in history]
        losses = np.array([h["loss"] for h in history])
        for i in range(losses.shape[1]):
            ax_loss.plot(steps, losses[:, i], label=f"seed {results['seeds'][i]}")
        ax_loss.set_yscale("log")
        ax_loss.legend()
    ax_loss.set(xlabel="train step", ylabel="loss", title="training loss")
    for k, e in enumerate(results["eval"]):
        returns = np.asarray(e["returns_per_seed"])  # [S, E]
        positions = k * (returns.shape[0] + 1) + np.arange(returns.shape[0])
        ax_eval.boxplot(returns.T, positions=positions)
    ax_eval.set_xticks([k * (len(results["seeds"]) + 1) for k in range(len(results["eval"]))])
    ax_eval.set_xticklabels([f"target {e['target_return']:g}" for e in results["eval"]])
    ax_eval.set(ylabel="episode return", title="evaluation (box per seed)")
    fig.suptitle(f"{results['model']} on {results['dataset']['name']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_all(workdir: str, results: dict, history: list) -> None:
    """Write curves.png, results.md and, last, results.json atomically into `workdir` (a
    results.json therefore always comes with the plot and summary of the same results)."""
    tmp_png = os.path.join(workdir, f"curves.tmp{os.getpid()}.png")
    plot(tmp_png, results, history)
    _replace(tmp_png, os.path.join(workdir, "curves.png"))
    _atomic_write(os.path.join(workdir, "results.md"), markdown_summary(results))
    _atomic_write(os.path.join(workdir, "results.json"), json.dumps(results, indent=2))


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    _replace(tmp, path)


def _replace(tmp: str, path: str) -> None:
    """fsync `tmp`, then rename it over `path`."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
