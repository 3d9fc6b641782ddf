"""Markdown tables of a study from validated cells (study.cells), with seed-level intervals
(study.stats): a run is a seed, its score the mean over its evaluation episodes.

Scores are D4RL-normalised returns, 100 (R - ref_min) / (ref_max - ref_min). Published D4RL
numbers (other data: the D4RL v2 datasets, other code) are shown beside ours, labelled.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from s4dm_jax.study import cells as cells_
from s4dm_jax.study import grid, stats

# Published normalised scores on the D4RL v2 datasets: other data, other code; shown for
# orientation only. BC: CORL (Tarasov et al. 2022, "CORL: Research-oriented Deep Offline RL
# Library", BC table; tinkoff-ai/CORL). DT: Chen et al. 2021, "Decision Transformer", Table 2.
# Decision Mamba: Ota 2024, "Decision Mamba: Reinforcement Learning via Sequence Modeling with
# Selective State Spaces" (arXiv 2403.19925), Table 1. S4DM's column: Decision S4 (DS4,
# Bar-David et al. 2023, "Decision S4", ICLR), the D4RL table of its paper.
PUBLISHED = {
    ("halfcheetah", "medium"): {"bc": 42.4, "dt": 42.6, "mamba": 42.8, "ds4": 42.5},
    ("hopper", "medium"): {"bc": 53.5, "dt": 67.6, "mamba": 83.5, "ds4": 54.2},
    ("walker2d", "medium"): {"bc": 63.2, "dt": 74.0, "mamba": 78.2, "ds4": 78.0},
    ("halfcheetah", "medium-replay"): {"bc": 35.7, "dt": 36.6, "mamba": 39.6, "ds4": 15.2},
    ("hopper", "medium-replay"): {"bc": 29.8, "dt": 82.7, "mamba": 82.6, "ds4": 49.6},
    ("walker2d", "medium-replay"): {"bc": 21.8, "dt": 66.6, "mamba": 70.9, "ds4": 69.0},
}
PUBLISHED_SOURCES = ("BC: CORL (Tarasov et al. 2022); DT: Chen et al. 2021, Table 2; Decision "
                     "Mamba: Ota 2024, Table 1; Decision S4 (Bar-David et al. 2023) in S4DM's "
                     "column")
MODEL_ORDER = ("s4dm", "dt", "mamba", "bc")
MODEL_NAMES = {"s4dm": "S4DM", "dt": "DT", "mamba": "DMamba", "bc": "BC"}
TARGET_NAMES = ("first (published) target return", "second target return")


def model_name(model: str) -> str:
    return MODEL_NAMES.get(model, model)


def _ci(iqm: float, ci) -> str:
    return f"{iqm:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]"


def cell_interval(cell: dict, target_index: int, reps: int, metric: str = "iqm"):
    """(point, (lo, hi)) of one cell at one target: seeds resampled (each seed's mean over its
    episodes), from the generator of the cell's own key."""
    scores = cells_.episode_scores(cell, target_index)
    target = cell["results"]["eval"][target_index]["target_return"]
    key = (f"cell/{cell.get('study')}/{cells_._protocol_name(cell)}/{cell['env']}-"
           f"{cell['dataset']}/{cells_.cell_name(cell)}/target{target:g}/{metric}")
    return stats.interval(scores[None], metric, key, reps)


def unrun_cells(have: Sequence[dict], envs: Sequence[str] = grid.ENVS,
                datasets: Sequence[str] = grid.DATASETS,
                models: Sequence[str] = grid.MODELS) -> list[dict]:
    """A "missing" entry for every grid cell that has no result file yet, saying why: its
    dataset is not in this machine's Minari store ("command": the generator command that makes
    it), or it has not been run yet."""
    done = {(c["env"], c["dataset"], c["model"]) for c in have}
    out = []
    for env, dataset, model in grid.grid_cells(envs, datasets, models):
        if (env, dataset, model) in done:
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


def _not_run(reason: str) -> str:
    return reason if reason.startswith("not run") else f"not run: {reason}".rstrip(": ")


def _best_text(cell: dict, t: int) -> str:
    best = cells_.best_during_training(cell, t)
    return "last only" if best is None else f"{best[0]:.1f} (step {best[1]})"


