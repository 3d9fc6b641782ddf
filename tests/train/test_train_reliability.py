"""Reliability of training runs: `kill -9` at random moments (during training, checkpoint writes
and the final evaluation), reruns of finished and shorter runs, changed optimisers, damaged
checkpoints and bad config values. Each case checks the message and that nothing on disk was
lost or changed."""

import hashlib
import json
import os
import random

import jax
import numpy as np
import pytest
from kill_utils import python_module, run, run_and_kill_when
from runner_configs import ROOT, tiny_config

from s4dm_jax.data import DatasetError
from s4dm_jax.train import checkpoint
from s4dm_jax.train.history import read_history
from s4dm_jax.train.trainer import ConfigError, train_and_evaluate

# A BC run on the embedded dataset long enough to be killed mid-way: 60 history records,
# a checkpoint every 50 steps (12 in all), each chunk of 10 steps one compiled call.
NUM_STEPS, LOG_EVERY = 600, 10
CLI_RUN = [f"--config={ROOT}/configs/bc.py", f"--config.num_steps={NUM_STEPS}",
           "--config.steps_per_call=10", "--config.checkpoint_every=50",
           f"--config.log_every={LOG_EVERY}", "--config.batch_size=8",
           "--config.model.hidden_dims=(16,16)", "--config.eval.episodes=1",
           "--config.eval.max_episode_steps=15", "--noprogress"]


def main_cmd(workdir, *extra):
    return python_module("s4dm_jax.main", f"--workdir={workdir}", *CLI_RUN, *extra)


def snapshot(workdir) -> dict:
    """{relative path: sha256} of every file under `workdir` (what "nothing changed" means)."""
    out = {}
    for folder, _, files in os.walk(workdir):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, workdir)] = hashlib.sha256(f.read()).hexdigest()
    return out


def history_lines(workdir) -> int:
    try:
        with open(os.path.join(workdir, "train_history.jsonl")) as f:
            return sum(1 for line in f if line.endswith("\n"))
    except FileNotFoundError:
        return 0


def checkpoint_temporaries(workdir) -> set:
    """Names of orbax's temporary directories of checkpoints being written."""
    try:
        return {n for n in os.listdir(os.path.join(workdir, "checkpoints")) if "tmp" in n}
    except FileNotFoundError:
        return set()


def losses(records):
    return [(r["step"], r["loss"], r["grad_norm"], r["learning_rate"]) for r in records]


def assert_same_outcome(reference, workdir):
    """results.json (timings aside), the history's losses and curves.png equal the reference."""
    with open(os.path.join(reference, "results.json")) as f:
        want = json.load(f)
    with open(os.path.join(workdir, "results.json")) as f:
        got = json.load(f)
    want_times, got_times = want.pop("wall_times"), got.pop("wall_times")
    assert got == want
    history, ref_history = read_history(workdir), read_history(reference)
    assert losses(history) == losses(ref_history)
    assert [r["step"] for r in history] == list(range(LOG_EVERY, NUM_STEPS + 1, LOG_EVERY))
    # Train time accumulates over the segments (each step timed once, compilation apart): it
    # never restarts from 0 after a kill, and ends at the last record's value.
    train_s = [r["train_s"] for r in history]
    assert all(b > a for a, b in zip(train_s, train_s[1:], strict=False)), train_s
    assert got_times["train_s"] == pytest.approx(train_s[-1])
    assert 0.05 * want_times["train_s"] < got_times["train_s"] < 20 * want_times["train_s"]
    with open(os.path.join(reference, "curves.png"), "rb") as a, \
            open(os.path.join(workdir, "curves.png"), "rb") as b:
        assert a.read() == b.read()


