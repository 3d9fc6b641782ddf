"""S4DM hyperparameter sweeps: shape-changing settings (state size, layers, width, token
layout) are separate jobs; settings that keep shapes (learning rates, weight decay) are trained
side by side with the seeds inside each job's one compiled program (config.sweep).

Each job is a cell `results/sweep/<protocol>/<env>-<dataset>/s4dm-<shape>.json` (run, skipped
and resumed like grid cells) whose trials carry their learning rate; `table` and
`plot_heatmaps` read them back.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from s4dm_jax.study import cells, grid

# The seed reports its best point at lr 6.1e-4, N = 256, 16 layers.
DEFAULT_AXES = {"learning_rate": (2e-4, 6.1e-4, 2e-3), "d_state": (64, 128, 256),
                "n_layers": (4, 8, 16), "d_model": (18,), "token_layout": ("step",)}


def shape_name(d_state: int, n_layers: int, d_model: int, token_layout: str) -> str:
    return f"s4dm-N{d_state}-L{n_layers}-H{d_model}-{token_layout}"


def jobs(axes: dict | None = None) -> list[tuple[str, dict]]:
    """(cell name, config overrides) per shape; each job vmaps axes["learning_rate"]."""
    axes = {**DEFAULT_AXES, **(axes or {})}
    out = []
    for n, layers, width, layout in itertools.product(
            axes["d_state"], axes["n_layers"], axes["d_model"], axes["token_layout"]):
        overrides = {"model.ssm.d_state": int(n), "model.n_layers": int(layers),
                     "model.d_model": int(width), "model.token_layout": layout,
                     "sweep.learning_rate": tuple(float(v) for v in axes["learning_rate"])}
        if layout == "interleaved":
            overrides["model.context_len"] = 1000  # whole episodes; kernel 3000 tokens long
        out.append((shape_name(n, layers, width, layout), overrides))
    return out


def run_job(name: str, overrides: dict, env: str, dataset: str, protocol: grid.Protocol, *,
            results_root="results", runs_root="runs", show_progress=True) -> dict:
    """One sweep job (an S4DM grid cell under study "sweep"), trained and evaluated from
    seed grid.SWEEP_SEED on, whatever the protocol: the grid's training and evaluation seeds
    are never used to select settings."""
    spec = grid.CellSpec("s4dm", env, dataset, protocol, "sweep",
                         {**overrides, "seed": grid.SWEEP_SEED}, name)
    return grid.run_cell(spec, results_root=results_root, runs_root=runs_root,
                         show_progress=show_progress)


def rows(results_root: str, protocol: str) -> list[dict]:
    """One row per trained trial: shape, learning rate, seed, params (and DT's, from its preset
    on the same env), score (normalised, at the protocol's first target return), the score at
    the second target where there is one, and `selection`, the mean over the targets: what the
    summary ranks by and the heat maps show."""
    out = []
    dt_params = functools.cache(lambda env, dataset: grid.preset_param_count("dt", env, dataset))
    for cell in cells.load_cells(results_root, "sweep", protocol):
        if cell.get("status") != "finished":
            continue
        cfg, res = cell["config"]["model"], cell["results"]
        per_target = [cells.episode_scores(cell, t) for t in range(len(res["eval"]))]
        for i, trial in enumerate(res["trials"]):
            out.append({"env": cell["env"], "dataset": cell["dataset"],
                        "d_state": cfg["ssm"]["d_state"], "n_layers": cfg["n_layers"],
                        "d_model": cfg["d_model"], "token_layout": cfg["token_layout"],
                        "learning_rate": trial["learning_rate"], "seed": trial["seed"],
                        "params": res["num_params"],
                        "dt_params": dt_params(cell["env"], cell["dataset"]),
                        "score": float(per_target[0][i].mean()),
                        "score_target2": (float(per_target[1][i].mean())
                                          if len(per_target) > 1 else None),
                        "selection": float(np.mean([s[i].mean() for s in per_target])),
                        "final_loss": float(res["final_train_loss_per_seed"][i])})
    return out


def _share(r: dict) -> str:
    return f"{100 * r['params'] / r['dt_params']:.1f}"


def table(sweep_rows: Sequence[dict]) -> str:
    """Markdown: every trial, best first (by `selection`), with its share of DT's
    parameters."""
    head = ("| data | N | layers | width | layout | lr | seed | params | % of DT | score | "
            "score (2nd target) | mean of targets | final loss |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in sorted(sweep_rows, key=lambda r: -r["selection"]):
        second = "-" if r["score_target2"] is None else f"{r['score_target2']:.1f}"
        lines.append(f"| {r['env']}-{r['dataset']} | {r['d_state']} | {r['n_layers']} | "
                     f"{r['d_model']} | {r['token_layout']} | {r['learning_rate']:g} | "
                     f"{r['seed']} | {r['params']:,} | {_share(r)} | {r['score']:.1f} | "
                     f"{second} | {r['selection']:.1f} | {r['final_loss']:.4f} |")
    return "\n".join(lines)


def summary(sweep_rows: Sequence[dict]) -> list[dict]:
    """One entry per (dataset, shape, learning rate): mean and std over its seeds (ddof 0) at
    each target and of `selection` (the mean over targets); best mean selection first."""
    groups: dict = {}
    for r in sweep_rows:
        key = (r["env"], r["dataset"], r["d_state"], r["n_layers"], r["d_model"],
               r["token_layout"], r["learning_rate"])
        groups.setdefault(key, []).append(r)
    out = []
    for key, members in groups.items():
        scores = np.array([m["score"] for m in members])
        second = [m["score_target2"] for m in members]
        selection = np.array([m["selection"] for m in members])
        entry = dict(zip(("env", "dataset", "d_state", "n_layers", "d_model", "token_layout",
                          "learning_rate"), key, strict=True))
        entry.update(params=members[0]["params"], dt_params=members[0]["dt_params"],
                     seeds=len(members), mean=float(scores.mean()), std=float(scores.std()),
                     mean_target2=None if None in second else float(np.mean(second)),
                     std_target2=None if None in second else float(np.std(second)),
                     selection=float(selection.mean()), selection_std=float(selection.std()),
                     final_loss=float(np.mean([m["final_loss"] for m in members])))
        out.append(entry)
    return sorted(out, key=lambda e: -e["selection"])


def summary_table(entries: Sequence[dict]) -> str:
    """Markdown of `summary`: mean +- std over seeds at each target and of their mean."""
    lines = ["| data | N | layers | width | layout | lr | params | % of DT | seeds | score | "
             "score (2nd target) | mean of targets | final loss |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        second = ("-" if e["mean_target2"] is None
                  else f"{e['mean_target2']:.1f} +- {e['std_target2']:.1f}")
        lines.append(f"| {e['env']}-{e['dataset']} | {e['d_state']} | {e['n_layers']} | "
                     f"{e['d_model']} | {e['token_layout']} | {e['learning_rate']:g} | "
                     f"{e['params']:,} | {_share(e)} | {e['seeds']} | {e['mean']:.1f} +- "
                     f"{e['std']:.1f} | {second} | {e['selection']:.1f} +- "
                     f"{e['selection_std']:.1f} | {e['final_loss']:.4f} |")
    return "\n".join(lines)


def _heatmap(ax, values: dict, xs, ys, xlabel: str, ylabel: str, title: str, vlim):
    grid_ = np.full((len(ys), len(xs)), np.nan)
    for (x, y), v in values.items():
        grid_[ys.index(y), xs.index(x)] = v
    im = ax.imshow(grid_, cmap="viridis", origin="lower", aspect="auto", vmin=vlim[0],
                   vmax=vlim[1])
    ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
    ax.set_yticks(range(len(ys)), [str(y) for y in ys])
    for (i, j), v in np.ndenumerate(grid_):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", color="w", fontsize=8)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    plt.colorbar(im, ax=ax, label="normalised score, mean of targets")


def plot_heatmaps(sweep_rows: Sequence[dict], path: str) -> None:
    """Mean over seeds of `selection` (the score averaged over the protocol's targets): lr x
    state size (one panel per layer count) and layers x width (best lr and N), all panels on
    one colour scale."""
    if not sweep_rows:
        return
    lrs = sorted({r["learning_rate"] for r in sweep_rows})
    ns = sorted({r["d_state"] for r in sweep_rows})
    layers = sorted({r["n_layers"] for r in sweep_rows})
    widths = sorted({r["d_model"] for r in sweep_rows})

    def mean_over_seeds(key_fn):
        groups: dict = {}
        for r in sweep_rows:
            key = key_fn(r)
            if key is not None:
                groups.setdefault(key, []).append(r["selection"])
        return {k: float(np.mean(v)) for k, v in groups.items()}

    means = mean_over_seeds(
        lambda r: (r["learning_rate"], r["d_state"], r["n_layers"], r["d_model"]))
    vlim = (min(means.values()), max(means.values()))
    fig, axes = plt.subplots(1, len(layers) + 1, figsize=(4.2 * (len(layers) + 1), 3.4),
                             squeeze=False)
    for ax, n_layers in zip(axes[0], layers, strict=False):
        values = mean_over_seeds(lambda r, nl=n_layers: (r["learning_rate"], r["d_state"])
                                 if r["n_layers"] == nl else None)
        _heatmap(ax, values, lrs, ns, "learning rate", "state size N", f"{n_layers} layers",
                 vlim)
    best: dict = {}
    for (_, _, nl, w), v in means.items():
        best[(w, nl)] = max(best.get((w, nl), -np.inf), v)
    _heatmap(axes[0][-1], best, widths, layers, "width H", "layers", "best over lr and N", vlim)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results_root: str, out_dir: str, protocol: str = "sweep") -> str:
    """<out_dir>/sweep.md (mean +- std over seeds per shape and learning rate, then every
    trial) and sweep_heatmaps.png; returns the markdown."""
    os.makedirs(out_dir, exist_ok=True)
    sweep_rows = rows(results_root, protocol)
    plot_heatmaps(sweep_rows, os.path.join(out_dir, "sweep_heatmaps.png"))
    text = (f"# S4DM sweep ({protocol})\n\nScore: normalised return, mean over evaluation "
            "episodes, at the protocol's first target return, at its second, and the mean of "
            "the two (the ranking and the heat maps); mean +- std over seeds.\n\n"
            + summary_table(summary(sweep_rows)) + "\n\n## Every trial\n\n"
            + table(sweep_rows) + "\n")
    with open(os.path.join(out_dir, "sweep.md"), "w") as fh:
        fh.write(text)
    return text