def cell_rows(cells: Sequence[dict], protocol: str, reps: int) -> list[dict]:
    """One row per (cell, target) of finished cells, one per missing cell."""
    rows = []
    for cell in cells:
        key = {"env": cell["env"], "dataset": cell["dataset"], "model": cell["model"]}
        if cell.get("status") != "finished":
            rows.append({**key, "missing": _not_run(cell.get("reason", ""))})
            continue
        res = cell["results"]
        for t, entry in enumerate(res["eval"]):
            scores = cells_.episode_scores(cell, t)  # [seeds, episodes]
            iqm, ci = cell_interval(cell, t, reps)
            rows.append({
                **key, "target": entry["target_return"], "params": res["num_params"],
                "seeds": scores.shape[0], "episodes": scores.shape[1],
                "mean": float(scores.mean(axis=1).mean()),
                "std": float(scores.mean(axis=1).std()), "iqm": iqm, "ci": ci,
                "best": _best_text(cell, t), "collapsed": cells_.collapsed_seeds(cell, t),
                "transitions": cells_.transitions_per_step(cell),
                "tuned_on": grid.tuned_on(protocol, cell["model"])[0],
                "train_s": res["wall_times"]["train_s"],
                "published": PUBLISHED.get((cell["env"], cell["dataset"]), {}).get(
                    "ds4" if cell["model"] == "s4dm" else cell["model"])})
    return rows


CELL_HEAD = ("| dataset | model | target | params | seeds x episodes | transitions / step | "
             "score mean +- std (seeds) | IQM [95% CI, seeds resampled] | last / best during "
             "training | collapsed seeds | tuned on | train s | published (other data) |")


def cell_table(cells: Sequence[dict], protocol: str, reps: int = 2000) -> tuple[str, list]:
    """Markdown table of every (dataset, model) cell and the rows behind it."""
    rows = cell_rows(cells, protocol, reps)
    lines = [CELL_HEAD, "|" + "---|" * CELL_HEAD.count(" | ") + "---|"]
    for r in rows:
        name, model = f"{r['env']}-{r['dataset']}", model_name(r["model"])
        if "missing" in r:
            lines.append(f"| {name} | {model} | - | - | - | - | {r['missing'][:200]} | - | - "
                         "| - | - | - | - |")
            continue
        pub = "-" if r["published"] is None else f"{r['published']:.1f}"
        collapsed = ", ".join(str(s) for s in r["collapsed"]) or "-"
        lines.append(
            f"| {name} | {model} | {r['target']:g} | {r['params']:,} | {r['seeds']} x "
            f"{r['episodes']} | {r['transitions'][0]:,.0f} ({r['transitions'][1]}) | "
            f"{r['mean']:.1f} +- {r['std']:.1f} | {_ci(r['iqm'], r['ci'])} | {r['best']} | "
            f"{collapsed} | {r['tuned_on']} | {r['train_s']:.0f} | {pub} |")
    return "\n".join(lines), rows


def tuning_statement(protocol: str, models: Sequence[str] = MODEL_ORDER) -> str:
    """One line per model: what its settings under `protocol` were tuned on, and with what
    budget (the "tuned on" column in full)."""
    lines = [f"Tuning budget per model (`{protocol}`; the \"tuned on\" column):", ""]
    lines += [f"- {model_name(m)}: {grid.tuned_on(protocol, m)[1]}" for m in models]
    return "\n".join(lines)


def dataset_table(cells: Sequence[dict]) -> str:
    """Markdown table of the datasets behind the finished cells: size, the behaviour data's
    own mean return, raw and normalised with the same references as the scores, and the
    in-data target (the best episode return); "-" without a provenance record."""
    seen = {}
    for cell in cells:
        if cell.get("status") == "finished":
            seen.setdefault(f"{cell['env']}-{cell['dataset']}", cell)
    if not seen:
        return ""
    lines = ["| dataset | episodes | transitions | data return mean +- std | data normalised | "
             "in-data target (best episode return) |", "|---|---|---|---|---|---|"]
    for name in sorted(seen):
        cell = seen[name]
        ds = cell["results"]["dataset"]
        prov = cell.get("dataset_provenance") or {}
        mean, std = prov.get("dataset_return_mean"), prov.get("dataset_return_std")
        if mean is None:
            ret = norm = "-"
        else:
            ret = f"{mean:.1f} +- {std:.1f}" if std is not None else f"{mean:.1f}"
            norm = f"{cells_.normalised(mean, ds):.1f}"
        best = grid.in_data_target(prov)
        size = [f"{ds[k]:,}" if isinstance(ds.get(k), int) else "-"
                for k in ("episodes", "transitions")]
        lines.append(f"| {name} | {size[0]} | {size[1]} | {ret} | {norm} | "
                     f"{'-' if best is None else f'{best:g}'} |")
    mixed = cells_.mixed_data(cells)
    if mixed:
        lines += ["", "**Cells of one dataset trained on different realisations of it** (the "
                  "generator's record differs from the first cell's; no aggregate mixes them): "
                  + "; ".join(mixed) + "."]
    return "\n".join(lines)


