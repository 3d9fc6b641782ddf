"""Markdown tables of the ablations: trained variants beside their grid cells, return
conditioning, and the score during training (seed-level intervals, study.stats)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from s4dm_jax.study import cells as cells_
from s4dm_jax.study import stats
from s4dm_jax.study.tables import MODEL_ORDER, _ci, cell_interval, model_name


def targets_label(row: dict) -> str:
    name = model_name(row["model"])
    return f"{name} ({row['variant']})" if row["variant"] else name


def targets_table(cells: Sequence[dict]) -> tuple[str, list[dict]]:
    """Return conditioning (`targets` files): achieved return per target, mean and std over
    seeds (each seed's mean over its episodes), one row per (dataset, model, variant, target);
    variant None is the grid cell. "provenance": whether the file records the trained cell it
    evaluated (cells.provenance_note)."""
    rows = []
    for c in cells:
        if c.get("ablation") != "targets" or c.get("status") != "finished":
            continue
        per_seed = np.asarray(c["achieved_per_seed"], np.float64)  # [targets, seeds]
        for target, seeds, norm in zip(c["targets"], per_seed, c["normalized_mean"],
                                       strict=True):
            rows.append({"env": c["env"], "dataset": c["dataset"], "model": c["model"],
                         "variant": c.get("variant"), "target": float(target),
                         "mean": float(seeds.mean()), "std": float(seeds.std()),
                         "normalized": norm, "seeds": len(seeds),
                         "trained_steps": c["trained_steps"],
                         "provenance": cells_.provenance_note(c)})
    if not rows:
        return "(no return-conditioning evaluation has finished)", rows
    lines = ["| dataset | model | target return | achieved mean +- std (seeds) | normalised | "
             "provenance |", "|---|---|---|---|---|---|"]
    for r in rows:
        norm = "-" if r["normalized"] is None else f"{r['normalized']:.1f}"
        lines.append(f"| {r['env']}-{r['dataset']} | {targets_label(r)} "
                     f"| {r['target']:g} | {r['mean']:.0f} +- {r['std']:.0f} | {norm} | "
                     f"{r['provenance']} |")
    return "\n".join(lines), rows


def variants_table(cells: Sequence[dict], grid_cells: Sequence[dict],
                   reps: int = 2000) -> tuple[str, list[dict]]:
    """Trained ablation variants beside the grid cell of the same model and dataset, one row
    per target return: IQM [95% CI, seeds resampled] of each, and the difference of the
    means."""
    grid_by_key = {(c["env"], c["dataset"], c["model"]): c for c in grid_cells
                   if c.get("status") == "finished"}
    rows = []
    for c in cells:
        if c.get("status") != "finished" or "results" not in c:
            continue
        key = (c["env"], c["dataset"], c["model"])
        base = grid_by_key.get(key)
        base_evals = base["results"]["eval"] if base is not None else []
        for t, entry in enumerate(c["results"]["eval"]):
            scores = cells_.episode_scores(c, t)
            iqm, ci = cell_interval(c, t, reps)
            row = {"env": c["env"], "dataset": c["dataset"], "model": c["model"],
                   "variant": cells_.cell_name(c), "overrides": c.get("overrides", {}),
                   "target": entry["target_return"], "mean": float(scores.mean()), "iqm": iqm,
                   "ci": ci, "seeds": scores.shape[0]}
            if t < len(base_evals) and base_evals[t]["target_return"] == entry["target_return"]:
                row["grid_mean"] = float(cells_.episode_scores(base, t).mean())
                row["grid_iqm"], row["grid_ci"] = cell_interval(base, t, reps)
                row["data"] = cells_.same_data(c, base)
            rows.append(row)
    if not rows:
        return "(no trained ablation variant has finished)", rows
    lines = ["| dataset | variant | overrides | target | IQM [95% CI] | grid cell IQM [95% CI] | "
             "mean - grid mean | data as the grid cell's |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        over = ", ".join(f"{k}={v}" for k, v in r["overrides"].items()) or "-"
        grid_txt, diff = "-", "-"
        if "grid_iqm" in r:
            grid_txt, diff = _ci(r["grid_iqm"], r["grid_ci"]), f"{r['mean'] - r['grid_mean']:+.1f}"
        lines.append(f"| {r['env']}-{r['dataset']} | {r['variant']} | {over} | "
                     f"{r['target']:g} | {_ci(r['iqm'], r['ci'])} | {grid_txt} | {diff} | "
                     f"{r.get('data', '-')} |")
    return "\n".join(lines), rows


def training_eval_table(cells: Sequence[dict], reps: int = 2000) -> tuple[str, list[dict]]:
    """Score during training: trained cells evaluated on the way (config.eval.every; their
    train_curve's "eval" entries) and at the end, one row per (cell, step, target): IQM [95%
    CI, seeds resampled] of the normalised scores, and the mean."""
    rows = []
    for c in cells:
        if c.get("status") != "finished" or "results" not in c:
            continue
        res = c["results"]
        evals = [(r["step"], r["eval"]["target_returns"], r["eval"]["returns_per_seed"])
                 for r in c.get("train_curve", []) if "eval" in r]
        if not evals:
            continue
        evals.append((res["trained_steps"], [e["target_return"] for e in res["eval"]],
                      [e["returns_per_seed"] for e in res["eval"]]))
        for step, targets, returns in evals:
            for target, per_seed in zip(targets, returns, strict=True):
                scores = cells_.normalised(np.asarray(per_seed, np.float64), res["dataset"])
                key = (f"during/{cells_._protocol_name(c)}/{c['env']}-{c['dataset']}/"
                       f"{cells_.cell_name(c)}/step{step}/target{target:g}/iqm")
                iqm, ci = stats.interval(scores[None], "iqm", key, reps)
                rows.append({"env": c["env"], "dataset": c["dataset"], "model": c["model"],
                             "variant": cells_.cell_name(c), "step": int(step),
                             "target": float(target), "mean": float(scores.mean()),
                             "iqm": iqm, "ci": ci, "seeds": scores.shape[0]})
    if not rows:
        return "(no trained cell was evaluated during training)", rows
    lines = ["| dataset | variant | target | gradient step | IQM [95% CI] | mean |",
             "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["env"], r["dataset"], MODEL_ORDER.index(r["model"]),
                                         r["variant"], -r["target"], r["step"])):
        lines.append(f"| {r['env']}-{r['dataset']} | {r['variant']} | {r['target']:g} | "
                     f"{r['step']} | {_ci(r['iqm'], r['ci'])} | {r['mean']:.1f} |")
    return "\n".join(lines), rows
