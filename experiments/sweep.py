"""S4DM hyperparameter sweep through submitit (local executor by default, Slurm with
--executor slurm): one job per shape (state size x layers x width x token layout), each training
all --lr values (x --seeds) side by side in one vmapped program.

    python experiments/sweep.py                                   # lr x N x layers (3 x 3 x 3)
    python experiments/sweep.py --lr 3e-4 1e-3 --d-state 64 256 --layers 4 16 --width 18 32
    python experiments/sweep.py --executor slurm --slurm slurm_partition=gpu timeout_min=600

Results: results/sweep/<protocol>/<env>-<dataset>/s4dm-N<N>-L<layers>-H<width>-<layout>.json;
the table and heat maps: results/sweep/<protocol>/report/ (written at the end).
"""

from __future__ import annotations

import argparse

from s4dm_jax.study import grid, jobs, sweep
from s4dm_jax.train.compile_cache import default_cache_dir, enable_compilation_cache


def sweep_job(name, overrides, env, dataset, protocol_name, results_root, runs_root, cache):
    enable_compilation_cache(cache)
    return grid.outcome(sweep.run_job(name, overrides, env, dataset,
                                      grid.PROTOCOLS[protocol_name], results_root=results_root,
                                      runs_root=runs_root))


def main(argv=None):
    d = sweep.DEFAULT_AXES
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lr", type=float, nargs="+", default=list(d["learning_rate"]))
    p.add_argument("--d-state", type=int, nargs="+", default=list(d["d_state"]))
    p.add_argument("--layers", type=int, nargs="+", default=list(d["n_layers"]))
    p.add_argument("--width", type=int, nargs="+", default=list(d["d_model"]))
    p.add_argument("--layout", nargs="+", choices=("step", "interleaved"),
                   default=list(d["token_layout"]))
    p.add_argument("--env", choices=grid.ENVS, default="hopper")
    p.add_argument("--dataset", default="medium")
    p.add_argument("--protocol", choices=sorted(grid.PROTOCOLS), default="sweep")
    p.add_argument("--results", default="results")
    p.add_argument("--runs", default="runs")
    p.add_argument("--executor", choices=jobs.EXECUTORS, default="local")
    p.add_argument("--slurm", nargs="*", default=[], metavar="PARAM=VALUE")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="config overrides for every job, e.g. num_steps=1000")
    p.add_argument("--compilation-cache", default=default_cache_dir())
    args = p.parse_args(argv)
    extra = grid.parse_assignments(args.set)
    axes = {"learning_rate": args.lr, "d_state": args.d_state, "n_layers": args.layers,
            "d_model": args.width, "token_layout": args.layout}
    todo = [(name, {**over, **extra}, args.env, args.dataset, args.protocol, args.results,
             args.runs, args.compilation_cache) for name, over in sweep.jobs(axes)]
    slurm = grid.parse_assignments(args.slurm)
    statuses = jobs.run_jobs(sweep_job, todo, executor=args.executor,
                             folder=f"{args.runs}/jobs/sweep", slurm=slurm,
                             labels=[t[0] for t in todo])
    for t, status in zip(todo, statuses, strict=True):
        print(f"{t[0]}: {status}")
    out = f"{args.results}/sweep/{args.protocol}/report"
    print(sweep.write_report(args.results, out, args.protocol))
    print(f"wrote {out}/")


if __name__ == "__main__":
    main()
