"""Benchmark launcher: env x dataset x model cells, each with N vmapped seeds, under a protocol.

    python experiments/benchmark.py --protocol quick                  # the whole 6 x 4 grid
    python experiments/benchmark.py --protocol quick --envs hopper --datasets medium
    python experiments/benchmark.py --protocol full --executor slurm \\
        --slurm slurm_partition=gpu gpus_per_node=1 timeout_min=720   # one job per cell
    python experiments/benchmark.py --protocol quick --generate-missing   # make datasets first

Each finished cell writes results/benchmark/<protocol>/<env>-<dataset>/<model>.json (commit it)
and is skipped by later runs; a run with --set writes <model>-set-<hash>.json instead (never the
protocol's cell; the report lists it under "Excluded"); a killed cell resumes from
runs/benchmark/.../<model>/ (orbax).
A cell whose dataset is missing writes <model>.missing.json with the command that creates it.
Then `python experiments/report.py` turns the results into tables and figures.
The logic lives in s4dm_jax.study (grid, jobs), so tests and the notebook run the same code.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from s4dm_jax.study import grid, jobs
from s4dm_jax.train.compile_cache import default_cache_dir, enable_compilation_cache


def override_name(model: str, overrides: dict) -> str | None:
    """The variant name of a run with --set overrides, `<model>-set-<hash of the overrides>`
    (None without overrides): such a run never writes the protocol's canonical cell."""
    if not overrides:
        return None
    return f"{model}-set-{grid.config_hash(overrides)[:8]}"


def cell_job(model, env, dataset, protocol_name, results_root, runs_root, overrides, cache):
    """One cell (runs in the submitit job's process); with overrides, under its own variant
    name (override_name)."""
    enable_compilation_cache(cache)
    spec = grid.CellSpec(model, env, dataset, grid.PROTOCOLS[protocol_name],
                         overrides=overrides, name=override_name(model, overrides))
    summary = grid.run_cell(spec, results_root=results_root, runs_root=runs_root,
                            show_progress=True)
    return grid.outcome(summary)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--protocol", choices=sorted(grid.PROTOCOLS), default="quick")
    p.add_argument("--envs", nargs="+", choices=grid.ENVS, default=list(grid.ENVS))
    p.add_argument("--datasets", nargs="+", default=list(grid.DATASETS),
                   help="dataset kinds, e.g. medium medium-replay medium-expert")
    p.add_argument("--models", nargs="+", choices=grid.MODELS, default=list(grid.MODELS))
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="config overrides for every cell, e.g. num_steps=4 eval.episodes=1 "
                   "(written as <model>-set-<hash>.json, not as the protocol's cell)")
    p.add_argument("--results", default="results", help="results root (small JSON, commit)")
    p.add_argument("--runs", default="runs", help="workdirs root (checkpoints; not committed)")
    p.add_argument("--executor", choices=jobs.EXECUTORS, default="local")
    p.add_argument("--slurm", nargs="*", default=[], metavar="PARAM=VALUE",
                   help="submitit Slurm parameters, e.g. slurm_partition=gpu timeout_min=720")
    p.add_argument("--generate-missing", action="store_true",
                   help="create missing s4dm/<env>/<dataset>-v0 datasets first (collect)")
    p.add_argument("--compilation-cache", default=default_cache_dir(),
                   help="JAX compilation cache directory ('' disables)")
    args = p.parse_args(argv)

    missing = grid.missing_datasets(args.envs, args.datasets)
    commands = [grid.generation_command(e, d) for e, d in missing]
    if missing and args.generate_missing:
        for command in commands:
            print("$ " + " ".join(command), flush=True)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, *command[1:]], check=True)
            print(f"  done in {time.perf_counter() - t0:.0f} s", flush=True)
    elif missing:
        print("These datasets are missing; their cells are recorded as missing. Create them with "
              "(or rerun with --generate-missing):\n  "
              + "\n  ".join(" ".join(c) for c in commands), flush=True)

    overrides = grid.parse_assignments(args.set)
    cells = grid.grid_cells(args.envs, args.datasets, args.models)
    job_args = [(m, e, d, args.protocol, args.results, args.runs, overrides,
                 args.compilation_cache) for e, d, m in cells]
    statuses = jobs.run_jobs(cell_job, job_args, executor=args.executor,
                             folder=f"{args.runs}/jobs/benchmark-{args.protocol}",
                             slurm=grid.parse_assignments(args.slurm),
                             labels=[f"{e}-{d} {m}" for e, d, m in cells])
    for (e, d, m), status in zip(cells, statuses, strict=True):
        print(f"{e}-{d} {m}: {status}")
    print(f"Results in {args.results}/benchmark/{args.protocol}/; tables and figures: "
          f"python experiments/report.py --protocol {args.protocol}")


if __name__ == "__main__":
    main()
