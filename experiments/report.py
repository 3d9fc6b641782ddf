"""Tables and figures from a results directory (see s4dm_jax.study.report).

    python experiments/report.py --protocol quick                 # results/benchmark/quick
    python experiments/report.py --protocol quick --out reports/quick --reps 50000
    python experiments/report.py --study ablations --protocol quick   # results/ablations/quick

Writes <out>/report.md (cells validated against the protocol, the others listed as excluded;
per-cell table with IQM and 95% stratified-bootstrap CIs whose runs are seeds, last / best
score, collapsed seeds, transitions per step, tuned on; aggregate IQM, mean, optimality gap and
P(S4DM > baseline) at each of the protocol's target returns; the in-data target; latency),
aggregate.png, aggregate_poi.png, aggregate_target2.png, curves.png, score_vs_params.png,
latency.png (from <results>/benchmarks/benchmark_inference.json, when present); for the
ablations: report.md (variants beside their grid cells, return conditioning), targets.png.
Every interval has its own generator seeded by its key: the same results give the same report.
"""

from __future__ import annotations

import argparse

from s4dm_jax.study import report


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default="results")
    p.add_argument("--study", default="benchmark")
    p.add_argument("--protocol", default="quick")
    p.add_argument("--out", default=None, help="default: <results>/<study>/<protocol>/report")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (study.stats)")
    args = p.parse_args(argv)
    out = args.out or f"{args.results}/{args.study}/{args.protocol}/report"
    print(report.write_report(args.results, out, args.study, args.protocol, args.reps))
    print(f"\nwrote {out}/")


if __name__ == "__main__":
    main()
