"""Reports: per-cell table, rliable IQM and intervals against an independent computation."""

import json
import os

import numpy as np
from matplotlib.colors import to_rgba
from scipy import stats

from s4dm_jax.study import report


def _cell(env, dataset, model, returns, params):
    """A finished cell JSON with refs (0, 100): normalised score == return."""
    returns = np.asarray(returns, float)
    return {"status": "finished", "env": env, "dataset": dataset, "model": model,
            "results": {"num_params": params, "seeds": list(range(returns.shape[0])),
                        "dataset": {"ref_min_score": 0.0, "ref_max_score": 100.0},
                        "eval": [{"target_return": 3600.0,
                                  "returns_per_seed": returns.tolist()}],
                        "wall_times": {"train_s": 12.0}},
            "train_curve": [{"step": 1, "loss": [1.0] * returns.shape[0]},
                            {"step": 2, "loss": [0.5] * returns.shape[0]}]}


def _write(root, cells):
    for c in cells:
        d = os.path.join(root, "benchmark", "quick", f"{c['env']}-{c['dataset']}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"{c['model']}.json"), "w") as fh:
            json.dump(c, fh)


def test_iqm_and_intervals_match_an_independent_computation(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(60, 10, size=(3, 8))
    b = rng.normal(40, 10, size=(3, 8))
    cells = [_cell("hopper", "medium", "s4dm", a, 100), _cell("hopper", "medium", "dt", b, 700),
             _cell("walker2d", "medium", "s4dm", a + 5, 100),
             _cell("walker2d", "medium", "dt", b + 5, 700),
             {"status": "missing", "env": "walker2d", "dataset": "medium-replay",
              "model": "dt", "reason": "dataset missing"}]
    _write(str(tmp_path), cells)
    loaded = report.load_cells(str(tmp_path))
    assert len(loaded) == 5
    table, rows = report.cell_table(loaded, reps=500)
    row = next(r for r in rows if r.get("model") == "s4dm" and r["env"] == "hopper")
    # IQM = 25% trimmed mean of the 24 episode scores (scipy, not rliable)
    np.testing.assert_allclose(row["iqm"], stats.trim_mean(a.reshape(-1), 0.25), rtol=1e-9)
    np.testing.assert_allclose(row["mean"], a.mean(), rtol=1e-9)
    np.testing.assert_allclose(row["std"], a.mean(axis=1).std(), rtol=1e-9)
    lo, hi = row["ci"]
    assert lo < row["iqm"] < hi and hi - lo < 20
    assert "not run: dataset missing" in table
    text, agg = report.aggregate_table(loaded, reps=500)
    both = np.concatenate([a.reshape(-1), (a + 5).reshape(-1)])
    np.testing.assert_allclose(agg["point"]["s4dm"][0], stats.trim_mean(both, 0.25), rtol=1e-9)
    p, (plo, phi) = agg["poi"]["s4dm,dt"]
    assert 0.8 < p <= 1.0 and plo <= p <= phi  # S4DM's scores are clearly higher here
    md = report.write_report(str(tmp_path), str(tmp_path / "out"), reps=200)
    assert ("S4DM's parameters against DT's, per environment: hopper 100 vs 700, 14.3% (86% "
            "fewer); walker2d 100 vs 700, 14.3% (86% fewer).") in md
    rows = [{"env": "hopper", "model": "s4dm", "params": 99_555},
            {"env": "hopper", "model": "dt", "params": 726_019},
            {"env": "halfcheetah", "model": "dt", "params": 727_558},
            {"env": "halfcheetah", "model": "s4dm", "params": 99_774},
            {"env": "walker2d", "model": "s4dm", "params": 1}]  # no DT there: left out
    assert report.parameter_share(rows) == (
        "S4DM's parameters against DT's, per environment: halfcheetah 99,774 vs 727,558, 13.7% "
        "(86% fewer); hopper 99,555 vs 726,019, 13.7% (86% fewer).")
    assert report.parameter_share(rows[-1:]) == ""
    for name in ("report.md", "aggregate.png", "aggregate_poi.png", "curves.png",
                 "score_vs_params.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_report_lists_every_grid_cell_and_why_unrun_ones_are_missing(tmp_path, monkeypatch):
    """The benchmark table has a row for each of the 3 x 2 x 4 grid cells: results, or why not
    (no dataset here, with the command that makes it; or not run yet)."""
    monkeypatch.setattr(report.grid, "dataset_available",
                        lambda spec: spec.startswith("s4dm/hopper/"))
    a = np.random.default_rng(2).normal(40, 5, size=(3, 8))
    _write(str(tmp_path), [_cell("hopper", "medium", "s4dm", a, 100)])
    md = report.write_report(str(tmp_path), str(tmp_path / "out"), reps=100)
    rows = [line for line in md.splitlines()  # the score table's rows (9 columns)
            if line.startswith("| ") and "-medium" in line and line.count(" | ") == 8]
    named = {tuple(line.split(" | ")[:2]) for line in rows}
    assert len(named) == 24
    assert "| hopper-medium | DT | - |" in md and "not run yet (compute)" in md
    assert "not run yet: dataset s4dm/walker2d/medium-replay-v0 not generated here" in md
    command = "python -m s4dm_jax.data.collect --env walker2d --dataset medium-replay --seed 0"
    assert f"\n{command}\n" in md


def test_report_states_each_datasets_own_normalised_return(tmp_path):
    """The datasets table normalises the behaviour data's mean return with the cell's refs."""
    a = np.random.default_rng(3).normal(40, 5, size=(3, 4))
    cell = _cell("hopper", "medium", "s4dm", a, 100)
    cell["results"]["dataset"].update(ref_min_score=-10.0, ref_max_score=190.0, episodes=2536,
                                      transitions=1_000_000)
    cell["dataset_provenance"] = {"dataset_return_mean": 1229.8, "dataset_return_std": 12.5}
    bare = _cell("walker2d", "medium", "dt", a, 700)  # a D4RL file: no provenance
    table = report.dataset_table([cell, bare, {"status": "missing", "env": "halfcheetah",
                                               "dataset": "medium", "model": "bc"}])
    lines = table.splitlines()
    assert len(lines) == 4  # header, rule, two datasets (the missing cell has none)
    # (1229.8 + 10) / 200 * 100 = 619.9
    assert lines[2] == "| hopper-medium | 2,536 | 1,000,000 | 1229.8 +- 12.5 | 619.9 |"
    assert lines[3] == "| walker2d-medium | - | - | - | - |"
    _write(str(tmp_path), [cell])
    md = report.write_report(str(tmp_path), str(tmp_path / "out"), reps=100)
    assert lines[2] in md
    assert report.dataset_table([]) == ""
    # a cell of the same dataset trained on another realisation of it is named below the table
    other = _cell("hopper", "medium", "dt", a, 700)
    other["dataset_provenance"] = {"dataset_return_mean": 1250.0, "dataset_return_std": 12.5}
    same = _cell("hopper", "medium", "bc", a, 70)
    same["dataset_provenance"] = dict(cell["dataset_provenance"])
    assert report.mixed_data([cell, other, same, bare]) == [
        "hopper-medium dt: mean return 1250.0 vs 1229.8 (against s4dm)"]
    table = report.dataset_table([cell, other, same])
    assert table.splitlines()[:3] == lines[:3] and "hopper-medium dt: mean return" in table
    assert "realisations" not in report.dataset_table([cell, same])


def test_ablations_report_puts_variants_beside_their_grid_cells(tmp_path):
    rng = np.random.default_rng(1)
    grid = rng.normal(50, 5, size=(3, 6))
    delayed = rng.normal(30, 5, size=(3, 6))
    base = _cell("hopper", "medium", "s4dm", grid, 100)
    base["dataset_provenance"] = {"dataset_episodes": 100, "dataset_return_mean": 2067.64}
    _write(str(tmp_path), [base])
    variant = {**_cell("hopper", "medium", "s4dm", delayed, 100), "name": "s4dm-delayed",
               "overrides": {"delayed_reward": True},  # trained on another realisation
               "dataset_provenance": {"dataset_episodes": 110, "dataset_return_mean": 2108.0}}
    # a second target return, which the grid cell was not evaluated at: no grid columns
    low = rng.normal(70, 5, size=(3, 6))
    variant["results"]["eval"].append({"target_return": 1800.0,
                                       "returns_per_seed": low.tolist()})
    per_seed = [[100.0, 200.0, 300.0], [400.0, 500.0, 600.0]]  # [targets, seeds]
    targets = {"study": "ablations", "ablation": "targets", "env": "hopper",
               "dataset": "medium", "model": "s4dm", "status": "finished",
               "targets": [900.0, 1800.0], "achieved_per_seed": per_seed,
               "achieved_mean": [200.0, 500.0], "normalized_mean": [5.0, 14.0],
               "trained_steps": 10}
    d = tmp_path / "ablations" / "quick" / "hopper-medium"
    d.mkdir(parents=True)
    (d / "s4dm-delayed.json").write_text(json.dumps(variant))
    (d / "s4dm-targets.json").write_text(json.dumps(targets))
    lin = {**targets, "variant": "diag-diag-lin", "achieved_per_seed": [[10.0, 20.0, 30.0],
                                                                         [40.0, 50.0, 60.0]]}
    (d / "s4dm-diag-diag-lin-targets.json").write_text(json.dumps(lin))

    md = report.write_report(str(tmp_path), str(tmp_path / "out"), study="ablations", reps=200)
    _, rows = report.variants_table(report.load_cells(str(tmp_path), "ablations"),
                                    report.load_cells(str(tmp_path)), reps=200)
    row, row_low = rows
    assert (row["target"], row_low["target"]) == (3600.0, 1800.0)
    np.testing.assert_allclose(row["iqm"], stats.trim_mean(delayed.reshape(-1), 0.25),
                               rtol=1e-9)
    np.testing.assert_allclose(row["grid_iqm"], stats.trim_mean(grid.reshape(-1), 0.25),
                               rtol=1e-9)
    np.testing.assert_allclose(row_low["iqm"], stats.trim_mean(low.reshape(-1), 0.25),
                               rtol=1e-9)
    assert "grid_iqm" not in row_low
    assert row["data"] == "no (episodes 110 vs 100; mean return 2108.0 vs 2067.6)"
    assert row["data"] in md
    assert report._same_data(base, base) == "yes"
    assert report._same_data(base, _cell("hopper", "medium", "dt", grid, 1)) == "unknown"
    assert f"| 1800 | {row_low['iqm']:.1f} [" in md
    assert f"{delayed.mean() - grid.mean():+.1f}" in md and "delayed_reward=True" in md
    assert "| hopper-medium | S4DM | 1800 | 500 +- 82 |" in md  # std over seeds: 81.6
    assert "| hopper-medium | S4DM (diag-diag-lin) | 1800 | 50 +- 8 |" in md
    assert (tmp_path / "out" / "targets.png").stat().st_size > 0


def test_reports_are_reproducible_and_leave_numpys_global_generator_alone(tmp_path):
    # rliable resamples with np.random.choice (global state) whatever random_state it is
    # given; the report seeds that itself, so the same results give the same intervals.
    rng = np.random.default_rng(1)
    a, b = rng.normal(60, 10, size=(3, 8)), rng.normal(40, 10, size=(3, 8))
    _write(str(tmp_path), [_cell("hopper", "medium", "s4dm", a, 100),
                           _cell("hopper", "medium", "dt", b, 700)])
    loaded = report.load_cells(str(tmp_path))
    texts = []
    for global_seed in (1, 2):
        np.random.seed(global_seed)
        texts.append(report.cell_table(loaded, reps=300)[0]
                     + report.aggregate_table(loaded, reps=300)[0])
        # the caller's global stream continues where it was, as if the report never ran
        after = np.random.random()
        np.random.seed(global_seed)
        assert after == np.random.random()
    assert texts[0] == texts[1]
    assert "[" in texts[0] and "P(S4DM > baseline)" in texts[0]


def test_aggregate_is_reported_at_every_protocol_target(tmp_path):
    # the protocol fixes two target returns per env in advance; the report aggregates at both
    rng = np.random.default_rng(2)
    cells = []
    for env in ("hopper", "walker2d"):
        for model, mean in (("s4dm", 20.0), ("dt", 50.0)):
            c = _cell(env, "medium", model, rng.normal(mean, 5, size=(3, 6)), 1)
            low = rng.normal(80.0 - mean, 5, size=(3, 6))  # the order flips at the 2nd target
            c["results"]["eval"].append({"target_return": 1800.0,
                                         "returns_per_seed": low.tolist()})
            cells.append(c)
    _write(str(tmp_path), cells)
    loaded = report.load_cells(str(tmp_path))
    assert report.num_targets(loaded) == 2
    second = np.concatenate([np.asarray(c["results"]["eval"][1]["returns_per_seed"]).reshape(-1)
                             for c in cells if c["model"] == "s4dm"])
    text, agg = report.aggregate_table(loaded, reps=300, target_index=1)
    assert "second target return" in text
    np.testing.assert_allclose(agg["point"]["s4dm"][0], stats.trim_mean(second, 0.25),
                               rtol=1e-9)
    assert agg["poi"]["s4dm,dt"][0] > 0.9 > 0.1 > report.aggregate_table(
        loaded, reps=300)[1]["poi"]["s4dm,dt"][0]
    md = report.write_report(str(tmp_path), str(tmp_path / "out"), reps=200)
    assert "first (published) target return" in md and "second target return" in md
    assert (tmp_path / "out" / "aggregate_target2.png").stat().st_size > 0


def test_latency_section_tabulates_and_plots_the_inference_benchmark(tmp_path):
    bench = {"meta": {"device": "cpu:0"}, "rows": [
        {"model": m, "length": n, "batch": b, "us_per_step": us}
        for m, per in (("dt", {20: 800.0, 1000: 340000.0}), ("s4dm", {20: 210.0, 1000: 180.0}))
        for n, us in per.items() for b in (1, 10)]}
    text = report.latency_section(bench, str(tmp_path / "latency.png"))
    assert "| S4DM | 0.21 | 0.18 |" in text and "| DT | 0.8 | 340 |" in text
    assert "t = 20 | t = 1000" in text and (tmp_path / "latency.png").stat().st_size > 0
    assert report.latency_section({"rows": []}, str(tmp_path / "none.png")) == ""
    # the benchmark report picks it up from <results>/benchmarks/
    _write(str(tmp_path), [_cell("hopper", "medium", "s4dm", np.ones((3, 2)), 1)])
    os.makedirs(tmp_path / "benchmarks")
    with open(tmp_path / "benchmarks" / "benchmark_inference.json", "w") as fh:
        json.dump(bench, fh)
    md = report.write_report(str(tmp_path), str(tmp_path / "out"), reps=50)
    assert "Per-step inference latency" in md and (tmp_path / "out" / "latency.png").exists()


def test_score_vs_params_colours_by_model_and_labels_datasets(tmp_path, monkeypatch):
    """One colour per model on every dataset (the legend's, the same in every figure), each
    point named by its dataset."""
    monkeypatch.setattr(report.plt, "close", lambda fig=None: None)  # keep the figure to read
    rows = [{"env": e, "dataset": d, "model": m, "params": p, "iqm": s}
            for e, d in (("hopper", "medium"), ("halfcheetah", "medium-replay"))
            for m, p, s in (("s4dm", 100, 30.0), ("dt", 700, 20.0), ("bc", 70, 10.0))]
    report.plot_score_vs_params(rows, str(tmp_path / "f.png"))
    ax = report.plt.gcf().axes[0]
    colours = [tuple(c.get_facecolor()[0]) for c in ax.collections]
    assert colours[:3] == colours[3:] and len(set(colours[:3])) == 3
    assert colours[:3] == [to_rgba(report.MODEL_COLOURS[m])
                           for m in ("s4dm", "dt", "bc")]
    assert [t.get_text() for t in ax.texts] == ["ho-m"] * 3 + ["hc-mr"] * 3
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["S4DM", "DT", "BC"]
    assert [tuple(h.get_facecolor()[0]) for h in legend.legend_handles] == colours[:3]
    report.plt.close("all")
    assert report.dataset_label("walker2d", "medium-expert") == "w2d-me"


def test_score_during_training_tabulates_each_evaluated_step(tmp_path):
    """A cell evaluated during training (train_curve "eval" entries, [T][S][E] returns) gets a
    row per step and target with the IQM of its episodes (scipy's trimmed mean), the final
    evaluation last; cells without such entries get none."""
    rng = np.random.default_rng(2)
    early, final = rng.normal(20, 5, size=(2, 3, 4)), rng.normal(40, 5, size=(3, 4))
    cell = {**_cell("hopper", "medium", "dt", final, 700), "name": "dt-steps5000"}
    cell["results"]["trained_steps"] = 2000
    cell["train_curve"][0]["eval"] = {"target_returns": [3600.0, 1800.0],
                                      "returns_per_seed": early.tolist()}
    plain = _cell("hopper", "medium", "s4dm", final, 100)
    plain["results"]["trained_steps"] = 2
    text, rows = report.training_eval_table([cell, plain], reps=200)
    assert [(r["step"], r["target"]) for r in rows] == [(1, 3600.0), (1, 1800.0),
                                                        (2000, 3600.0)]
    for r, x in zip(rows, [early[0], early[1], final], strict=True):
        np.testing.assert_allclose(r["iqm"], stats.trim_mean(x.reshape(-1), 0.25), rtol=1e-9)
        assert r["ci"][0] <= r["iqm"] <= r["ci"][1] and r["variant"] == "dt-steps5000"
    assert f"| hopper-medium | dt-steps5000 | 1800 | 1 | {rows[1]['iqm']:.1f} [" in text
    report.plot_training_eval(rows, str(tmp_path / "during.png"))
    assert (tmp_path / "during.png").stat().st_size > 0
    assert report.training_eval_table([plain])[1] == []
