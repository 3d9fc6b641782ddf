"""From results directories to markdown tables and matplotlib figures.

Scores are D4RL-normalised returns, 100 (R - ref_min) / (ref_max - ref_min), per evaluation
episode. For each (dataset, model) cell: mean +- std over seeds (of the per-seed episode means)
and the interquartile mean (IQM) over all seed x episode runs with a 95% stratified-bootstrap
confidence interval (rliable, Agarwal et al. 2021); across datasets: the aggregate IQM with
stratified-bootstrap CIs and the probability of improvement of S4DM over each baseline.
Published D4RL numbers (other data: the D4RL v2 datasets, other code) are shown beside ours,
labelled as such.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import warnings
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from rliable import library as rly
from rliable import metrics, plot_utils

from s4dm_jax.study import grid

# Published normalised scores on the D4RL v2 datasets (REFERENCE.md section 3): other data,
# other code; shown for orientation only.
PUBLISHED = {
    ("halfcheetah", "medium"): {"bc": 42.4, "dt": 42.6, "mamba": 42.8, "ds4": 42.5},
    ("hopper", "medium"): {"bc": 53.5, "dt": 67.6, "mamba": 83.5, "ds4": 54.2},
    ("walker2d", "medium"): {"bc": 63.2, "dt": 74.0, "mamba": 78.2, "ds4": 78.0},
    ("halfcheetah", "medium-replay"): {"bc": 35.7, "dt": 36.6, "mamba": 39.6, "ds4": 15.2},
    ("hopper", "medium-replay"): {"bc": 29.8, "dt": 82.7, "mamba": 82.6, "ds4": 49.6},
    ("walker2d", "medium-replay"): {"bc": 21.8, "dt": 66.6, "mamba": 70.9, "ds4": 69.0},
}
PUBLISHED_SOURCES = ("BC: CORL; DT: Chen et al. 2021 (paper); Decision Mamba: Ota 2024; "
                     "DS4 (Decision S4, Bar-David et al. 2023) for S4DM's column")
MODEL_ORDER = ("s4dm", "dt", "mamba", "bc")
MODEL_NAMES = {"s4dm": "S4DM", "dt": "DT", "mamba": "DMamba", "bc": "BC"}
# One colour per model in every figure (matplotlib's default cycle, in MODEL_ORDER).
MODEL_COLOURS = {m: f"C{i}" for i, m in enumerate(MODEL_ORDER)}


def load_cells(results_root: str, study: str = "benchmark", protocol: str = "quick") -> list:
    """Every cell JSON (finished or missing) of one study and protocol, sorted."""
    pattern = os.path.join(results_root, study, protocol, "*", "*.json")
    cells = []
    for path in sorted(glob.glob(pattern)):
        with open(path) as fh:
            cells.append(json.load(fh))
    return cells


def unrun_cells(cells: Sequence[dict], envs: Sequence[str] = grid.ENVS,
                datasets: Sequence[str] = grid.DATASETS,
                models: Sequence[str] = grid.MODELS) -> list[dict]:
    """A "missing" entry for every grid cell that has no result file yet, saying why: its
    dataset is not in this machine's Minari store ("command": the generator command that makes
    it), or it has not been run yet."""
    have = {(c["env"], c["dataset"], c["model"]) for c in cells}
    out = []
    for env, dataset, model in grid.grid_cells(envs, datasets, models):
        if (env, dataset, model) in have:
            continue
        spec = f"s4dm/{env}/{dataset}-v0"
        available = grid.dataset_available(spec)
        reason = ("not run yet (compute)" if available else
                  f"not run yet: dataset {spec} not generated here")
        out.append({"env": env, "dataset": dataset, "model": model, "status": "missing",
                    "reason": reason,
                    "command": None if available else " ".join(grid.generation_command(env,
                                                                                       dataset))})
    return out


def episode_scores(cell: dict, target_index: int = 0) -> np.ndarray:
    """Normalised score of every evaluation episode [seeds, episodes] for one target return."""
    entry = cell["results"]["eval"][target_index]
    ds = cell["results"]["dataset"]
    return normalised(np.asarray(entry["returns_per_seed"], np.float64), ds)


def normalised(returns, ds: dict):
    """D4RL normalised score 100 (R - ref_min) / (ref_max - ref_min) with a cell's dataset refs."""
    return 100.0 * (returns - ds["ref_min_score"]) / (ds["ref_max_score"] - ds["ref_min_score"])


