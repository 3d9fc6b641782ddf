"""Ablations on one dataset (see s4dm_jax.study.ablations), through the same jobs and protocol
as the benchmark grid.

    python experiments/ablations.py --ablation context --env hopper --dataset medium
    python experiments/ablations.py --ablation delayed kernel --protocol quick
    python experiments/ablations.py --ablation targets        # needs the grid's hopper-medium
    python experiments/ablations.py --ablation targets --models s4dm --variant diag-diag-lin \
        --env halfcheetah --dataset medium-replay --protocol quick-tuned  # a kernel variant
    python experiments/ablations.py --ablation tuned --env halfcheetah --dataset medium-replay
    python experiments/ablations.py --ablation budget --models s4dm dt --env halfcheetah \
        --dataset medium-replay --protocol quick-tuned    # 5k steps, evaluated every 1k

Results: results/ablations/<protocol>/<env>-<dataset>/<model>-<variant>.json; then
`python experiments/report.py --study ablations --protocol quick`.
"""

from __future__ import annotations

import argparse

from s4dm_jax.study import ablations, grid, jobs
from s4dm_jax.train.compile_cache import default_cache_dir, enable_compilation_cache


def variant_job(spec, variant, results_root, runs_root, cache):
    enable_compilation_cache(cache)
    return grid.outcome(ablations.run_variant(spec, variant, results_root=results_root,
                                              runs_root=runs_root))


def targets_job(spec, variant, results_root, runs_root, cache):
    enable_compilation_cache(cache)
    return grid.outcome(ablations.run_targets(spec, variant=variant, results_root=results_root,
                                              runs_root=runs_root))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ablation", nargs="+", choices=ablations.ABLATIONS, required=True)
    p.add_argument("--env", choices=grid.ENVS, default="hopper")
    p.add_argument("--dataset", default="medium")
    p.add_argument("--protocol", choices=sorted(grid.PROTOCOLS), default="quick")
    p.add_argument("--models", nargs="+", choices=grid.MODELS, default=list(grid.MODELS),
                   help="models for 'targets' (and a filter for the others)")
    p.add_argument("--variant", help="for 'targets': evaluate this trained ablation variant "
                   "of each model (e.g. diag-diag-lin, K5) instead of its grid cell")
    p.add_argument("--results", default="results")
    p.add_argument("--runs", default="runs")
    p.add_argument("--executor", choices=jobs.EXECUTORS, default="local")
    p.add_argument("--compilation-cache", default=default_cache_dir())
    args = p.parse_args(argv)
    if args.variant:
        if args.ablation != ["targets"]:
            p.error("--variant goes with --ablation targets alone")
        for m in args.models:
            try:
                ablations.trained_variant(m, args.variant)
            except ValueError as e:
                p.error(str(e))
    common = (args.results, args.runs, args.compilation_cache)
    protocol = grid.PROTOCOLS[args.protocol]

    def spec(model, overrides=None):
        return grid.CellSpec(model, args.env, args.dataset, protocol, "ablations",
                             overrides or {})

    for ablation in args.ablation:
        if ablation == "targets":
            name = f"-{args.variant}" if args.variant else ""
            todo = [(spec(m), args.variant, *common) for m in args.models]
            labels = [f"{m}{name}-targets" for m in args.models]
            statuses = jobs.run_jobs(targets_job, todo, executor=args.executor,
                                     folder=f"{args.runs}/jobs/ablations", labels=labels)
        else:
            todo = [(spec(m, o), v, *common) for m, v, o in ablations.variants(ablation)
                    if m in args.models]
            labels = [f"{t[0].model}-{t[1]}" for t in todo]
            statuses = jobs.run_jobs(variant_job, todo, executor=args.executor,
                                     folder=f"{args.runs}/jobs/ablations", labels=labels)
        for label, status in zip(labels, statuses, strict=True):
            print(f"{ablation}: {args.env}-{args.dataset} {label}: {status}")


if __name__ == "__main__":
    main()