def assert_record_consistent(reference, workdir):
    """After a kill: every record on disk equals the reference's record at its step."""
    ref = {r["step"]: r for r in read_history(reference)}
    for record in read_history(workdir):
        assert losses([record]) == losses([ref[record["step"]]])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every killed run is compared with."""
    base = tmp_path_factory.mktemp("reference")
    workdir = base / "run"
    done = run(main_cmd(workdir), cwd=str(base))
    assert done.returncode == 0, done.stderr[-3000:]
    return str(workdir)


def kill_during_training(workdir, cwd, rng):
    """Kill once the record has grown by a random number of entries (1..15)."""
    target = history_lines(workdir) + rng.randint(1, 15)
    rc, stderr = run_and_kill_when(main_cmd(workdir), lambda: history_lines(workdir) >= target,
                                   cwd=cwd)
    assert rc == -9, f"run ended (rc {rc}) before the kill at record {target}: {stderr[-2000:]}"


def test_kill_9_during_training_then_resume_matches_an_uninterrupted_run(reference, tmp_path):
    seed = random.randrange(2**32)
    workdir = str(tmp_path / "run")
    kill_during_training(workdir, str(tmp_path), random.Random(seed))
    assert_record_consistent(reference, workdir)
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    steps = checkpoint.saved_steps(workdir)
    done = run(main_cmd(workdir), cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    if steps:
        assert f"Resuming from checkpoint at step {steps[-1]}" in done.stdout, f"seed {seed}"
    assert_same_outcome(reference, workdir)


@pytest.mark.slow
def test_five_kills_during_training_checkpoint_writes_and_evaluation(reference, tmp_path):
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    workdir, cwd = str(tmp_path / "run"), str(tmp_path)
    kill_during_training(workdir, cwd, rng)
    assert_record_consistent(reference, workdir)
    for _ in range(2):
        kill_during_training(workdir, cwd, rng)
        assert_record_consistent(reference, workdir)
    # during a checkpoint write (a new orbax temporary directory exists)
    leftovers = checkpoint_temporaries(workdir)
    rc, _ = run_and_kill_when(main_cmd(workdir),
                              lambda: checkpoint_temporaries(workdir) - leftovers,
                              cwd=cwd, poll_s=0.0005)
    assert rc == -9, f"kill seed {seed}"
    assert_record_consistent(reference, workdir)
    # after the last step: during the final checkpoint, evaluation or results writing
    rc, _ = run_and_kill_when(main_cmd(workdir),
                              lambda: history_lines(workdir) >= NUM_STEPS // LOG_EVERY, cwd=cwd)
    assert rc in (-9, 0), f"kill seed {seed}"
    assert_record_consistent(reference, workdir)
    done = run(main_cmd(workdir), cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert_same_outcome(reference, workdir)


# ----------------------------------------------------------------------------- reruns


@pytest.fixture
def finished(tmp_path):
    """A finished 4-step BC run (checkpoints at 2 and 4) and its snapshot."""
    workdir = str(tmp_path / "run")
    results = train_and_evaluate(tiny_config("bc"), workdir, show_progress=False)
    return workdir, results, snapshot(workdir)


def test_rerun_of_a_finished_run_reports_the_stored_results_unchanged(finished, capsys):
    workdir, results, before = finished
    again = train_and_evaluate(tiny_config("bc"), workdir, show_progress=False)
    assert again == json.loads(json.dumps(results))
    assert again["wall_times"]["train_s"] == results["wall_times"]["train_s"] > 0
    assert snapshot(workdir) == before  # not even a new TensorBoard event file
    assert "reporting its stored results unchanged" in capsys.readouterr().out
    # re-evaluation only on request: the same checkpoint, the same returns, real step and time
    redone = train_and_evaluate(tiny_config("bc"), workdir, show_progress=False,
                                evaluate_only=True)
    assert redone["trained_steps"] == 4 and redone["eval"] == again["eval"]
    assert redone["wall_times"]["train_s"] == again["wall_times"]["train_s"]
    assert "note" not in redone


def test_shorter_rerun_is_refused_or_evaluated_as_is_with_its_real_step(finished):
    workdir, _, before = finished
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"checkpoint at step 4, past config.num_steps=2.*--evaluate_only"):
        train_and_evaluate(tiny_config("bc", num_steps=2), workdir, show_progress=False)
    assert snapshot(workdir) == before
    as_is = train_and_evaluate(tiny_config("bc", num_steps=2), workdir, show_progress=False,
                               evaluate_only=True)
    assert as_is["trained_steps"] == 4 and "step 4" in as_is["note"]
    with open(os.path.join(workdir, "results.md")) as f:
        assert "trained 4 steps" in f.read()


def test_changed_optimiser_or_eval_settings_are_refused_naming_the_differences(finished):
    workdir, _, before = finished
    config = tiny_config("bc", num_steps=6)
    config.optim.learning_rate = 5e-4
    config.optim.weight_decay = 0.1
    config.optim.warmup_steps = 7
    with pytest.raises(checkpoint.CheckpointMismatchError) as err:
        train_and_evaluate(config, workdir, show_progress=False)
    message = str(err.value)
    for part in ("different optimiser", "optim.learning_rate: saved 0.001, now 0.0005",
                 "optim.weight_decay: saved 0.0, now 0.1", "optim.warmup_steps: saved 2, now 7"):
        assert part in message
    with pytest.raises(checkpoint.CheckpointError, match=r"eval.episodes: saved 1, now 3"):
        train_and_evaluate(tiny_config("bc", **{"eval.episodes": 3}), workdir,
                           show_progress=False)
    assert snapshot(workdir) == before


def test_longer_rerun_continues_training(finished):
    workdir, _, _ = finished
    results = train_and_evaluate(tiny_config("bc", num_steps=6), workdir, show_progress=False)
    assert results["trained_steps"] == 6
    assert [r["step"] for r in read_history(workdir)] == [2, 4, 6]


# ----------------------------------------------------------------------------- checkpoints


def _damage(step_dir):
    """Empty every file of the checkpoint's array data (as a torn disk write would)."""
    for folder, _, files in os.walk(os.path.join(step_dir, "default")):
        for name in files:
            open(os.path.join(folder, name), "wb").close()