def _interval_estimates(scores: dict, metric, reps: int, seed: int = 0):
    """rliable's stratified-bootstrap interval estimates, reproducible.

    rliable draws its resampling indices from numpy's global generator (``np.random.choice``)
    and ignores the ``random_state`` it is given, so the intervals moved from run to run. The
    global generator is seeded here and its previous state restored afterwards.
    """
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():  # arch deprecates the random_state rliable passes
            warnings.simplefilter("ignore", FutureWarning)
            return rly.get_interval_estimates(scores, metric, reps=reps,
                                              random_state=np.random.RandomState(seed))
    finally:
        np.random.set_state(saved)


def _iqm_ci(scores_by_model: dict, reps: int, seed: int = 0):
    """IQM point estimates and 95% stratified-bootstrap CIs; scores [runs, tasks]."""
    def iqm(x):
        return np.array([metrics.aggregate_iqm(x)])

    return _interval_estimates(scores_by_model, iqm, reps, seed)


def _episode_iqm(scores, reps: int) -> tuple[float, list[float]]:
    """IQM and its 95% stratified-bootstrap CI [lo, hi] of one cell's episode scores (any
    shape, e.g. [seeds, episodes]), all runs of one task."""
    point, ci = _iqm_ci({"x": np.asarray(scores).reshape(-1, 1)}, reps)
    return float(point["x"][0]), [float(v) for v in ci["x"][:, 0]]


def _not_run(reason: str) -> str:
    return reason if reason.startswith("not run") else f"not run: {reason}".rstrip(": ")


