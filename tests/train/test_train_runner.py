"""End-to-end runner tests on the embedded dataset: train, checkpoint, resume, evaluate."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from runner_configs import ROOT, tiny_config

from s4dm_jax.data import load_dataset
from s4dm_jax.train import checkpoint
from s4dm_jax.train.history import read_history
from s4dm_jax.train.trainer import ConfigError, TrainingDivergedError, train_and_evaluate


def _params_of_latest(workdir):
    from s4dm_jax.train.trainer import build, init_run_state

    with open(os.path.join(workdir, "results.json")) as f:
        import ml_collections

        config = ml_collections.ConfigDict(json.load(f)["config"])
    _, _, model = build(config)
    state = init_run_state(config, model)
    manager = checkpoint.open_manager(workdir, 3)
    restored = checkpoint.restore_latest(manager, state, workdir)
    manager.close()
    return restored.state, restored.step


@pytest.mark.parametrize("model", ["s4dm", "dt", "mamba", "bc"])
def test_end_to_end_each_model(model, tmp_path):
    workdir = str(tmp_path / "run")
    results = train_and_evaluate(tiny_config(model), workdir, show_progress=False)
    for name in ("results.json", "results.md", "curves.png", "run_config.json"):
        assert os.path.exists(os.path.join(workdir, name)), name
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
    assert any(f.startswith("events.out.tfevents")
               for f in os.listdir(os.path.join(workdir, "tensorboard")))
    with open(os.path.join(workdir, "results.json")) as f:
        saved = json.load(f)
    assert saved == json.loads(json.dumps(results))
    (entry,) = saved["eval"]
    returns = np.asarray(entry["returns_per_seed"])
    assert returns.shape == (1, 1) and np.isfinite(returns).all()
    assert 1 <= entry["lengths_per_seed"][0][0] <= 15
    assert np.isfinite(entry["normalized_score"])
    assert saved["num_params"] > 0 and saved["model"] == model
    assert np.isfinite(saved["final_train_loss_per_seed"]).all()


def test_resume_continues_exactly_where_the_interrupted_run_stopped(tmp_path):
    full = str(tmp_path / "full")
    train_and_evaluate(tiny_config("bc", num_steps=6), full, show_progress=False)
    # "interrupted" after 4 steps (checkpoint at 4), then restarted with the full budget
    part = str(tmp_path / "part")
    train_and_evaluate(tiny_config("bc", num_steps=4), part, show_progress=False)
    train_and_evaluate(tiny_config("bc", num_steps=6), part, show_progress=False)
    (a, step_a), (b, step_b) = _params_of_latest(full), _params_of_latest(part)
    assert step_a == step_b == 6
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert [h["step"] for h in read_history(part)] == [2, 4, 6]
    assert [h["loss"] for h in read_history(part)] == [h["loss"] for h in read_history(full)]


def test_periodic_evaluation_is_recorded_as_the_shorter_runs_result(tmp_path):
    # eval.every=3 is not a log step (log_every=2): the record still gets a step-3 entry whose
    # evaluation is the one a 3-step run of the same seeds reports as its result
    over = {"seeds": 2, "eval.episodes": 2, "eval.target_returns": [1800.0, 900.0]}
    longer = str(tmp_path / "longer")
    train_and_evaluate(tiny_config("bc", num_steps=6, **{"eval.every": 3}, **over), longer,
                       show_progress=False)
    shorter = train_and_evaluate(tiny_config("bc", num_steps=3, **over), str(tmp_path / "short"),
                                 show_progress=False)
    record = read_history(longer)
    assert [h["step"] for h in record] == [2, 3, 4, 6]
    assert [("eval" in h) for h in record] == [False, True, False, False]
    periodic = record[1]["eval"]
    assert periodic["target_returns"] == [1800.0, 900.0]
    assert np.asarray(periodic["returns_per_seed"]).shape == (2, 2, 2)  # [T, S, E]
    np.testing.assert_array_equal(periodic["returns_per_seed"],
                                  [e["returns_per_seed"] for e in shorter["eval"]])


def test_workdir_of_another_run_is_refused_and_left_intact(tmp_path):
    workdir = str(tmp_path / "run")
    train_and_evaluate(tiny_config("bc", num_steps=2), workdir, show_progress=False)
    before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    with pytest.raises(checkpoint.CheckpointMismatchError, match="different model"):
        train_and_evaluate(tiny_config("dt", num_steps=2), workdir, show_progress=False)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before


def _write_embedded_as_d4rl(path, action_scale=1.0):
    """The embedded dataset's arrays as a D4RL hdf5 file, actions multiplied by `action_scale`."""
    import h5py

    ds = load_dataset("embedded")
    with h5py.File(path, "w") as f:
        f.create_dataset("observations", data=ds.observations)
        f.create_dataset("actions", data=ds.actions * np.float32(action_scale))
        f.create_dataset("rewards", data=ds.rewards)
        f.create_dataset("terminals", data=ds.terminals)
        f.create_dataset("timeouts", data=ds.timeouts)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    workdir = str(tmp_path / "run")
    data = str(tmp_path / "hopper-custom.hdf5")
    _write_embedded_as_d4rl(data)
    train_and_evaluate(tiny_config("bc", num_steps=2, dataset=data), workdir, show_progress=False)
    with open(os.path.join(workdir, "results.json")) as f:
        first_results = f.read()
    # Same config (so it resumes), but actions of 1e20 make the BC loss overflow at step 3.
    _write_embedded_as_d4rl(data, action_scale=1e20)
    with pytest.raises(TrainingDivergedError, match=r"step 3 .*last good checkpoint \(step 2\)"):
        train_and_evaluate(tiny_config("bc", num_steps=8, dataset=data), workdir,
                           show_progress=False)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2"]
    with open(os.path.join(workdir, "results.json")) as f:
        assert f.read() == first_results  # earlier results are not overwritten


