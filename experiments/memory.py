"""Where memory matters (issue 26): T-Maze success rate against corridor length L for S4DM, DT
(K = 20, and K covering the episode where it fits), Decision Mamba (windowed; recurrent on whole
episodes) and BC, 5 seeds vmapped; and velocity-masked MuJoCo quick cells ("-P", positions
only; optionally with delayed rewards).

    python experiments/memory.py tmaze --lengths 10 30 100 300 --kind passive --quality mixed
    python experiments/memory.py masked --envs hopper walker2d            # quick budget
    python experiments/memory.py masked --envs hopper --delayed
    python experiments/memory.py masked --envs hopper --unmasked          # the control
    python experiments/memory.py time --lengths 10 30 100 300 --steps 20  # step times, no eval

Each cell trains through `train_and_evaluate` (runs/memory/...) and writes
results/memory/<study>/<cell>.json: the budget (steps, batch, tokens and transitions seen), and
per seed the per-episode returns (T-Maze: success, 0 or 1) at each target, for seed-level
intervals. Model sizes are each model's CPU-sized "embedded" preset.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs import base  # noqa: E402  (configs/ is a folder of the repository)
from configs.presets import set_fields  # noqa: E402
from s4dm_jax.data.tmaze import parse_spec  # noqa: E402
from s4dm_jax.provenance import git_commit, machine_record  # noqa: E402
from s4dm_jax.study import stats  # noqa: E402
from s4dm_jax.train.trainer import train_and_evaluate  # noqa: E402

# variant -> (model config file, how its context is set: "K20", "episode" or "bc")
VARIANTS = {
    "s4dm": ("s4dm", "episode"),
    "dt-K20": ("dt", "K20"),
    "dt-Kepisode": ("dt", "episode"),
    "mamba-window": ("mamba", "K20"),
    "mamba-recurrent": ("mamba", "episode"),
    "bc": ("bc", "bc"),
}
DT_MAX_CONTEXT = 303  # DT attends over 3 tokens per step: K = 303 is 909 tokens (fits on CPU)
SEEDS = 5
# Equal steps for every model (the grid's convention); transitions seen differ (`budget`).
# Sized from step times measured on a 2-core CPU, 5 seeds vmapped (s/step at L = 10/30/100/300:
# s4dm 0.015/0.028/0.088/0.32, bc 0.006-0.009, dt-K20 0.9-1.7, mamba-window 0.5-1.0,
# mamba-recurrent 0.30/0.86 at L = 10/30, dt-Kepisode 0.42/1.7): all cells together take
# ~12 s per step, so 200 steps plus compilation and evaluation (~25 s a cell) is ~45-60 min.
TMAZE_BUDGET = {"num_steps": 200, "optim.warmup_steps": 20, "eval.episodes": 50}
EPISODE_CONTEXT_MAX_L = {"mamba-recurrent": 30, "dt-Kepisode": 30}  # --all-lengths lifts it
MASKED_DATASETS = {"hopper": "masked:s4dm/hopper/medium-v0",
                   "walker2d": "masked:s4dm/walker2d/medium-v0"}
MASKED_BUDGET = {"num_steps": 1000, "eval.episodes": 10}  # the grid's quick budget
MASKED_STUDIES = ("unmasked", "masked", "unmasked-delayed", "masked-delayed")  # report order


def _get(config, dotted):
    node = config
    for name in dotted.split("."):
        node = node[name]
    return node


def cell_config(variant: str, dataset_spec: str, episode_steps: int, fields: dict):
    """The config of one cell: the model's embedded preset (sizes, optimiser) with the data,
    evaluation and budget of `dataset_spec`; context per VARIANTS; `fields` last."""
    file, context = VARIANTS[variant]
    config = importlib.import_module(f"configs.{file}").get_config("embedded")
    if dataset_spec.startswith("tmaze:"):
        data = base.tmaze_config(dataset_spec[len("tmaze:"):])
        for key in ("preset", "dataset", "rtg_scale", "eval.target_returns",
                    "eval.max_episode_steps"):
            set_fields(config, {key: _get(data, key)})
    else:
        set_fields(config, {"dataset": dataset_spec})
    if context == "episode":
        set_fields(config, {"model.context_len": episode_steps, "episode_start_windows": True})
        if variant == "mamba-recurrent":
            set_fields(config, {"model.inference": "recurrent"})
    elif context == "K20":
        set_fields(config, {"model.context_len": 20, "episode_start_windows": False})
    if "max_ep_len" in config.model:  # timestep embeddings cover the whole episode
        set_fields(config, {"model.max_ep_len": max(int(config.model.max_ep_len), episode_steps)})
    set_fields(config, {"seeds": SEEDS, **fields})
    return config


def budget(config) -> dict:
    """Steps, windows per step, tokens and transitions seen (the budget in both units)."""
    k = int(config.model.get("context_len", 1))
    steps, batch = int(config.num_steps), int(config.batch_size)
    return {"steps": steps, "batch_size": batch, "context_len": k,
            "transitions_seen": steps * batch * k}


def run_cell(study: str, cell: str, config, args) -> dict:
    workdir = os.path.join(args.runs, "memory", study, cell)
    commit = git_commit()  # the code that trains (the tree may change during a long cell)
    results = train_and_evaluate(config, workdir, show_progress=not args.quiet)
    record = {"cell": cell, "config": json.loads(config.to_json()), "budget": budget(config),
              "wall_times": results.get("wall_times"), "git_commit": commit,
              "machine": machine_record(),
              "finished_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "dataset": results.get("dataset"),  # spec, env id, reference scores
              # per target: returns_per_seed [seeds][episodes] (T-Maze: success), lengths, means
              "eval": results["eval"]}
    out = os.path.join(args.results, "memory", study, f"{cell}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(record, f, indent=1)
    print(f"{cell}: wrote {out}")
    return record


def tmaze_cells(args):
    for length in args.lengths:
        spec = f"tmaze:{args.kind}-L{length}-{args.quality}"
        steps = parse_spec(spec)["corridor_length"] + (1 if args.kind == "passive" else 3)
        for variant in args.models:
            if variant == "dt-Kepisode" and steps > DT_MAX_CONTEXT:
                print(f"dt-Kepisode at L={length}: K={steps} does not fit, skipped")
                continue
            if length > EPISODE_CONTEXT_MAX_L.get(variant, length) and not args.all_lengths:
                print(f"{variant} at L={length}: over the hour's budget, skipped "
                      "(--all-lengths runs it)")
                continue
            fields = dict(TMAZE_BUDGET)
            if args.steps:
                fields.update({"num_steps": args.steps, "eval.episodes": args.episodes,
                               "optim.warmup_steps": max(1, args.steps // 10)})
            yield (f"{args.kind}-{args.quality}", f"{variant}-L{length}",
                   cell_config(variant, spec, steps, fields))


def masked_study(unmasked: bool, delayed: bool) -> str:
    """The results folder of a masked-MuJoCo study: masked / unmasked, + -delayed."""
    return ("unmasked" if unmasked else "masked") + ("-delayed" if delayed else "")


def masked_cells(args):
    """The quick cells on velocity-masked hopper / walker2d medium; with --unmasked the same
    cells on the same data, unmasked (the control). Whole-episode DT and Decision Mamba would
    attend over / train on 1000-step windows: not run here (the T-Maze study has them)."""
    for env in args.envs:
        for variant in args.models:
            if VARIANTS[variant][1] == "episode" and variant != "s4dm":
                print(f"{variant} on {env}: 1000-step episodes, not run in the masked study")
                continue
            fields = {**MASKED_BUDGET, "delayed_reward": bool(args.delayed)}
            spec = MASKED_DATASETS[env]
            spec = spec[len("masked:"):] if args.unmasked else spec
            yield (masked_study(args.unmasked, args.delayed), f"{variant}-{env}",
                   cell_config(variant, spec, 1000, fields))


def _cell_records(folder: str):
    """The cell records (results/memory/<study>/<cell>.json) of one study folder, by name."""
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                yield json.load(f)


def success_table(study_dir: str) -> tuple[list[dict], str]:
    """Rows (variant, L, success rate [95% CI over seeds], per-seed rates, budget) of every cell
    JSON in `study_dir`, and their markdown table (variants x L). T-Maze returns are 1 on
    success and 0 otherwise, so a seed's mean return over its episodes is its success rate; the
    interval resamples seeds (s4dm_jax.study.stats, one generator per cell)."""
    rows = []
    for cell in _cell_records(study_dir):
        variant, length = cell["cell"].rsplit("-L", 1)
        episodes = np.asarray(cell["eval"][0]["returns_per_seed"], np.float64)  # [S, E]
        key = f"memory/{os.path.basename(study_dir)}/{cell['cell']}"
        point, (lo, hi) = stats.interval(episodes[None], "mean", key)
        rows.append({"variant": variant, "L": int(length), "success": point, "ci": [lo, hi],
                     "per_seed": episodes.mean(axis=-1).tolist(), "budget": cell["budget"],
                     "train_s": (cell.get("wall_times") or {}).get("train_s")})
    lengths = sorted({r["L"] for r in rows})
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
    lines = ["| model | " + " | ".join(f"L={n}" for n in lengths) + " |",
             "|---|" + "---|" * len(lengths)]
    for v in variants:
        cells = {r["L"]: r for r in rows if r["variant"] == v}
        lines.append(f"| {v} | " + " | ".join(
            f"{cells[n]['success']:.2f} [{cells[n]['ci'][0]:.2f}, {cells[n]['ci'][1]:.2f}]"
            if n in cells else "not run" for n in lengths) + " |")
    return rows, "\n".join(lines) + "\n"


def _pyplot():
    """matplotlib.pyplot on the Agg backend (no display), imported only when a report plots."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def write_report(study_dir: str) -> str:
    """report.md (the success table, budgets) and success_vs_length.png in `study_dir`."""
    plt = _pyplot()
    rows, table = success_table(study_dir)
    budget_lines = ["| cell | steps | batch | K | transitions seen | train s |",
                    "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["variant"], r["L"])):
        b, train_s = r["budget"], r["train_s"]
        budget_lines.append(f"| {r['variant']}-L{r['L']} | {b['steps']} | {b['batch_size']} | "
                            f"{b['context_len']} | {b['transitions_seen']:,} | "
                            f"{'?' if train_s is None else f'{train_s:.0f}'} |")
    text = (f"# T-Maze success rate against corridor length ({os.path.basename(study_dir)})\n\n"
            "Success rate over 5 seeds (a seed's rate: its evaluation episodes' mean) with 95% "
            "bootstrap intervals over seeds.\n\n" + table + "\n## Budget\n\n"
            + "\n".join(budget_lines) + "\n")
    with open(os.path.join(study_dir, "report.md"), "w") as f:
        f.write(text)
    fig, ax = plt.subplots(figsize=(6, 4))
    for v in VARIANTS:
        mine = sorted((r for r in rows if r["variant"] == v), key=lambda r: r["L"])
        if mine:
            ls = [r["L"] for r in mine]
            ax.plot(ls, [r["success"] for r in mine], marker="o", label=v)
            ax.fill_between(ls, [r["ci"][0] for r in mine], [r["ci"][1] for r in mine],
                            alpha=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("corridor length L")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(study_dir, "success_vs_length.png"), dpi=120)
    plt.close(fig)
    return text


def _normalised_episodes(cell: dict) -> np.ndarray:
    """[seeds, episodes] D4RL-normalised returns of a masked-study cell (its first target)."""
    data = cell.get("dataset") or {}
    lo, hi = data.get("ref_min_score"), data.get("ref_max_score")
    if lo is None or hi is None:
        raise ValueError(f"cell {cell['cell']}: no reference scores in its record")
    returns = np.asarray(cell["eval"][0]["returns_per_seed"], np.float64)
    return 100.0 * (returns - lo) / (hi - lo)


def masked_table(memory_dir: str) -> tuple[list[dict], str]:
    """Rows (study, variant, env, normalised score [95% CI over seeds]) of every cell in the
    masked / unmasked (-delayed) folders of `memory_dir`, and their markdown table (variants x
    study-env columns)."""
    rows = []
    for study in MASKED_STUDIES:
        folder = os.path.join(memory_dir, study)
        for cell in _cell_records(folder) if os.path.isdir(folder) else ():
            variant, env = cell["cell"].rsplit("-", 1)
            episodes = _normalised_episodes(cell)
            point, (lo, hi) = stats.interval(episodes[None], "mean",
                                             f"memory/{study}/{cell['cell']}")
            rows.append({"study": study, "variant": variant, "env": env, "score": point,
                         "target": cell["eval"][0]["target_return"],
                         "ci": [lo, hi], "per_seed": episodes.mean(axis=-1).tolist(),
                         "budget": cell["budget"], "dataset": cell["dataset"]["spec"]})
    columns = sorted({(r["study"], r["env"]) for r in rows},
                     key=lambda c: (c[1], MASKED_STUDIES.index(c[0])))
    lines = ["| model | " + " | ".join(f"{env} {study}" for study, env in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for v in (v for v in VARIANTS if any(r["variant"] == v for r in rows)):
        cells = {(r["study"], r["env"]): r for r in rows if r["variant"] == v}
        lines.append(f"| {v} | " + " | ".join(
            f"{cells[c]['score']:.1f} [{cells[c]['ci'][0]:.1f}, {cells[c]['ci'][1]:.1f}]"
            if c in cells else "not run" for c in columns) + " |")
    return rows, "\n".join(lines) + "\n"


def write_masked_report(memory_dir: str) -> str:
    """masked_report.md (the normalised-score table with its budget) and masked_scores.png in
    `memory_dir`."""
    rows, table = masked_table(memory_dir)
    if not rows:
        return "no masked-study cells yet"
    budgets = sorted({(r["variant"], r["budget"]["steps"], r["budget"]["batch_size"],
                       r["budget"]["context_len"], r["budget"]["transitions_seen"])
                      for r in rows})
    targets = ", ".join(f"{env} {t:g}" for env, t in sorted({(r["env"], r["target"])
                                                               for r in rows}))
    text = ("# Velocity-masked MuJoCo (positions only) against the same data unmasked\n\n"
            f"D4RL-normalised score at target return {targets} over 5 seeds with 95% "
            "bootstrap intervals over seeds; each seed's score is its evaluation episodes' "
            "mean.\n\n" + table
            + "\n## Budget\n\n| model | steps | batch | K | transitions seen |\n"
            "|---|---|---|---|---|\n"
            + "".join(f"| {v} | {st} | {b} | {k} | {t:,} |\n" for v, st, b, k, t in budgets))
    with open(os.path.join(memory_dir, "masked_report.md"), "w") as f:
        f.write(text)
    _plot_masked(rows, os.path.join(memory_dir, "masked_scores.png"))
    return text


def _plot_masked(rows: list[dict], path: str) -> None:
    """One panel per env: each model's normalised score per study (bars) with its interval."""
    plt = _pyplot()
    envs = sorted({r["env"] for r in rows})
    studies = [s for s in MASKED_STUDIES if any(r["study"] == s for r in rows)]
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
    width = 0.8 / len(studies)
    fig, axes = plt.subplots(1, len(envs), figsize=(4.5 * len(envs), 3.6), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for i, study in enumerate(studies):
            cells = {r["variant"]: r for r in rows if r["env"] == env and r["study"] == study}
            xs = [j + (i - (len(studies) - 1) / 2) * width
                  for j, v in enumerate(variants) if v in cells]
            mine = [cells[v] for v in variants if v in cells]
            ax.bar(xs, [r["score"] for r in mine], width, label=study, color=f"C{i}",
                   yerr=[[r["score"] - r["ci"][0] for r in mine],
                         [r["ci"][1] - r["score"] for r in mine]], capsize=3)
        ax.set_xticks(range(len(variants)), variants, fontsize=8)
        ax.set_title(f"{env}-medium")
        ax.set_ylabel("normalised score (95% CI over seeds)")
    legend = {}  # one entry per study, from a panel where it has bars
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if len(handle.patches):
                legend.setdefault(label, handle)
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=len(legend), fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("study", choices=("tmaze", "masked", "time", "report"))
    p.add_argument("--lengths", type=int, nargs="+", default=[10, 30, 100, 300])
    p.add_argument("--kind", choices=("passive", "active"), default="passive")
    p.add_argument("--quality", choices=("mixed", "medium"), default="mixed")
    p.add_argument("--models", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    p.add_argument("--all-lengths", action="store_true",
                   help="also mamba-recurrent / dt-Kepisode above L=30 (slow on a CPU)")
    p.add_argument("--envs", nargs="+", choices=sorted(MASKED_DATASETS),
                   default=sorted(MASKED_DATASETS))
    p.add_argument("--delayed", action="store_true", help="masked: delayed rewards")
    p.add_argument("--unmasked", action="store_true",
                   help="masked: the same cells on the same data without the mask (control)")
    p.add_argument("--steps", type=int, help="override the budget's steps (time: default 20)")
    p.add_argument("--episodes", type=int, default=1, help="evaluation episodes with --steps")
    p.add_argument("--results", default="results")
    p.add_argument("--runs", default="runs")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.study == "time":
        args.steps = args.steps or 20
        rows = []
        for study, cell, config in tmaze_cells(args):
            res = train_and_evaluate(config, os.path.join(args.runs, "memory-time", study, cell),
                                     show_progress=False)
            wall = res.get("wall_times", {})
            rows.append((cell, wall.get("train_s", float("nan")) / args.steps,
                         wall.get("compile_s", float("nan")), budget(config)))
            print(f"{cell}: {rows[-1][1]:.4f} s/step (compile {rows[-1][2]:.1f} s)", flush=True)
        return rows
    if args.study == "report":
        study_dir = os.path.join(args.results, "memory", f"{args.kind}-{args.quality}")
        if os.path.isdir(study_dir):
            print(write_report(study_dir))
        print(write_masked_report(os.path.join(args.results, "memory")))
        return []
    cells = tmaze_cells(args) if args.study == "tmaze" else masked_cells(args)
    return [run_cell(study, cell, config, args) for study, cell, config in cells]


if __name__ == "__main__":
    main()