def cell_table(cells: Sequence[dict], reps: int = 2000) -> tuple[str, list[dict]]:
    """Markdown table of every (dataset, model) cell and the rows behind it."""
    rows = []
    for cell in cells:
        key = (cell["env"], cell["dataset"], cell["model"])
        if cell.get("status") != "finished":
            rows.append({"env": key[0], "dataset": key[1], "model": key[2],
                         "missing": _not_run(cell.get("reason", ""))})
            continue
        res = cell["results"]
        for ti, entry in enumerate(res["eval"]):
            scores = episode_scores(cell, ti)  # [seeds, episodes]
            iqm, ci = _episode_iqm(scores, reps)
            rows.append({
                "env": key[0], "dataset": key[1], "model": key[2],
                "target": entry["target_return"], "params": res["num_params"],
                "seeds": len(res["seeds"]), "episodes": scores.shape[1],
                "mean": float(scores.mean(axis=1).mean()),
                "std": float(scores.mean(axis=1).std()),
                "iqm": iqm, "ci": ci, "train_s": res["wall_times"]["train_s"],
                "published": PUBLISHED.get(key[:2], {}).get(
                    "ds4" if key[2] == "s4dm" else key[2]),
            })
    head = ("| dataset | model | target | params | seeds x episodes | score mean +- std "
            "(seeds) | IQM [95% CI] | train s | published (other data) |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        name = f"{r['env']}-{r['dataset']}"
        if "missing" in r:
            lines.append(f"| {name} | {MODEL_NAMES.get(r['model'], r['model'])} | - | - | - | "
                         f"{r['missing'][:200]} | - | - | - |")
            continue
        pub = "-" if r["published"] is None else f"{r['published']:.1f}"
        lines.append(
            f"| {name} | {MODEL_NAMES.get(r['model'], r['model'])} | {r['target']:g} "
            f"| {r['params']:,} | {r['seeds']} x {r['episodes']} | {r['mean']:.1f} +- "
            f"{r['std']:.1f} | {r['iqm']:.1f} [{r['ci'][0]:.1f}, {r['ci'][1]:.1f}] "
            f"| {r['train_s']:.0f} | {pub} |")
    return "\n".join(lines), rows


def dataset_table(cells: Sequence[dict]) -> str:
    """Markdown table of the datasets behind the finished cells: size and the behaviour data's
    own mean return, raw and normalised with the same references as the scores (what copying
    the data would score); "-" where the cell JSON has no provenance (a D4RL file)."""
    seen = {}
    for cell in cells:
        if cell.get("status") == "finished":
            seen.setdefault(f"{cell['env']}-{cell['dataset']}", cell)
    if not seen:
        return ""
    lines = ["| dataset | episodes | transitions | data return mean +- std | data normalised |",
             "|---|---|---|---|---|"]
    mixed = mixed_data(cells)
    for name in sorted(seen):
        cell = seen[name]
        ds = cell["results"]["dataset"]
        prov = cell.get("dataset_provenance") or {}
        mean, std = prov.get("dataset_return_mean"), prov.get("dataset_return_std")
        if mean is None:
            ret = norm = "-"
        else:
            ret = f"{mean:.1f} +- {std:.1f}" if std is not None else f"{mean:.1f}"
            norm = f"{normalised(mean, ds):.1f}"
        size = [f"{ds[k]:,}" if isinstance(ds.get(k), int) else "-"
                for k in ("episodes", "transitions")]
        lines.append(f"| {name} | {size[0]} | {size[1]} | {ret} | {norm} |")
    if mixed:
        lines += ["", "**Cells of one dataset trained on different realisations of it** (the "
                  "generator's record differs from the first cell's; compare them with care): "
                  + "; ".join(mixed) + "."]
    return "\n".join(lines)


def mixed_data(cells: Sequence[dict]) -> list[str]:
    """'<env>-<dataset> <model>: <how its data differ>' for every finished cell whose
    generator record differs from that of the first finished cell of the same dataset (cells
    of one dataset regenerated on another host; grid.data_changes)."""
    first, out = {}, []
    for cell in cells:
        if cell.get("status") != "finished":
            continue
        name = f"{cell['env']}-{cell['dataset']}"
        base = first.setdefault(name, cell)
        changes = grid.data_changes(cell.get("dataset_provenance", {}),
                                    base.get("dataset_provenance", {}))
        if changes:
            out.append(f"{name} {cell.get('name', cell['model'])}: {'; '.join(changes)} "
                       f"(against {base.get('name', base['model'])})")
    return out


def parameter_share(rows: Sequence[dict]) -> str:
    """One sentence: S4DM's parameters as a share of DT's, per environment (the counts depend
    on the observation and action sizes), from the table's rows; "" without both models."""
    by_env = {}
    for r in rows:
        if "params" in r:
            by_env.setdefault(r["env"], {})[r["model"]] = r["params"]
    parts = [f"{env} {p['s4dm']:,} vs {p['dt']:,}, {100 * p['s4dm'] / p['dt']:.1f}% "
             f"({100 - 100 * p['s4dm'] / p['dt']:.0f}% fewer)"
             for env, p in sorted(by_env.items()) if "s4dm" in p and "dt" in p]
    if not parts:
        return ""
    return "S4DM's parameters against DT's, per environment: " + "; ".join(parts) + "."


def score_matrices(cells: Sequence[dict], target_index: int = 0) -> dict:
    """{model: scores [runs = seeds x episodes, tasks = datasets]} over the datasets every
    model finished (rliable's layout)."""
    finished = [c for c in cells if c.get("status") == "finished"]
    tasks = sorted({(c["env"], c["dataset"]) for c in finished})
    models = [m for m in MODEL_ORDER if any(c["model"] == m for c in finished)]
    by_key = {(c["env"], c["dataset"], c["model"]): c for c in finished}
    tasks = [t for t in tasks if all((*t, m) in by_key for m in models)]
    out = {}
    for m in models:
        cols = [episode_scores(by_key[(*t, m)], target_index).reshape(-1) for t in tasks]
        if cols:
            n = min(len(c) for c in cols)
            out[m] = np.stack([c[:n] for c in cols], axis=1)
    return {"tasks": tasks, "scores": out}


TARGET_NAMES = ("first (published) target return", "second target return")


def num_targets(cells: Sequence[dict]) -> int:
    """How many target returns every finished cell was evaluated at (0 without cells)."""
    counts = [len(c["results"]["eval"]) for c in cells if c.get("status") == "finished"]
    return min(counts, default=0)


def aggregate_table(cells: Sequence[dict], reps: int = 2000,
                    target_index: int = 0) -> tuple[str, dict]:
    """Aggregate IQM (95% CI) across datasets per model and P(S4DM > baseline), at the
    protocol's target_index-th target return of every dataset."""
    mats = score_matrices(cells, target_index)
    scores = mats["scores"]
    if not scores:
        return "(no finished datasets common to all models)", {}
    point, ci = _iqm_ci(scores, reps)
    when = (TARGET_NAMES[target_index] if target_index < len(TARGET_NAMES)
            else f"target return {target_index + 1}")
    lines = [f"Aggregate over {len(mats['tasks'])} datasets "
             f"({', '.join(f'{e}-{d}' for e, d in mats['tasks'])}), {when}:", "",
             "| model | IQM [95% CI] |", "|---|---|"]
    for m in scores:
        lines.append(f"| {MODEL_NAMES[m]} | {point[m][0]:.1f} [{ci[m][0, 0]:.1f}, "
                     f"{ci[m][1, 0]:.1f}] |")
    poi = {}
    if "s4dm" in scores:
        pairs = {f"s4dm,{m}": (scores["s4dm"], scores[m]) for m in scores if m != "s4dm"}
        if pairs:
            poi_point, poi_ci = _interval_estimates(
                pairs, metrics.probability_of_improvement, reps)
            lines += ["", "| P(S4DM > baseline) | estimate [95% CI] |", "|---|---|"]
            for pair, value in poi_point.items():
                base = pair.split(",")[1]
                lo, hi = (float(v) for v in np.ravel(poi_ci[pair]))
                lines.append(f"| vs {MODEL_NAMES[base]} | {float(np.ravel(value)[0]):.2f} "
                             f"[{lo:.2f}, {hi:.2f}] |")
                poi[pair] = (float(np.ravel(value)[0]), [lo, hi])
    return "\n".join(lines), {"point": point, "ci": ci, "poi": poi, "tasks": mats["tasks"]}


def plot_aggregate(agg: dict, path: str) -> None:
    """rliable's interval-estimate plot (IQM) and probability-of-improvement plot."""
    if not agg:
        return
    models = list(agg["point"])
    fig, axes = plot_utils.plot_interval_estimates(
        {MODEL_NAMES[m]: agg["point"][m] for m in models},
        {MODEL_NAMES[m]: agg["ci"][m] for m in models}, metric_names=["IQM"],
        algorithms=[MODEL_NAMES[m] for m in models], xlabel="normalised score",
        colors={MODEL_NAMES[m]: MODEL_COLOURS[m] for m in models},
        row_height=0.6, xlabel_y_coordinate=-0.35 - 0.05 * len(models))
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    if agg["poi"]:
        point = {f"S4DM,{MODEL_NAMES[k.split(',')[1]]}": v[0] for k, v in agg["poi"].items()}
        interval = {f"S4DM,{MODEL_NAMES[k.split(',')[1]]}": np.asarray(v[1])
                    for k, v in agg["poi"].items()}
        ax = plot_utils.plot_probability_of_improvement(point, interval)
        ax.figure.savefig(path.replace(".png", "_poi.png"), dpi=120, bbox_inches="tight")
        plt.close(ax.figure)


def plot_curves(cells: Sequence[dict], path: str) -> None:
    """Training loss (mean over seeds) per dataset, one line per model."""
    finished = [c for c in cells if c.get("status") == "finished" and c.get("train_curve")]
    tasks = sorted({(c["env"], c["dataset"]) for c in finished})
    if not tasks:
        return
    cols = min(3, len(tasks))
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        for c in finished:
            if (c["env"], c["dataset"]) == task:
                steps = [r["step"] for r in c["train_curve"]]
                loss = [float(np.mean(r["loss"])) for r in c["train_curve"]]
                ax.plot(steps, loss, label=MODEL_NAMES.get(c["model"], c["model"]),
                        color=MODEL_COLOURS.get(c["model"]))
        ax.set(title=f"{task[0]}-{task[1]}", xlabel="gradient step", ylabel="train loss",
               yscale="log")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_score_vs_params(rows: Sequence[dict], path: str) -> None:
    """IQM normalised score at the first target against parameter count: one colour and
    marker per model, each point labelled with its dataset (e.g. hc-mr)."""
    seen, fig = set(), plt.figure(figsize=(5.5, 3.8))
    for r in rows:
        if "missing" in r or (r["env"], r["dataset"], r["model"]) in seen:
            continue
        seen.add((r["env"], r["dataset"], r["model"]))
        plt.scatter(r["params"], r["iqm"], color=MODEL_COLOURS[r["model"]],
                    marker="osD^"[MODEL_ORDER.index(r["model"])], label=MODEL_NAMES[r["model"]])
        plt.annotate(dataset_label(r["env"], r["dataset"]), (r["params"], r["iqm"]),
                     xytext=(4, 2), textcoords="offset points", fontsize=6)
    handles, labels = plt.gca().get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    plt.legend(unique.values(), unique.keys(), fontsize=8)
    plt.xscale("log")
    plt.xlabel("trainable parameters")
    plt.ylabel("IQM normalised score (first target)")
    plt.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def dataset_label(env: str, dataset: str) -> str:
    """A short name for a figure: halfcheetah medium-replay -> 'hc-mr', hopper medium -> 'ho-m'."""
    short_env = {"halfcheetah": "hc", "hopper": "ho", "walker2d": "w2d"}.get(env, env)
    short_data = "".join(part[0] for part in dataset.split("-"))
    return f"{short_env}-{short_data}"


def latency_section(bench: dict, path: str) -> str:
    """Per-step inference latency against episode length, from experiments/
    benchmark_inference.py's JSON (rows: model, length, batch, us_per_step): a markdown table
    (batch 1) and a log-log figure at `path`, one panel per batch size."""
    rows = bench.get("rows", [])
    if not rows:
        return ""
    lengths = sorted({r["length"] for r in rows})
    batches = sorted({r["batch"] for r in rows})
    models = [m for m in MODEL_ORDER if any(r["model"] == m for r in rows)]
    us = {(r["model"], r["length"], r["batch"]): r["us_per_step"] for r in rows}
    fig, axes = plt.subplots(1, len(batches), figsize=(4.5 * len(batches), 3.5), squeeze=False)
    for ax, b in zip(axes[0], batches, strict=True):
        for m in models:
            xs = [n for n in lengths if (m, n, b) in us]
            ax.plot(xs, [us[(m, n, b)] / 1000 for n in xs], marker="o", label=MODEL_NAMES[m],
                    color=MODEL_COLOURS[m])
        ax.set(xscale="log", yscale="log", xlabel="episode step t (DT: context K = t)",
               ylabel="ms per environment step", title=f"batch {b}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    b = batches[0]
    lines = [f"Per-step inference latency (ms, batch {b}; "
             f"`experiments/benchmark_inference.py`, {bench.get('meta', {}).get('device', '?')}; "
             "DT re-runs a window of K = t steps, S4DM and Decision Mamba carry a recurrent "
             "state):", "",
             "| model | " + " | ".join(f"t = {n}" for n in lengths) + " |",
             "|---|" + "---|" * len(lengths)]
    for m in models:
        cells = [f"{us[(m, n, b)] / 1000:.3g}" if (m, n, b) in us else "-" for n in lengths]
        lines.append(f"| {MODEL_NAMES[m]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _targets_label(row: dict) -> str:
    name = MODEL_NAMES.get(row["model"], row["model"])
    return f"{name} ({row['variant']})" if row["variant"] else name


def targets_table(cells: Sequence[dict]) -> tuple[str, list[dict]]:
    """Return conditioning (`targets` ablation cells): achieved return per target, mean and std
    over seeds (each seed's mean over its episodes), one row per (dataset, model, variant,
    target); variant None is the grid cell."""
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
                         "trained_steps": c["trained_steps"]})
    if not rows:
        return "(no return-conditioning evaluation has finished)", rows
    lines = ["| dataset | model | target return | achieved mean +- std (seeds) | normalised |",
             "|---|---|---|---|---|"]
    for r in rows:
        norm = "-" if r["normalized"] is None else f"{r['normalized']:.1f}"
        lines.append(f"| {r['env']}-{r['dataset']} | {_targets_label(r)} "
                     f"| {r['target']:g} | {r['mean']:.0f} +- {r['std']:.0f} | {norm} |")
    return "\n".join(lines), rows


def plot_targets(rows: Sequence[dict], path: str) -> None:
    """Achieved vs target return per dataset (DT paper, Figure 4): mean over seeds with a +-std
    band (grid cells solid, ablation variants in their model's colour with their own dashes and
    markers), the diagonal y = x for reference."""
    tasks = sorted({(r["env"], r["dataset"]) for r in rows})
    if not tasks:
        return
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.5), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=True):
        mine = [r for r in rows if (r["env"], r["dataset"]) == task]
        series = sorted({(MODEL_ORDER.index(r["model"]), r["variant"] or "", r["model"])
                         for r in mine})
        variants_drawn = collections.Counter()  # model -> its variants drawn so far
        for _, variant, m in series:
            pts = sorted((r["target"], r["mean"], r["std"]) for r in mine
                         if r["model"] == m and (r["variant"] or "") == variant)
            x, y, sd = (np.array(v) for v in zip(*pts, strict=True))
            label = _targets_label({"model": m, "variant": variant})
            # the grid cell solid; a model's variants in its colour, each its own dash and marker
            if variant:
                variants_drawn[m] += 1
            k = variants_drawn[m] if variant else 0
            ax.plot(x, y, marker="osD^v"[k % 5], label=label, color=MODEL_COLOURS[m],
                    linestyle=["-", "--", "-.", ":"][min(k, 3)])
            ax.fill_between(x, y - sd, y + sd, alpha=0.15, color=MODEL_COLOURS[m])
        lim = max(r["target"] for r in mine)
        ax.plot([0, lim], [0, lim], color="grey", lw=0.8, label="achieved = target")
        ax.set(title=f"{task[0]}-{task[1]}", xlabel="target return", ylabel="achieved return")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _same_data(cell: dict, base: dict) -> str:
    """Whether two cells trained on the same dataset realisation, by the generator's record
    (grid.data_changes): "yes", "no (...)" or "unknown" (no record)."""
    changes = grid.data_changes(cell.get("dataset_provenance", {}),
                                base.get("dataset_provenance", {}))
    if changes is None:
        return "unknown"
    return f"no ({'; '.join(changes)})" if changes else "yes"


