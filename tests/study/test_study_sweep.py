"""A tiny S4DM sweep through the same code path (experiments/sweep.py, submitit local
executor): shape jobs, vmapped learning rates, the tables and the heat maps."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from runner_configs import ROOT

from s4dm_jax.study import grid, sweep


@pytest.mark.parametrize("env,dt_params", [("hopper", 726_019), ("halfcheetah", 727_558)])
def test_preset_param_count_of_dt(env, dt_params):
    # the hand-derived counts of tests/models/test_models_params.py (README's table)
    assert grid.preset_param_count("dt", env, "medium") == dt_params


def _row(n, lr, seed, score, second):
    return {"env": "hopper", "dataset": "medium", "d_state": n, "n_layers": 4, "d_model": 18,
            "token_layout": "step", "learning_rate": lr, "seed": seed, "params": 1000,
            "dt_params": 8000, "score": score, "score_target2": second,
            "selection": (score + second) / 2, "final_loss": 0.1}


def test_summary_groups_seeds_per_shape_and_learning_rate():
    rows = [_row(64, 1e-3, 0, 10.0, 1.0), _row(64, 1e-3, 1, 20.0, 3.0),
            _row(64, 3e-3, 0, 30.0, 5.0), _row(128, 1e-3, 0, 12.0, 27.0),
            _row(128, 1e-3, 1, 16.0, 29.0)]
    entries = sweep.summary(rows)
    # ranked by the mean of the two targets: 21.0, 17.5, 8.5 (at the first target alone the
    # order would be 30, 15, 14)
    assert [(e["d_state"], e["learning_rate"], e["seeds"]) for e in entries] == [
        (128, 1e-3, 2), (64, 3e-3, 1), (64, 1e-3, 2)]
    e = entries[2]
    assert e["mean"] == 15.0 and e["std"] == pytest.approx(np.std([10.0, 20.0]))
    assert e["mean_target2"] == 2.0 and e["std_target2"] == 1.0
    assert e["selection"] == 8.5 and e["selection_std"] == pytest.approx(3.0)
    md = sweep.summary_table(entries)
    assert "| hopper-medium | 64 | 4 | 18 | step | 0.001 | 1,000 | 12.5 | 2 | 15.0 +- 5.0 | " \
           "2.0 +- 1.0 | 8.5 +- 3.0 |" in md


def test_sweep_jobs_cover_the_shape_grid():
    todo = sweep.jobs({"d_state": (8, 16), "n_layers": (1, 2), "learning_rate": (1e-3, 3e-3)})
    assert [name for name, _ in todo] == ["s4dm-N8-L1-H18-step", "s4dm-N8-L2-H18-step",
                                          "s4dm-N16-L1-H18-step", "s4dm-N16-L2-H18-step"]
    assert all(o["sweep.learning_rate"] == (1e-3, 3e-3) for _, o in todo)


def test_tiny_sweep_runs_through_the_local_executor(tmp_path):
    cmd = [sys.executable, os.path.join(ROOT, "experiments", "sweep.py"), "--lr", "1e-3",
           "3e-3", "--d-state", "8", "16", "--layers", "1", "--width", "8",
           "--results", str(tmp_path / "res"), "--runs", str(tmp_path / "runs"),
           "--compilation-cache", "", "--set", "dataset=embedded", "num_steps=2",
           "steps_per_call=2", "batch_size=4", "eval.episodes=1", "eval.max_episode_steps=10",
           "eval.target_returns=(1800.0,)"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cell = json.loads((tmp_path / "res" / "sweep" / "sweep" / "hopper-medium" /
                       "s4dm-N16-L1-H8-step.json").read_text())
    assert [t["learning_rate"] for t in cell["results"]["trials"]] == [1e-3, 3e-3]
    assert cell["config"]["model"]["ssm"]["d_state"] == 16
    rows = sweep.rows(str(tmp_path / "res"), "sweep")
    assert len(rows) == 4 and {r["d_state"] for r in rows} == {8, 16}
    report_dir = tmp_path / "res" / "sweep" / "sweep" / "report"
    assert (report_dir / "sweep_heatmaps.png").stat().st_size > 0
    text = (report_dir / "sweep.md").read_text()
    assert "| hopper-medium | 16 | 1 | 8 | step | 0.001 |" in text  # summary and every trial
    share = 100 * cell["results"]["num_params"] / grid.preset_param_count("dt", "hopper")
    assert f"| {cell['results']['num_params']:,} | {share:.1f} | 1 |" in text