def parameter_share(rows: Sequence[dict]) -> str:
    """One sentence: S4DM's parameters as a share of DT's, per environment; "" without both."""
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


def num_targets(cells: Sequence[dict]) -> int:
    """How many target returns every finished cell was evaluated at (0 without cells)."""
    counts = [len(c["results"]["eval"]) for c in cells if c.get("status") == "finished"]
    return min(counts, default=0)


def score_arrays(cells: Sequence[dict], target_index: int = 0) -> dict:
    """{"tasks": [(env, dataset)], "scores": {model: episode scores [tasks, seeds, episodes]},
    "refused": [why]} over the datasets every model finished. Raises ValueError for duplicate
    (env, dataset, model) cells or unequal seeds x episodes; a task whose models trained on
    different realisations of its data is refused (left out, and said)."""
    finished = [c for c in cells if c.get("status") == "finished"]
    by_key = {}
    for c in finished:
        key = (c["env"], c["dataset"], c["model"])
        if key in by_key:
            raise ValueError(f"duplicate cell {key} in one aggregate")
        by_key[key] = c
    models = [m for m in MODEL_ORDER if any(c["model"] == m for c in finished)]
    tasks, refused = [], []
    for task in sorted({(c["env"], c["dataset"]) for c in finished}):
        if not all((*task, m) in by_key for m in models):
            continue
        mixed = cells_.mixed_data([by_key[(*task, m)] for m in models])
        if mixed:
            refused.append(f"{task[0]}-{task[1]} (mixed data realisations: {'; '.join(mixed)})")
        else:
            tasks.append(task)
    out = {}
    for m in models:
        cols = [cells_.episode_scores(by_key[(*t, m)], target_index) for t in tasks]
        if cols:
            shapes = {c.shape for c in cols}
            if len(shapes) > 1:
                raise ValueError(f"{m}: unequal seeds x episodes across tasks {sorted(shapes)}")
            out[m] = np.stack(cols)
    shapes = {a.shape for a in out.values()}
    if len(shapes) > 1:
        raise ValueError(f"unequal seeds x episodes across models {sorted(shapes)}")
    return {"tasks": tasks, "scores": out, "refused": refused}


def aggregate_table(cells: Sequence[dict], protocol: str, reps: int = 2000,
                    target_index: int = 0) -> tuple[str, dict]:
    """Aggregate IQM [95% CI] per model across datasets, and P(S4DM > baseline) (per dataset
    over seeds, averaged), at the protocol's target_index-th target; seeds resampled within
    each dataset, one generator per (protocol, target, tasks, model, metric)."""
    arrays = score_arrays(cells, target_index)
    scores, tasks = arrays["scores"], arrays["tasks"]
    refused = ("\n\nRefused from the aggregate: " + "; ".join(arrays["refused"]) + "."
               if arrays["refused"] else "")
    if not scores:
        return "(no finished datasets common to all models)" + refused, {}
    task_txt = ", ".join(f"{e}-{d}" for e, d in tasks)
    when = (TARGET_NAMES[target_index] if target_index < len(TARGET_NAMES)
            else f"target return {target_index + 1}")
    base = f"aggregate/{protocol}/target{target_index}/{task_txt}"
    agg = {"tasks": tasks, "iqm": {}, "poi": {}}
    lines = [f"Aggregate over {len(tasks)} datasets ({task_txt}), {when}; runs are seeds "
             f"({next(iter(scores.values())).shape[1]} per dataset and model):", "",
             "| model | IQM [95% CI] | mean [95% CI] | optimality gap [95% CI] |",
             "|---|---|---|---|"]
    for m, x in scores.items():
        parts = {metric: stats.interval(x, metric, f"{base}/{m}/{metric}", reps)
                 for metric in ("iqm", "mean", "optimality_gap")}
        agg["iqm"][m] = parts["iqm"]
        lines.append(f"| {model_name(m)} | " + " | ".join(_ci(*parts[k]) for k in parts)
                     + " |")
    if "s4dm" in scores and len(scores) > 1:
        lines += ["", "| P(S4DM > baseline), per dataset over seeds, averaged | estimate "
                  "[95% CI] |", "|---|---|"]
        for m in scores:
            if m != "s4dm":
                p, (lo, hi) = stats.improvement_interval(scores["s4dm"], scores[m],
                                                         f"{base}/s4dm>{m}/poi", reps)
                agg["poi"][f"s4dm,{m}"] = (p, [lo, hi])
                lines.append(f"| vs {model_name(m)} | {p:.2f} [{lo:.2f}, {hi:.2f}] |")
    return "\n".join(lines) + refused, agg