def variants_table(cells: Sequence[dict], grid_cells: Sequence[dict],
                   reps: int = 2000) -> tuple[str, list[dict]]:
    """Trained ablation variants (context, delayed, kernel, tuned) beside the grid cell of the
    same model and dataset, one row per target return: IQM [95% CI] of the normalised scores
    of each, and the difference of the means over seeds x episodes."""
    grid_by_key = {(c["env"], c["dataset"], c["model"]): c for c in grid_cells
                   if c.get("status") == "finished"}

    def stats(cell, t):
        scores = episode_scores(cell, t)
        return (float(scores.mean()), *_episode_iqm(scores, reps), scores.shape[0])

    grid_stats = {}  # (env, dataset, model, target index) -> stats, bootstrapped once
    rows = []
    for c in cells:
        if c.get("status") != "finished" or "results" not in c:
            continue
        key = (c["env"], c["dataset"], c["model"])
        base = grid_by_key.get(key)
        base_evals = base["results"]["eval"] if base is not None else []
        same_data = _same_data(c, base) if base is not None else None
        for t, entry in enumerate(c["results"]["eval"]):
            mean, iqm, ci, seeds = stats(c, t)
            row = {"env": c["env"], "dataset": c["dataset"], "model": c["model"],
                   "variant": c.get("name", c["model"]), "overrides": c.get("overrides", {}),
                   "target": entry["target_return"], "mean": mean, "iqm": iqm, "ci": ci,
                   "seeds": seeds}
            if t < len(base_evals) and base_evals[t]["target_return"] == entry["target_return"]:
                if key + (t,) not in grid_stats:
                    grid_stats[key + (t,)] = stats(base, t)[:3]
                row.update(zip(("grid_mean", "grid_iqm", "grid_ci"), grid_stats[key + (t,)],
                               strict=True))
                row["data"] = same_data
            rows.append(row)
    if not rows:
        return "(no trained ablation variant has finished)", rows
    lines = ["| dataset | variant | overrides | target | IQM [95% CI] | grid cell IQM [95% CI] | "
             "mean - grid mean | data as the grid cell's |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        over = ", ".join(f"{k}={v}" for k, v in r["overrides"].items()) or "-"
        grid_txt, diff = "-", "-"
        if "grid_iqm" in r:
            grid_txt = f"{r['grid_iqm']:.1f} [{r['grid_ci'][0]:.1f}, {r['grid_ci'][1]:.1f}]"
            diff = f"{r['mean'] - r['grid_mean']:+.1f}"
        lines.append(f"| {r['env']}-{r['dataset']} | {r['variant']} | {over} | "
                     f"{r['target']:g} | {r['iqm']:.1f} [{r['ci'][0]:.1f}, {r['ci'][1]:.1f}] | "
                     f"{grid_txt} | {diff} | {r.get('data', '-')} |")
    return "\n".join(lines), rows


def training_eval_table(cells: Sequence[dict], reps: int = 2000) -> tuple[str, list[dict]]:
    """Score during training: trained cells evaluated on the way (config.eval.every; their
    train_curve's "eval" entries) and at the end, one row per (cell, step, target): IQM [95%
    CI] of the normalised scores over seeds x episodes, and the mean."""
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
                scores = normalised(np.asarray(per_seed, np.float64), res["dataset"])
                iqm, ci = _episode_iqm(scores, reps)
                rows.append({"env": c["env"], "dataset": c["dataset"], "model": c["model"],
                             "variant": c.get("name", c["model"]), "step": int(step),
                             "target": float(target), "mean": float(scores.mean()),
                             "iqm": iqm, "ci": ci, "seeds": scores.shape[0]})
    if not rows:
        return "(no trained cell was evaluated during training)", rows
    lines = ["| dataset | variant | target | gradient step | IQM [95% CI] | mean |",
             "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["env"], r["dataset"], MODEL_ORDER.index(r["model"]),
                                         r["variant"], -r["target"], r["step"])):
        lines.append(f"| {r['env']}-{r['dataset']} | {r['variant']} | {r['target']:g} | "
                     f"{r['step']} | {r['iqm']:.1f} [{r['ci'][0]:.1f}, {r['ci'][1]:.1f}] | "
                     f"{r['mean']:.1f} |")
    return "\n".join(lines), rows


