"""A tiny S4DM sweep through the same code path (experiments/sweep.py, submitit local
executor): shape jobs, vmapped learning rates, the table and the heat maps."""

import json
import os
import subprocess
import sys

from runner_configs import ROOT

from s4dm_jax.study import sweep


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
    assert "| 16 | 1 | 8 | step |" in (report_dir / "sweep.md").read_text()