def test_corrupted_latest_checkpoint_falls_back_to_the_previous_intact_one(finished, tmp_path,
                                                                          capsys):
    workdir, _, _ = finished
    _damage(os.path.join(workdir, "checkpoints", "4"))
    capsys.readouterr()
    train_and_evaluate(tiny_config("bc", num_steps=6), workdir, show_progress=False)
    out = capsys.readouterr().out
    assert "checkpoint step 4 could not be restored (" in out
    assert os.path.join(workdir, "skipped_checkpoints", "4") in out
    assert "Resuming from checkpoint at step 2" in out
    assert os.path.isdir(os.path.join(workdir, "skipped_checkpoints", "4"))  # kept, not deleted
    assert checkpoint.saved_steps(workdir) == [2, 4, 6]
    fresh = str(tmp_path / "fresh")
    train_and_evaluate(tiny_config("bc", num_steps=6), fresh, show_progress=False)
    assert losses(read_history(workdir)) == losses(read_history(fresh))
    for a, b in zip(_latest_params(workdir), _latest_params(fresh), strict=True):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_of_another_parameter_layout_is_named_and_left_in_place(finished):
    """A readable checkpoint whose parameter names differ (e.g. an S4 layer's `Lambda_re`
    before 2026-12-04) is not damaged: the error names the leaves, nothing is moved."""
    from s4dm_jax.train.trainer import build, init_run_state

    workdir, _, _ = finished
    config = tiny_config("bc")
    _, _, model = build(config)
    state = init_run_state(config, model)
    params = state["params"]["params"]
    layer = sorted(params)[0]
    params[layer] = {("renamed_" + k if k == "kernel" else k): v
                     for k, v in params[layer].items()}
    manager = checkpoint.open_manager(workdir, 3)
    with pytest.raises(checkpoint.CheckpointError,
                       match=rf"step 4 .*\(only in the checkpoint: params\.{layer}\.kernel; "
                             rf"only in the model: params\.{layer}\.renamed_kernel\).* left in"):
        checkpoint.restore_latest(manager, state, workdir)
    manager.close()
    assert not os.path.exists(os.path.join(workdir, "skipped_checkpoints"))
    assert checkpoint.saved_steps(workdir) == [2, 4]


def test_no_restorable_checkpoint_is_an_error_that_keeps_them(finished):
    workdir, _, _ = finished
    for step in (2, 4):
        _damage(os.path.join(workdir, "checkpoints", str(step)))
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"none of the checkpoints .* step 4 .* step 2 .* new --workdir"):
        train_and_evaluate(tiny_config("bc", num_steps=6), workdir, show_progress=False)
    assert sorted(os.listdir(os.path.join(workdir, "skipped_checkpoints"))) == ["2", "4"]


def _latest_params(workdir):
    from s4dm_jax.train.trainer import build, init_run_state

    config = tiny_config("bc")
    _, _, model = build(config)
    state = init_run_state(config, model)
    manager = checkpoint.open_manager(workdir, 3)
    restored = checkpoint.restore_latest(manager, state, workdir)
    manager.close()
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(restored.state["params"])]


# ----------------------------------------------------------------------------- config values


@pytest.mark.parametrize("override, field", [
    ({"keep_checkpoints": 0}, "keep_checkpoints"),
    ({"model.context_len": 0}, "context_len"),
    ({"checkpoint_every": -1}, "checkpoint_every"),
    ({"log_every": -5}, "log_every"),
    ({"seed_axis_devices": 0}, "seed_axis_devices"),
    ({"optim.b1": 1.0}, "b1"),
    ({"optim.grad_clip": 0.0}, "grad_clip"),
    ({"optim.warmup_steps": -1}, "warmup_steps"),
    ({"eval.max_episode_steps": 0}, "max_episode_steps"),
    ({"eval.target_returns": [float("nan")]}, "target_returns"),
    ({"model.hidden_dims": (16, 0)}, "hidden_dims"),
    ({"model.dropout": 1.0}, "dropout"),
])
def test_invalid_config_values_fail_up_front(override, field, tmp_path):
    workdir = str(tmp_path / "run")
    model = "dt" if field == "context_len" else "bc"
    with pytest.raises(ConfigError, match=field):
        train_and_evaluate(tiny_config(model, **override), workdir, show_progress=False)
    assert not os.path.exists(workdir)


def test_unknown_env_id_fails_before_training_listing_the_registered_ones(tmp_path):
    workdir = str(tmp_path / "run")
    with pytest.raises(DatasetError, match=r"'Hoper-v5'.*Did you mean 'Hopper-v5'.*Walker2d-v5"):
        train_and_evaluate(tiny_config("bc", env_id="Hoper-v5"), workdir, show_progress=False)
    assert not os.path.exists(workdir)


@pytest.mark.parametrize("flag, message", [
    ("--config.model.context_len=0", "config.model.context_len must be an integer >= 1"),
    ("--config.keep_checkpoints=0", "config.keep_checkpoints must be an integer >= 1"),
    ("--config.batchsize=3", 'does not exist: \'batchsize\'. Did you mean "batch_size"'),
])
def test_command_line_errors_are_one_paragraph_without_traceback(flag, message, tmp_path):
    workdir = tmp_path / "run"
    cmd = python_module("s4dm_jax.main", f"--config={ROOT}/configs/dt.py", f"--workdir={workdir}",
                        flag)
    done = run(cmd, cwd=str(tmp_path))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert message in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    assert not workdir.exists()
