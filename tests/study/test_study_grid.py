"""The benchmark launcher: cells, results layout, skipping, missing datasets, submitit jobs."""

import json
import math
import os
import subprocess
import sys

from runner_configs import ROOT

from s4dm_jax.study import grid, jobs, references

TINY = {"dataset": "embedded", "num_steps": 2, "steps_per_call": 2, "eval.episodes": 1,
        "eval.max_episode_steps": 10, "eval.target_returns": [1800.0], "batch_size": 8,
        "model.hidden_dims": (16, 16)}
PROTO = grid.Protocol("tiny", num_steps=2, warmup_steps=1, eval_episodes=1, seeds=2,
                      description="test")


def test_cell_config_applies_the_protocol_to_the_preset():
    c = grid.cell_config("dt", "walker2d", "medium-replay", grid.PROTOCOLS["quick"])
    assert c.dataset == "s4dm/walker2d/medium-replay-v0"
    assert (c.num_steps, c.optim.warmup_steps, c.eval.episodes, c.seeds) == (1000, 100, 10, 3)
    assert c.model.name == "dt" and c.batch_size == 64 and c.model.context_len == 20
    assert list(c.eval.target_returns) == [5000.0, 2500.0]
    full = grid.cell_config("s4dm", "hopper", "medium", grid.PROTOCOLS["full"],
                            {"model.ssm.d_state": 64})
    assert full.num_steps == 100_000 and full.eval.episodes == 100 and full.batch_size == 16
    assert full.model.ssm.d_state == 64


def test_missing_dataset_cell_records_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "store"))
    out = grid.run_cell(grid.CellSpec("bc", "hopper", "medium", PROTO),
                        results_root=str(tmp_path / "res"), runs_root=str(tmp_path / "runs"))
    assert out["status"] == "missing"
    assert "s4dm_jax.data.collect --env hopper --dataset medium" in out["command"]
    path = tmp_path / "res" / "benchmark" / "tiny" / "hopper-medium" / "bc.missing.json"
    assert json.loads(path.read_text())["status"] == "missing"
    assert grid.missing_datasets(["hopper"], ["medium", "medium-replay"]) == [
        ("hopper", "medium-replay"), ("hopper", "medium")]


def test_finished_cell_is_written_once_and_skipped(tmp_path):
    kw = dict(results_root=str(tmp_path / "res"), runs_root=str(tmp_path / "runs"),
              show_progress=False)
    spec = grid.CellSpec("bc", "hopper", "medium", PROTO, overrides=TINY)
    out = grid.run_cell(spec, **kw)
    assert out["status"] == "finished"
    path = tmp_path / "res" / "benchmark" / "tiny" / "hopper-medium" / "bc.json"
    stored = json.loads(path.read_text())
    assert stored["results"]["seeds"] == [0, 1]
    returns = stored["results"]["eval"][0]["returns_per_seed"]
    assert len(returns) == 2 and len(returns[0]) == 1  # seeds x episodes
    assert stored["protocol"]["name"] == "tiny" and stored["config"]["num_steps"] == 2
    # the record a report validates: protocol, config and its hash, overrides, commit
    assert stored["config_hash"] == grid.config_hash(stored["config"])
    assert stored["overrides"] == TINY | {"model.hidden_dims": [16, 16]}
    assert "git_commit" in stored and "dataset_provenance" in stored
    mtime = os.path.getmtime(path)
    again = grid.run_cell(spec, **kw)  # skipped: nothing rewritten
    assert again == stored and os.path.getmtime(path) == mtime
    # the same cell under another config (e.g. a changed preset) is not passed off as the
    # stored one, and the stored file is kept as it was
    stale = grid.run_cell(grid.CellSpec("bc", "hopper", "medium", PROTO, overrides={
        **TINY, "optim.learning_rate": 0.5}), **kw)
    assert stale["status"] == "stale" and "optim.learning_rate: 0.001 -> 0.5" in stale["reason"]
    assert grid.outcome(stale).startswith("stale: ") and grid.outcome(stored) == "finished"
    assert json.loads(path.read_text()) == stored and os.path.getmtime(path) == mtime


