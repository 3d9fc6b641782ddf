"""Which S4DM token layout trains better? Trains S4DM with each layout on the same data, seeds
and budget, evaluates, and prints a table (the evidence behind DEFAULTS["s4dm"]["token_layout"]).

    python experiments/compare_token_layouts.py                       # embedded preset, 3 seeds
    python experiments/compare_token_layouts.py --steps 3000 --seeds 5 --workdir runs/layouts

Layouts: "step" (one token per timestep: R_t, s_t, a_{t-1} concatenated) and "interleaved"
(DT-style R_1, s_1, a_1, R_2, ... tokens, 3x longer sequences). Every other field is the S4DM
config of `--preset`; each layout gets its own workdir (resumable) and results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from s4dm_jax.configs import s4dm as s4dm_config
from s4dm_jax.train.trainer import train_and_evaluate

LAYOUTS = ("step", "interleaved")


def run_layout(layout: str, args) -> dict:
    config = s4dm_config.get_config(args.preset)
    config.model.token_layout = layout
    config.seeds = args.seeds
    if args.steps:
        config.num_steps = args.steps
    if args.episodes:
        config.eval.episodes = args.episodes
    t0 = time.time()
    results = train_and_evaluate(config, os.path.join(args.workdir, layout),
                                 show_progress=not args.no_progress)
    evals = results["eval"]
    scores = np.array([e.get("normalized_score_per_seed", e["mean_return_per_seed"])
                       for e in evals])  # [targets, seeds]
    best = scores.max(axis=0)  # per seed: the best target
    return {"layout": layout, "seeds": args.seeds, "num_params": results["num_params"],
            "final_loss_mean": float(np.mean(results["final_train_loss_per_seed"])),
            "final_loss_std": float(np.std(results["final_train_loss_per_seed"])),
            "score_mean": float(best.mean()), "score_std": float(best.std()),
            "train_s": results["wall_times"].get("train_s"), "wall_s": time.time() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="embedded", help="S4DM config preset")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=0, help="train steps (0: the preset's)")
    p.add_argument("--episodes", type=int, default=0, help="eval episodes per seed (0: preset's)")
    p.add_argument("--workdir", default="runs/token-layouts")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()

    rows = [run_layout(layout, args) for layout in LAYOUTS]
    print(f"\nS4DM token layouts, preset {args.preset}, {args.seeds} seeds "
          "(score: normalised return at the best target, mean +- std over seeds)\n")
    print("| layout | params | final train loss | score | train s |")
    print("|---|---|---|---|---|")
    for r in rows:
        train_s = f"{r['train_s']:.0f}" if r["train_s"] is not None else "-"
        print(f"| {r['layout']} | {r['num_params']:,} | {r['final_loss_mean']:.4f} +- "
              f"{r['final_loss_std']:.4f} | {r['score_mean']:.1f} +- {r['score_std']:.1f} "
              f"| {train_s} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
