"""Reports: validated cells, seed-level intervals against independent computations, byte-
identical regeneration, intervals independent of the other models, and the committed results."""

import json
import os

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from runner_configs import ROOT
from scipy import stats as sps

from s4dm_jax.study import ablation_tables, cells, figures, grid, report, stats, tables

PROV = {"dataset_episodes": 100, "dataset_return_mean": 50.0, "dataset_return_max": 90.0}


def _cell(env, dataset, model, returns, params, **extra):
    """A finished cell JSON of the (unregistered) protocol "tiny" with refs (0, 100):
    normalised score == return."""
    returns = np.asarray(returns, float)
    cell = {"study": "benchmark", "protocol": {"name": "tiny"}, "status": "finished",
            "env": env, "dataset": dataset, "model": model, "name": model, "overrides": {},
            "config": {"batch_size": 64, "episode_start_windows": False,
                       "model": {"name": model, "context_len": 20},
                       "eval": {"max_episode_steps": 1000}},
            "results": {"num_params": params, "seeds": list(range(returns.shape[0])),
                        "trained_steps": 2,
                        "dataset": {"ref_min_score": 0.0, "ref_max_score": 100.0,
                                    "episodes": 10, "transitions": 5000},
                        "eval": [{"target_return": 3600.0, "returns_per_seed": returns.tolist(),
                                  "lengths_per_seed": np.full(returns.shape, 500).tolist()}],
                        "wall_times": {"train_s": 12.0}},
            "train_curve": [{"step": 1, "loss": [1.0] * returns.shape[0]},
                            {"step": 2, "loss": [0.5] * returns.shape[0]}],
            "dataset_provenance": dict(PROV), "git_commit": "abc"}
    cell.update(extra)
    return cell