def test_divergence_before_any_checkpoint_says_none_exists(tmp_path):
    workdir = str(tmp_path / "run")
    config = tiny_config("bc", num_steps=8, checkpoint_every=4)
    config.optim.learning_rate = 1e38  # params overflow to inf within a step or two
    config.optim.grad_clip = 1e38
    with pytest.raises(TrainingDivergedError, match="No checkpoint had been written yet") as err:
        train_and_evaluate(config, workdir, show_progress=False)
    assert "step 0" not in str(err.value)
    assert checkpoint.saved_steps(workdir) == []


def test_bad_config_fields_get_clear_errors(tmp_path):
    workdir = str(tmp_path / "run")
    config = tiny_config("dt")
    config.model.not_a_field = 3
    with pytest.raises(ConfigError, match="not_a_field"):
        train_and_evaluate(config, workdir, show_progress=False)
    with pytest.raises(ConfigError, match="batch_size"):
        train_and_evaluate(tiny_config("dt", batch_size=0), workdir, show_progress=False)
    with pytest.raises(ConfigError, match="records_dir is for evaluate_only runs"):
        train_and_evaluate(tiny_config("dt"), workdir, show_progress=False,
                           records_dir=str(tmp_path / "records"))
    # nothing written for an invalid config
    assert not os.path.exists(workdir) and not os.path.exists(tmp_path / "records")


def test_command_line_runs_and_reports_bad_dataset_without_traceback(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    ok = subprocess.run(
        [sys.executable, "-m", "s4dm_jax.main", f"--config={ROOT}/configs/bc.py",
         f"--workdir={tmp_path / 'cli'}", "--config.num_steps=2", "--config.steps_per_call=2",
         "--config.batch_size=8", "--config.eval.episodes=1", "--config.eval.max_episode_steps=5",
         "--noprogress"],
        capture_output=True, text=True, env=env, timeout=300, cwd=str(tmp_path))
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "results.json" in ok.stdout and "tensorboard --logdir" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "s4dm_jax.main", f"--config={ROOT}/configs/bc.py",
         f"--workdir={tmp_path / 'bad'}", "--config.dataset=/nonexistent/hopper-medium-v2.hdf5"],
        capture_output=True, text=True, env=env, timeout=120, cwd=str(tmp_path))
    assert bad.returncode == 1
    assert "/nonexistent/hopper-medium-v2.hdf5" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / "bad").exists()
