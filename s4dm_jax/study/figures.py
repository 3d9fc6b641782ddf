"""Figures of a study (matplotlib): aggregate intervals, probability of improvement, training
curves, score against parameters, inference latency, return conditioning, score during
training. One colour per model in every figure."""

from __future__ import annotations

import collections
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from s4dm_jax.study.ablation_tables import targets_label
from s4dm_jax.study.tables import MODEL_NAMES, MODEL_ORDER

# One colour per model in every figure (matplotlib's default cycle, in MODEL_ORDER).
MODEL_COLOURS = {m: f"C{i}" for i, m in enumerate(MODEL_ORDER)}


def _interval_plot(labels, points, intervals, colours, xlabel: str, path: str) -> None:
    """One horizontal bar per label: its 95% interval, the point estimate marked."""
    fig, ax = plt.subplots(figsize=(5.5, 0.5 + 0.45 * len(labels)))
    for i, (point, (lo, hi), colour) in enumerate(zip(points, intervals, colours, strict=True)):
        ax.barh(i, hi - lo, left=lo, height=0.6, color=colour, alpha=0.75)
        ax.vlines(point, i - 0.3, i + 0.3, color="k", lw=1.5)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_aggregate(agg: dict, path: str) -> None:
    """The aggregate IQM per model with its 95% interval (seeds resampled) at `path`, and
    P(S4DM > baseline) with its interval at `<path>_poi.png`."""
    if not agg:
        return
    models = list(agg["iqm"])
    _interval_plot([MODEL_NAMES[m] for m in models], [agg["iqm"][m][0] for m in models],
                   [agg["iqm"][m][1] for m in models], [MODEL_COLOURS[m] for m in models],
                   "normalised score (IQM over seeds and datasets)", path)
    if agg["poi"]:
        pairs = list(agg["poi"])
        _interval_plot([f"P(S4DM > {MODEL_NAMES[k.split(',')[1]]})" for k in pairs],
                       [agg["poi"][k][0] for k in pairs], [agg["poi"][k][1] for k in pairs],
                       [MODEL_COLOURS[k.split(",")[1]] for k in pairs],
                       "probability of improvement", path.replace(".png", "_poi.png"))


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
            label = targets_label({"model": m, "variant": variant})
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