def plot_training_eval(rows: Sequence[dict], path: str) -> None:
    """Normalised score (IQM, 95% CI band) against gradient step, one panel per dataset and
    target return, one line per trained cell in its model's colour."""
    panels = sorted({(r["env"], r["dataset"], -r["target"]) for r in rows})
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False)
    for ax, (env, dataset, neg_target) in zip(axes.flat, panels, strict=True):
        mine = [r for r in rows if (r["env"], r["dataset"], -r["target"]) == (env, dataset,
                                                                             neg_target)]
        for variant in sorted({r["variant"] for r in mine}):
            pts = sorted((r["step"], r["iqm"], *r["ci"], r["model"]) for r in mine
                         if r["variant"] == variant)
            step, iqm, lo, hi = (np.array(v, np.float64) for v in list(zip(*pts,
                                                                           strict=True))[:4])
            colour = MODEL_COLOURS.get(pts[0][4])
            ax.plot(step, iqm, marker="o", color=colour, label=variant)
            ax.fill_between(step, lo, hi, alpha=0.15, color=colour)
        ax.set(title=f"{env}-{dataset}, target {-neg_target:g}", xlabel="gradient step",
               ylabel="normalised score (IQM)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_ablations_report(results_root: str, out_dir: str, protocol: str = "quick",
                           reps: int = 2000) -> str:
    """Write <out_dir>/report.md (variants beside their grid cells, return conditioning, score
    during training), targets.png and training_eval.png; returns the markdown."""
    cells = load_cells(results_root, "ablations", protocol)
    grid_cells = load_cells(results_root, "benchmark", protocol)
    os.makedirs(out_dir, exist_ok=True)
    variants, _ = variants_table(cells, grid_cells, reps)
    targets, rows = targets_table(cells)
    plot_targets(rows, os.path.join(out_dir, "targets.png"))
    during, during_rows = training_eval_table(cells, reps)
    plot_training_eval(during_rows, os.path.join(out_dir, "training_eval.png"))
    text = "\n\n".join([
        f"# ablations / {protocol}",
        "Trained variants beside the grid cell of the same model and dataset (normalised "
        "scores at each target return; IQM over seeds x episodes, 95% stratified-bootstrap "
        "CIs):", variants,
        "Return conditioning (evaluation of trained cells at a range of target returns: the "
        "grid cells, and ablation variants named in brackets; targets.png):", targets,
        "Score during training (cells evaluated on the way, config.eval.every, e.g. the budget "
        "ablation; normalised, IQM over seeds x episodes with 95% CIs; training_eval.png):",
        during])
    with open(os.path.join(out_dir, "report.md"), "w") as fh:
        fh.write(text + "\n")
    return text