def _write(root, cells_, study="benchmark", protocol="tiny"):
    for c in cells_:
        d = os.path.join(root, study, protocol, f"{c['env']}-{c['dataset']}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"{c.get('name') or c['model']}.json"), "w") as fh:
            json.dump(c, fh)


def _two_tasks(seed=0):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(60, 10, size=(3, 8)), rng.normal(40, 10, size=(3, 8))
    return a, b, [_cell("hopper", "medium", "s4dm", a, 100),
                  _cell("hopper", "medium", "dt", b, 700),
                  _cell("walker2d", "medium", "s4dm", a + 5, 100),
                  _cell("walker2d", "medium", "dt", b + 5, 700)]


def test_seed_level_iqm_and_intervals_match_an_independent_computation(tmp_path):
    a, b, four = _two_tasks()
    _write(str(tmp_path), four + [{"status": "missing", "env": "walker2d",
                                   "dataset": "medium-replay", "model": "dt",
                                   "reason": "dataset missing"}])
    chosen = cells.select(cells.load_cells(str(tmp_path), protocol="tiny"), "benchmark", "tiny")
    assert (len(chosen.accepted), len(chosen.missing), chosen.excluded) == (4, 1, [])
    table, rows = tables.cell_table(chosen.accepted + chosen.missing, "tiny", reps=500)
    row = next(r for r in rows if r.get("model") == "s4dm" and r["env"] == "hopper")
    # runs are seeds: the IQM of 3 per-seed means (int(3/4) = 0 cut: their mean)
    np.testing.assert_allclose(row["iqm"], sps.trim_mean(a.mean(axis=1), 0.25), rtol=1e-12)
    np.testing.assert_allclose(row["std"], a.mean(axis=1).std(), rtol=1e-12)
    lo, hi = row["ci"]
    # resampling 3 seeds: the interval reaches the lowest and highest seed means
    assert lo == pytest.approx(a.mean(axis=1).min()) and hi == pytest.approx(
        a.mean(axis=1).max())
    assert row["transitions"] == (1280.0, "64 x 20 windows") and row["best"] == "last only"
    assert "not run: dataset missing" in table
    text, agg = tables.aggregate_table(chosen.accepted, "tiny", reps=500)
    both = np.concatenate([a.mean(axis=1), (a + 5).mean(axis=1)])
    np.testing.assert_allclose(agg["iqm"]["s4dm"][0], sps.trim_mean(both, 0.25), rtol=1e-12)
    p, (plo, phi) = agg["poi"]["s4dm,dt"]
    per_task = [np.mean([[x > y for y in b.mean(axis=1)] for x in a.mean(axis=1)])] * 2
    assert p == pytest.approx(np.mean(per_task)) and plo <= p <= phi
    md = report.write_report(str(tmp_path), str(tmp_path / "out"), protocol="tiny", reps=200)
    assert ("S4DM's parameters against DT's, per environment: hopper 100 vs 700, 14.3% (86% "
            "fewer); walker2d 100 vs 700, 14.3% (86% fewer).") in md
    assert "tuned on" in md and "Tuning budget per model" in md and "optimality gap" in md
    for name in ("report.md", "aggregate.png", "aggregate_poi.png", "curves.png",
                 "score_vs_params.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_report_regenerates_byte_identical_and_intervals_ignore_other_models(tmp_path):
    a, b, four = _two_tasks(1)
    _write(str(tmp_path), four)
    outs = []
    for global_seed in (1, 2):
        np.random.seed(global_seed)
        report.write_report(str(tmp_path), str(tmp_path / f"out{global_seed}"),
                            protocol="tiny", reps=300)
        after = np.random.random()  # the caller's global stream is left where it was
        np.random.seed(global_seed)
        assert after == np.random.random()
        outs.append((tmp_path / f"out{global_seed}" / "report.md").read_bytes())
    assert outs[0] == outs[1]
    loaded = cells.load_cells(str(tmp_path), protocol="tiny")
    base_text, base = tables.aggregate_table(loaded, "tiny", reps=300)
    rng = np.random.default_rng(9)
    bc = [_cell(e, "medium", "bc", rng.normal(30, 5, size=(3, 8)), 70)
          for e in ("hopper", "walker2d")]
    more_text, more = tables.aggregate_table(bc + loaded[::-1], "tiny", reps=300)
    assert more["iqm"]["s4dm"] == base["iqm"]["s4dm"] and more["iqm"]["dt"] == base["iqm"]["dt"]
    assert more["poi"]["s4dm,dt"] == base["poi"]["s4dm,dt"]
    s4dm_line = next(line for line in base_text.splitlines() if line.startswith("| S4DM"))
    assert s4dm_line in more_text
    rows = tables.cell_table(loaded, "tiny", reps=300)[1]
    assert tables.cell_table(loaded[:1], "tiny", reps=300)[1][0] == rows[0]


def test_cells_that_do_not_match_the_protocol_are_excluded_with_their_reason(tmp_path):
    """Against the registered `quick` protocol: a cell of another protocol, an override run,
    a changed config, no provenance; the committed grid's cells pass."""
    with open(os.path.join(ROOT, "results", "benchmark", "quick-tuned", "hopper-medium",
                           "dt.json")) as fh:
        real = json.load(fh)
    real["_path"] = "benchmark/quick-tuned/hopper-medium/dt.json"
    ok = cells.select([real], "benchmark", "quick-tuned")
    assert len(ok.accepted) == 1 and not ok.excluded
    override = {**real, "name": "dt-set-1234", "overrides": {"num_steps": 4},
                "_path": "x/dt-set-1234.json"}
    changed = json.loads(json.dumps(real))
    changed["config"]["optim"]["learning_rate"] = 0.5
    changed["_path"] = "x/changed.json"
    changed["env"] = "walker2d"  # another key, so not a duplicate
    bare = {**real, "dataset_provenance": {}, "env": "halfcheetah", "_path": "x/bare.json"}
    other = {**real, "dataset": "medium-replay", "_path": "x/other.json"}
    got = cells.select([override, changed, bare, other], "benchmark", "quick-tuned")
    reasons = dict(got.excluded)
    assert not got.accepted
    assert "no cell of the benchmark study (an override run?)" in reasons["x/dt-set-1234.json"]
    assert "optim.learning_rate: 0.5 -> 0.001" in reasons["x/changed.json"]
    assert reasons["x/bare.json"] == "no dataset provenance recorded"
    assert reasons["x/other.json"].startswith("config differs")  # another dataset's preset
    tampered = {**real, "config_hash": "0" * 16}
    assert "config_hash" in cells.check_cell(tampered, "benchmark", "quick-tuned")
    assert cells.check_cell(real, "benchmark", "quick") == "protocol 'quick-tuned', not 'quick'"
    assert "Excluded" in cells.excluded_section(got.excluded)
    with pytest.raises(ValueError, match="duplicate cell"):
        cells.select([real, dict(real, _path="again.json")], "benchmark", "quick-tuned")


def test_aggregates_refuse_mixed_realisations_and_unequal_runs():
    a, b, four = _two_tasks(2)
    four[1]["dataset_provenance"] = {**PROV, "dataset_episodes": 110}  # hopper DT: other data
    text, agg = tables.aggregate_table(four, "tiny", reps=100)
    assert agg["tasks"] == [("walker2d", "medium")]
    assert "Refused from the aggregate: hopper-medium (mixed data realisations" in text
    short = _cell("walker2d", "medium", "dt", b[:2], 700)
    with pytest.raises(ValueError, match="unequal seeds x episodes"):
        tables.score_arrays([four[2], short], 0)
    with pytest.raises(ValueError, match="duplicate cell"):
        tables.score_arrays([four[0], four[0]], 0)


def test_collapsed_seeds_and_best_during_training_are_reported():
    rng = np.random.default_rng(3)
    cell = _cell("hopper", "medium", "dt", rng.normal(40, 5, size=(3, 4)), 700)
    lengths = np.full((3, 4), 500)
    lengths[1] = [13, 14, 13, 50]  # every episode of seed 1 ends within 5% of 1000 steps
    cell["results"]["eval"][0]["lengths_per_seed"] = lengths.tolist()
    assert cells.collapsed_seeds(cell) == [1]
    lengths[1, 3] = 51
    cell["results"]["eval"][0]["lengths_per_seed"] = lengths.tolist()
    assert cells.collapsed_seeds(cell) == []
    assert cells.best_during_training(cell) is None
    early = np.full((1, 3, 4), 90.0)  # [targets, seeds, episodes]
    cell["train_curve"][0]["eval"] = {"target_returns": [3600.0],
                                      "returns_per_seed": early.tolist()}
    assert cells.best_during_training(cell) == (90.0, 1)
    s4 = _cell("hopper", "medium", "s4dm", np.ones((3, 2)), 1,
               config={"batch_size": 16, "episode_start_windows": True,
                       "model": {"name": "s4dm", "context_len": 1000}})
    assert cells.transitions_per_step(s4) == (16 * 500, "16 episodes x 500 (mean)")


def test_report_lists_every_grid_cell_and_why_unrun_ones_are_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(tables.grid, "dataset_available",
                        lambda spec: spec.startswith("s4dm/hopper/"))
    a = np.random.default_rng(2).normal(40, 5, size=(3, 8))
    _write(str(tmp_path), [_cell("hopper", "medium", "s4dm", a, 100)])
    md = report.write_report(str(tmp_path), str(tmp_path / "out"), protocol="tiny", reps=100)
    width = tables.CELL_HEAD.count(" | ")
    rows = [line for line in md.splitlines()
            if line.startswith("| ") and "-medium" in line and line.count(" | ") == width]
    assert len({tuple(line.split(" | ")[:2]) for line in rows}) == 24
    assert "| hopper-medium | DT | - |" in md and "not run yet (compute)" in md
    assert "not run yet: dataset s4dm/walker2d/medium-replay-v0 not generated here" in md
    command = "python -m s4dm_jax.data.collect --env walker2d --dataset medium-replay --seed 0"
    assert f"\n{command}\n" in md


def test_datasets_table_and_the_in_data_target():
    a = np.random.default_rng(3).normal(40, 5, size=(3, 4))
    cell = _cell("hopper", "medium", "s4dm", a, 100)
    cell["results"]["dataset"].update(ref_min_score=-10.0, ref_max_score=190.0, episodes=2536,
                                      transitions=1_000_000)
    cell["dataset_provenance"] = {"dataset_return_mean": 1229.8, "dataset_return_std": 12.5,
                                  "dataset_return_max": 3274.4}
    bare = _cell("walker2d", "medium", "dt", a, 700, dataset_provenance={})
    lines = tables.dataset_table([cell, bare]).splitlines()
    # (1229.8 + 10) / 200 * 100 = 619.9; the in-data target: the best return, rounded
    assert lines[2] == "| hopper-medium | 2,536 | 1,000,000 | 1229.8 +- 12.5 | 619.9 | 3274 |"
    assert lines[3] == "| walker2d-medium | 10 | 5,000 | - | - | - |"
    targets = {"env": "hopper", "dataset": "medium", "model": "s4dm", "variant": None,
               "targets": [900.0, 3000.0, 5000.0], "normalized_mean": [5.0, 14.0, 20.0]}
    scores = tables.in_data_scores([cell, bare], [targets])
    text = tables.in_data_table(scores)
    assert "| hopper-medium | S4DM | 3274 | 3000 | 14.0 | targets file |" in text
    assert "| walker2d-medium | DT | - | - | not run | - |" in text
    assert tables.in_data_labels(scores) == {("hopper", "medium", "s4dm"): "14.0 at 3000",
                                             ("walker2d", "medium", "dt"): "not run"}
    rows = tables.cell_rows([cell, bare], "tiny", reps=50)
    summary = tables.summary_table(rows, tables.in_data_labels(scores))
    assert "| hopper-medium | in-data | 14.0 at 3000 | - |" in summary
    assert "| S4DM | 1,280 (64 x 20 windows) | - |" in summary
    assert cells.mixed_data([cell, _cell("hopper", "medium", "dt", a, 7)]) == [
        "hopper-medium dt: mean return 50.0 vs 1229.8 (against s4dm)"]


def test_ablations_report_puts_variants_beside_their_grid_cells(tmp_path):
    rng = np.random.default_rng(1)
    grid_scores, delayed = rng.normal(50, 5, size=(3, 6)), rng.normal(30, 5, size=(3, 6))
    base = _cell("hopper", "medium", "s4dm", grid_scores, 100)
    _write(str(tmp_path), [base])
    variant = _cell("hopper", "medium", "s4dm", delayed, 100, study="ablations",
                    name="s4dm-delayed", overrides={"delayed_reward": True},
                    dataset_provenance={"dataset_episodes": 110, "dataset_return_mean": 52.0})
    low = rng.normal(70, 5, size=(3, 6))  # a target the grid cell was not evaluated at
    variant["results"]["eval"].append({"target_return": 1800.0,
                                       "returns_per_seed": low.tolist()})
    targets = {"study": "ablations", "ablation": "targets", "env": "hopper",
               "dataset": "medium", "model": "s4dm", "variant": None, "status": "finished",
               "protocol": "tiny", "targets": [900.0, 1800.0],
               "achieved_per_seed": [[100.0, 200.0, 300.0], [400.0, 500.0, 600.0]],
               "achieved_mean": [200.0, 500.0], "normalized_mean": [5.0, 14.0],
               "trained_steps": 10, "name": "s4dm-targets"}
    _write(str(tmp_path), [variant, targets], study="ablations")
    md = report.write_report(str(tmp_path), str(tmp_path / "out"), study="ablations",
                             protocol="tiny", reps=200)
    _, rows = ablation_tables.variants_table([variant], [base], reps=200)
    row, row_low = rows
    np.testing.assert_allclose(row["iqm"], stats.iqm(delayed.mean(axis=1)[:, None]))
    np.testing.assert_allclose(row["grid_iqm"], stats.iqm(grid_scores.mean(axis=1)[:, None]))
    assert "grid_iqm" not in row_low
    assert row["data"] == "no (episodes 110 vs 100; mean return 52.0 vs 50.0)" and row["data"] in md
    assert f"{delayed.mean() - grid_scores.mean():+.1f}" in md and "delayed_reward=True" in md
    assert ("| hopper-medium | S4DM | 1800 | 500 +- 82 | 14.0 | unchecked (file predates the "
            "record) |") in md
    assert (tmp_path / "out" / "targets.png").stat().st_size > 0


def test_committed_results_are_all_accepted_and_regenerate(tmp_path):
    for study in ("benchmark", "ablations"):
        for protocol in ("quick", "quick-tuned"):
            chosen = cells.select(cells.load_cells(os.path.join(ROOT, "results"), study,
                                                   protocol), study, protocol)
            assert chosen.accepted and not chosen.excluded, chosen.excluded


def test_latency_section_and_score_vs_params(tmp_path, monkeypatch):
    bench = {"meta": {"device": "cpu:0"}, "rows": [
        {"model": m, "length": n, "batch": b, "us_per_step": us}
        for m, per in (("dt", {20: 800.0, 1000: 340000.0}), ("s4dm", {20: 210.0, 1000: 180.0}))
        for n, us in per.items() for b in (1, 10)]}
    text = figures.latency_section(bench, str(tmp_path / "latency.png"))
    assert "| S4DM | 0.21 | 0.18 |" in text and "| DT | 0.8 | 340 |" in text
    assert figures.latency_section({"rows": []}, str(tmp_path / "none.png")) == ""
    monkeypatch.setattr(figures.plt, "close", lambda fig=None: None)  # keep the figure to read
    rows = [{"env": e, "dataset": d, "model": m, "params": p, "iqm": s}
            for e, d in (("hopper", "medium"), ("halfcheetah", "medium-replay"))
            for m, p, s in (("s4dm", 100, 30.0), ("dt", 700, 20.0), ("bc", 70, 10.0))]
    figures.plot_score_vs_params(rows, str(tmp_path / "f.png"))
    ax = figures.plt.gcf().axes[0]
    colours = [tuple(c.get_facecolor()[0]) for c in ax.collections]
    assert colours[:3] == colours[3:] == [to_rgba(figures.MODEL_COLOURS[m])
                                          for m in ("s4dm", "dt", "bc")]
    assert [t.get_text() for t in ax.texts] == ["ho-m"] * 3 + ["hc-mr"] * 3
    figures.plt.close("all")


def test_score_during_training_tabulates_each_evaluated_step(tmp_path):
    rng = np.random.default_rng(2)
    early, final = rng.normal(20, 5, size=(2, 3, 4)), rng.normal(40, 5, size=(3, 4))
    cell = _cell("hopper", "medium", "dt", final, 700, name="dt-steps5000")
    cell["results"]["trained_steps"] = 2000
    cell["train_curve"][0]["eval"] = {"target_returns": [3600.0, 1800.0],
                                      "returns_per_seed": early.tolist()}
    plain = _cell("hopper", "medium", "s4dm", final, 100)
    text, rows = ablation_tables.training_eval_table([cell, plain], reps=200)
    assert [(r["step"], r["target"]) for r in rows] == [(1, 3600.0), (1, 1800.0),
                                                        (2000, 3600.0)]
    for r, x in zip(rows, [early[0], early[1], final], strict=True):
        np.testing.assert_allclose(r["iqm"], x.mean(axis=1).mean(), rtol=1e-12)
        assert r["ci"][0] <= r["iqm"] <= r["ci"][1] and r["variant"] == "dt-steps5000"
    figures.plot_training_eval(rows, str(tmp_path / "during.png"))
    assert (tmp_path / "during.png").stat().st_size > 0
    assert ablation_tables.training_eval_table([plain])[1] == []
    assert grid.tuned_on("tiny", "dt")[0] == "-"