def test_config_changes_names_changed_fields_and_tolerates_fields_added_later():
    stored = {"model": {"d_state": 256, "layers": (4, 4)}, "seeds": 3}
    now = {"model": {"d_state": 64, "layers": [4, 4], "compute_dtype": "float32"}, "seeds": 3}
    assert grid.config_changes(stored, now) == ["model.d_state: 256 -> 64"]
    assert grid.config_changes(now, now) == []


def test_jobs_run_through_submitit_local_and_debug(tmp_path):
    # a function the job process can import (a test module's would not be on its path)
    for executor in ("debug", "local"):
        out = jobs.run_jobs(math.factorial, [(3,), (4,)], executor=executor,
                            folder=str(tmp_path / executor))
        assert out == [6, 24]


def test_launcher_command_runs_a_tiny_full_protocol_cell(tmp_path):
    """The `full` protocol's command, at tiny scale, through the submitit local executor."""
    cmd = [sys.executable, os.path.join(ROOT, "experiments", "benchmark.py"), "--protocol",
           "full", "--envs", "hopper", "--datasets", "medium", "--models", "bc",
           "--results", str(tmp_path / "res"), "--runs", str(tmp_path / "runs"),
           "--compilation-cache", "", "--set", "dataset=embedded", "num_steps=2",
           "steps_per_call=2", "eval.episodes=1", "eval.max_episode_steps=10", "seeds=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "hopper-medium bc: finished" in proc.stdout
    # an override run (--set) has its own variant file, never the protocol's cell
    folder = tmp_path / "res" / "benchmark" / "full" / "hopper-medium"
    (path,) = folder.glob("bc-set-*.json")
    assert not (folder / "bc.json").exists()
    cell = json.loads(path.read_text())
    assert cell["protocol"]["eval_episodes"] == 100 and cell["config"]["eval"]["episodes"] == 1
    assert cell["overrides"]["num_steps"] == 2 and cell["name"] == path.stem


def test_cell_made_on_other_data_is_stale_and_kept(tmp_path, monkeypatch):
    """A stored cell whose generator record differs from the dataset now in the store (the
    same command regenerated on another host) is not reused; its file stays as it was."""
    from s4dm_jax.data import collect

    monkeypatch.chdir(tmp_path)  # mujoco may write MUJOCO_LOG.TXT into the cwd
    store = tmp_path / "store"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))
    collect.main(["--env", "hopper", "--dataset", "random", "--steps", "300", "--seed", "0",
                  "--ref-episodes", "2", "--no-progress"])
    kw = dict(results_root=str(tmp_path / "res"), runs_root=str(tmp_path / "runs"),
              show_progress=False)
    spec = grid.CellSpec("bc", "hopper", "medium", PROTO,
                         overrides={**TINY, "dataset": "s4dm/hopper/random-v0"})
    stored = grid.run_cell(spec, **kw)
    assert stored["status"] == "finished"
    assert stored["dataset_provenance"]["dataset_steps"] == 300
    path = tmp_path / "res" / "benchmark" / "tiny" / "hopper-medium" / "bc.json"
    reused = grid.run_cell(spec, **kw)  # same data: reused
    assert reused == json.loads(path.read_text())
    other = json.loads(path.read_text())
    other["dataset_provenance"]["dataset_episodes"] += 10  # made on another realisation
    path.write_text(json.dumps(other))
    mtime = os.path.getmtime(path)
    stale = grid.run_cell(spec, **kw)
    n = stored["dataset_provenance"]["dataset_episodes"]
    assert stale["status"] == "stale" and f"episodes {n + 10} vs {n}" in stale["reason"]
    assert json.loads(path.read_text()) == other and os.path.getmtime(path) == mtime


def test_data_changes_compares_the_statistics_both_records_hold():
    a = {"dataset_episodes": 100, "dataset_return_mean": 2067.64, "command": "x"}
    b = {"dataset_episodes": 110, "dataset_return_mean": 2108.0, "dataset_steps": 100_000}
    assert grid.data_changes(a, b) == ["episodes 100 vs 110", "mean return 2067.6 vs 2108.0"]
    assert grid.data_changes(a, dict(a, created_utc="later")) == []
    assert grid.data_changes(a, {"command": "x"}) is None