def write_report(results_root: str, out_dir: str, study: str = "benchmark",
                 protocol: str = "quick", reps: int = 2000) -> str:
    """Write <out_dir>/report.md, aggregate.png, aggregate_poi.png (and aggregate_target<k>.png
    for the protocol's other target returns), curves.png, score_vs_params.png, latency.png
    (when <results_root>/benchmarks/benchmark_inference.json exists; study "ablations": see
    write_ablations_report); returns the markdown."""
    if study == "ablations":
        return write_ablations_report(results_root, out_dir, protocol, reps)
    cells = load_cells(results_root, study, protocol)
    os.makedirs(out_dir, exist_ok=True)
    unrun = unrun_cells(cells) if study == "benchmark" else []
    table, rows = cell_table(cells + unrun, reps)
    commands = sorted({c["command"] for c in unrun if c["command"]})
    if commands:
        table += ("\n\nDatasets not in this machine's Minari store, and the commands that make "
                  "them:\n\n```bash\n" + "\n".join(commands) + "\n```")
    # every target the protocol fixed in advance, so that no model's best target is picked
    aggregates = []
    for t in range(max(num_targets(cells), 1)):
        agg_text, agg = aggregate_table(cells, reps, t)
        plot_aggregate(agg, os.path.join(out_dir, "aggregate.png" if t == 0
                                         else f"aggregate_target{t + 1}.png"))
        aggregates.append(agg_text)
    plot_curves(cells, os.path.join(out_dir, "curves.png"))
    plot_score_vs_params(rows, os.path.join(out_dir, "score_vs_params.png"))
    share = parameter_share(rows)
    latency = ""
    bench_path = os.path.join(results_root, "benchmarks", "benchmark_inference.json")
    if study == "benchmark" and os.path.exists(bench_path):
        with open(bench_path) as fh:
            latency = latency_section(json.load(fh), os.path.join(out_dir, "latency.png"))
    text = "\n\n".join(part for part in [
        f"# {study} / {protocol}", share, table, dataset_table(cells), *aggregates,
        f"Published scores are from the D4RL v2 datasets with other code ({PUBLISHED_SOURCES}); "
        "ours use the datasets this package generates (see dataset_provenance in each cell's "
        "JSON), so the two columns are not comparable number for number.", latency] if part)
    with open(os.path.join(out_dir, "report.md"), "w") as fh:
        fh.write(text + "\n")
    return text