def in_data_scores(grid_cells: Sequence[dict], targets: Sequence[dict],
                   tolerance: float = 0.3) -> dict:
    """{(env, dataset, model): (in-data target, nearest evaluated target, mean normalised
    score there, where)} for every finished grid cell: the in-data target is the dataset's
    best episode return; a target within `tolerance` of it, in the cell itself or a `targets`
    file of the same model, counts as evaluated there; else the last three are None."""
    evaluated = {}
    for t in targets:
        if t.get("variant") is None:
            evaluated[(t["env"], t["dataset"], t["model"])] = (t["targets"], t["normalized_mean"],
                                                               "targets file")
    out = {}
    for cell in grid_cells:
        if cell.get("status") != "finished":
            continue
        key = (cell["env"], cell["dataset"], cell["model"])
        best = grid.in_data_target(cell.get("dataset_provenance") or {})
        own = [e["target_return"] for e in cell["results"]["eval"]]
        own_norm = [float(cells_.episode_scores(cell, i).mean()) for i in range(len(own))]
        near = [] if best is None else [
            (abs(t - best), t, s, src)
            for ts, ss, src in [(own, own_norm, "the cell"), evaluated.get(key, ([], [], ""))]
            for t, s in zip(ts, ss, strict=True) if abs(t - best) <= tolerance * best]
        out[key] = (best, *min(near)[1:]) if near else (best, None, None, None)
    return out


def in_data_table(scores: dict) -> str:
    """Markdown of in_data_scores: the in-data target beside the published ones, "not run"
    where no evaluation came near it."""
    lines = ["| dataset | model | in-data target | nearest evaluated target | achieved "
             "normalised (mean over seeds) | from |", "|---|---|---|---|---|---|"]
    for (env, dataset, model), (best, target, score, src) in scores.items():
        found = "- | not run | -" if target is None else f"{target:g} | {score:.1f} | {src}"
        lines.append(f"| {env}-{dataset} | {model_name(model)} | "
                     f"{'-' if best is None else f'{best:g}'} | {found} |")
    return "\n".join(lines)


def in_data_labels(scores: dict) -> dict:
    """{key: "30.8 at 5500" | "not run"} for summary_table."""
    return {k: "not run" if v[1] is None else f"{v[2]:.1f} at {v[1]:g}"
            for k, v in scores.items()}


def summary_table(rows: Sequence[dict], in_data: dict) -> str:
    """Compact markdown (BENCHMARKS' layout): one line per (dataset, target), one column per
    model, IQM [95% CI, seeds resampled] with "(best B)" where a best during training exists
    and "!k" for k collapsed seeds; then the in-data target's line per dataset ({(env,
    dataset, model): text} from in_data_scores); then per model its transitions per step and
    what it was tuned on. `rows` are cell_rows'."""
    done = [r for r in rows if "missing" not in r]
    models = [m for m in MODEL_ORDER if any(r["model"] == m for r in done)]
    by = {(r["env"], r["dataset"], r["target"], r["model"]): r for r in done}
    lines = ["| dataset | target | " + " | ".join(model_name(m) for m in models) + " |",
             "|---|---|" + "---|" * len(models)]
    tasks = sorted({(r["env"], r["dataset"]) for r in done})
    for env, dataset in tasks:
        targets = sorted({r["target"] for r in done if (r["env"], r["dataset"]) == (env,
                                                                                    dataset)},
                         reverse=True)
        for target in targets:
            cells_txt = []
            for m in models:
                r = by.get((env, dataset, target, m))
                if r is None:
                    cells_txt.append("-")
                    continue
                extra = "" if r["best"] == "last only" else f" (best {r['best']})"
                extra += f" !{len(r['collapsed'])}" if r["collapsed"] else ""
                cells_txt.append(_ci(r["iqm"], r["ci"]) + extra)
            lines.append(f"| {env}-{dataset} | {target:g} | " + " | ".join(cells_txt) + " |")
        lines.append(f"| {env}-{dataset} | in-data | " + " | ".join(
            in_data.get((env, dataset, m), "-") for m in models) + " |")
    lines += ["", "| model | transitions per step (over the datasets) | tuned on |",
              "|---|---|---|"]
    for m in models:
        mine = [r for r in done if r["model"] == m]
        counts = sorted({r["transitions"][0] for r in mine})
        span = f"{counts[0]:,.0f}" + (f"-{counts[-1]:,.0f}" if len(counts) > 1 else "")
        how = mine[0]["transitions"][1].split(" x ")[0] if len(counts) > 1 else (
            mine[0]["transitions"][1])
        lines.append(f"| {model_name(m)} | {span} ({how}) | {mine[0]['tuned_on']} |")
    return "\n".join(lines)