def test_quick_tuned_protocol_gives_each_model_its_budget_settings():
    """quick-tuned = the quick budget + the settings chosen for it (the tuned ablation's
    variants; BC as preset); a cell's own overrides still come last."""
    tuned, quick = grid.PROTOCOLS["quick-tuned"], grid.PROTOCOLS["quick"]
    assert (tuned.num_steps, tuned.warmup_steps, tuned.eval_episodes, tuned.seeds) == (
        quick.num_steps, quick.warmup_steps, quick.eval_episodes, quick.seeds)
    c = grid.cell_config("s4dm", "hopper", "medium", tuned)
    assert (c.model.ssm.d_state, c.model.n_layers, c.optim.learning_rate) == (64, 8, 2e-3)
    for model in ("dt", "mamba"):  # the presets' rates: one statement, study.references
        reference = references.BASELINES[model]["preset_lr"]
        assert grid.cell_config(model, "hopper", "medium", tuned).optim.learning_rate == 1e-3
        assert grid.cell_config(model, "hopper", "medium", quick).optim.learning_rate == reference
    assert (grid.cell_config("bc", "walker2d", "medium", tuned).to_dict()
            == grid.cell_config("bc", "walker2d", "medium", quick).to_dict())
    mine = grid.cell_config("dt", "hopper", "medium", tuned, {"optim.learning_rate": 5e-4})
    assert mine.optim.learning_rate == 5e-4
    assert grid.PROTOCOLS["quick"].model_overrides == {}


def test_protocol_is_fixed_in_code_sweep_seeds_in_data_target_equal_transitions():
    """Sweeps train and evaluate on seeds disjoint from the grid's; the in-data target is the
    dataset's best episode return after the published ones; the equal-transitions protocol
    gives S4DM DT's 64 x 20 windows; each tuned model states what it was tuned on."""
    quick, sweep_ = grid.PROTOCOLS["quick"], grid.PROTOCOLS["sweep"]
    grid_seeds = set(range(quick.seed, quick.seed + 3))
    grid_env = set(range(10_000 + quick.seed, 10_000 + quick.seed + 3 * 2 * 100))
    c = grid.cell_config("s4dm", "hopper", "medium", sweep_)
    assert c.seed == grid.SWEEP_SEED and not grid_seeds & set(range(c.seed, c.seed + 3))
    assert not grid_env & set(range(10_000 + c.seed, 10_000 + c.seed + 600))
    spec = grid.CellSpec("dt", "hopper", "medium", grid.PROTOCOLS["full"])
    prov = {"dataset_return_max": 3274.38}
    assert list(spec.config(prov).eval.target_returns) == [3600.0, 1800.0, 3274.0]
    assert list(spec.config({}).eval.target_returns) == [3600.0, 1800.0]  # no record
    q = grid.CellSpec("dt", "hopper", "medium", quick)
    assert list(q.config(prov).eval.target_returns) == [3600.0, 1800.0]  # the committed rule
    eq = grid.cell_config("s4dm", "hopper", "medium", grid.PROTOCOLS["quick-equal-transitions"])
    dt = grid.cell_config("dt", "hopper", "medium", grid.PROTOCOLS["quick-equal-transitions"])
    assert (eq.batch_size * eq.model.context_len, eq.episode_start_windows) == (
        dt.batch_size * dt.model.context_len, False)
    assert (eq.model.ssm.d_state, eq.optim.learning_rate) == (64, 2e-3)  # quick-tuned's point
    assert grid.tuned_on("quick", "s4dm") == ("-", "preset, not tuned")
    assert "14 configurations" in grid.tuned_on("quick-tuned", "s4dm")[1]
    assert "2 learning rates" in grid.tuned_on("quick-tuned", "mamba")[1]
    assert grid.config_hash({"a": 1, "b": [1, 2]}) == grid.config_hash({"b": [1, 2], "a": 1})
