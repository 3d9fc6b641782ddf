"""From results directories to report.md and its figures.

Cells are validated first (study.cells: protocol, config, overrides, data provenance, commit;
the others are listed under "Excluded" with their reason). Per (dataset, model) cell: mean +-
std over seeds (of the per-seed episode means), the interquartile mean (IQM) with a 95%
stratified-bootstrap interval whose runs are seeds (study.stats; Agarwal et al. 2021), the
best score during training where the cell was evaluated on the way, collapsed seeds,
transitions per step and what the settings were tuned on; across datasets: aggregate IQM, mean
and optimality gap, and P(S4DM > baseline), per data realisation. Every interval has its own
generator, seeded by its key: the same results give the same report to the byte, and a cell's
interval does not depend on the other cells in the table.
"""

from __future__ import annotations

import json
import os

from s4dm_jax.study import ablation_tables, cells, figures, references, tables


def _write(out_dir: str, text: str) -> str:
    with open(os.path.join(out_dir, "report.md"), "w") as fh:
        fh.write(text + "\n")
    return text


def write_ablations_report(results_root: str, out_dir: str, protocol: str = "quick",
                           reps: int = 2000) -> str:
    """Write <out_dir>/report.md (variants beside their grid cells, return conditioning, score
    during training), targets.png and training_eval.png; returns the markdown."""
    chosen = cells.select(cells.load_cells(results_root, "ablations", protocol), "ablations",
                          protocol)
    grid_chosen = cells.select(cells.load_cells(results_root, "benchmark", protocol),
                               "benchmark", protocol)
    os.makedirs(out_dir, exist_ok=True)
    variants, _ = ablation_tables.variants_table(chosen.accepted, grid_chosen.accepted, reps)
    targets, rows = ablation_tables.targets_table(chosen.accepted)
    figures.plot_targets(rows, os.path.join(out_dir, "targets.png"))
    during, during_rows = ablation_tables.training_eval_table(chosen.accepted, reps)
    figures.plot_training_eval(during_rows, os.path.join(out_dir, "training_eval.png"))
    text = "\n\n".join(part for part in [
        f"# ablations / {protocol}",
        "Trained variants beside the grid cell of the same model and dataset (normalised "
        "scores at each target return; IQM over seeds, each seed's mean over its episodes, "
        "95% stratified-bootstrap CIs resampling seeds):", variants,
        "Return conditioning (evaluation of trained cells at a range of target returns: the "
        "grid cells, and ablation variants named in brackets; targets.png):", targets,
        "Score during training (cells evaluated on the way, config.eval.every, e.g. the budget "
        "ablation; normalised, IQM over seeds with 95% CIs; training_eval.png):", during,
        cells.excluded_section(chosen.excluded + grid_chosen.excluded)] if part)
    return _write(out_dir, text)


def write_report(results_root: str, out_dir: str, study: str = "benchmark",
                 protocol: str = "quick", reps: int = 2000) -> str:
    """Write <out_dir>/report.md, aggregate.png, aggregate_poi.png (and aggregate_target<k>.png
    for the protocol's other target returns), curves.png, score_vs_params.png, latency.png
    (when <results_root>/benchmarks/benchmark_inference.json exists; study "ablations": see
    write_ablations_report); returns the markdown."""
    if study == "ablations":
        return write_ablations_report(results_root, out_dir, protocol, reps)
    chosen = cells.select(cells.load_cells(results_root, study, protocol), study, protocol)
    accepted = chosen.accepted
    os.makedirs(out_dir, exist_ok=True)
    unrun = (tables.unrun_cells(accepted + chosen.missing) if study == "benchmark" else [])
    table, rows = tables.cell_table(accepted + chosen.missing + unrun, protocol, reps)
    commands = sorted({c["command"] for c in chosen.missing + unrun if c.get("command")})
    if commands:
        table += ("\n\nDatasets not in this machine's Minari store, and the commands that make "
                  "them:\n\n```bash\n" + "\n".join(commands) + "\n```")
    # every target the protocol fixed in advance, so that no model's best target is picked
    aggregates = []
    for t in range(max(tables.num_targets(accepted), 1)):
        agg_text, agg = tables.aggregate_table(accepted, protocol, reps, t)
        figures.plot_aggregate(agg, os.path.join(out_dir, "aggregate.png" if t == 0
                                                 else f"aggregate_target{t + 1}.png"))
        aggregates.append(agg_text)
    targets = [c for c in cells.select(cells.load_cells(results_root, "ablations", protocol),
                                       "ablations", protocol).accepted
               if c.get("ablation") == "targets"]
    in_data_scores = tables.in_data_scores(accepted, targets)
    in_data = ("In-data target (the dataset's best episode return, a rule fixed before the "
               "runs) beside the two published targets: the score where a cell was evaluated "
               "within 30% of it (its own targets, or its return-conditioning file), else "
               "\"not run\":\n\n" + tables.in_data_table(in_data_scores)) if accepted else ""
    summary = ("Summary: normalised score, IQM over seeds [95% CI, seeds resampled] at each "
               "target (\"!k\": k collapsed seeds; \"(best B)\": the best score during "
               "training where the cell was evaluated on the way, else the last score only), "
               "and at the in-data target:\n\n"
               + tables.summary_table(rows, tables.in_data_labels(in_data_scores))
               ) if accepted else ""
    figures.plot_curves(accepted, os.path.join(out_dir, "curves.png"))
    figures.plot_score_vs_params(rows, os.path.join(out_dir, "score_vs_params.png"))
    latency = ""
    bench_path = os.path.join(results_root, "benchmarks", "benchmark_inference.json")
    if study == "benchmark" and os.path.exists(bench_path):
        with open(bench_path) as fh:
            latency = figures.latency_section(json.load(fh), os.path.join(out_dir,
                                                                          "latency.png"))
    text = "\n\n".join(part for part in [
        f"# {study} / {protocol}", tables.parameter_share(rows), summary, table,
        tables.tuning_statement(protocol), tables.dataset_table(accepted), in_data,
        *aggregates, "Collapsed seeds: every evaluation episode of the seed ended within "
        f"{100 * cells.COLLAPSE_FRACTION:g}% of the episode limit. Transitions per step: from "
        "each cell's config and its dataset's mean episode length.",
        f"Published scores are from the D4RL v2 datasets with other code ("
        f"{tables.PUBLISHED_SOURCES}); ours use the datasets this package generates (see "
        "dataset_provenance in each cell's JSON), so the two columns are not comparable number "
        "for number. The baselines' reference settings and ours:", references.table(),
        latency, cells.excluded_section(chosen.excluded)] if part)
    return _write(out_dir, text)
