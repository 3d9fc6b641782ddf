"""Reliability of the dataset generator: bad command-line input is refused before any rollout
without a traceback, and `kill -9` at any moment never leaves a partial dataset under the id."""

import random
import shutil
import time

import numpy as np
import pytest
from kill_utils import python_module, run, run_and_kill_when

pytest.importorskip("minari")
pytest.importorskip("mujoco")

from s4dm_jax.data import (  # noqa: E402
    EMBEDDED_DATASET_ID,
    EMBEDDED_DATASETS_ROOT,
    DatasetError,
    collect,  # noqa: E402
    load_dataset,
)

POLICIES = EMBEDDED_DATASETS_ROOT.parent / "policies"
HOPPER_POLICY = str(POLICIES / "hopper-medium-sac-s0" / "policy")
STEPS = 3000
DS_ID = "s4dm/hopper/medium-v0"


def collect_cmd(root, *extra):
    return python_module("s4dm_jax.data.collect", "--env", "hopper", "--dataset", "medium",
                         "--policy", HOPPER_POLICY, "--steps", str(STEPS), "--ref-episodes", "5",
                         "--root", str(root), "--no-progress", *extra)


def temporaries(root):
    return sorted(root.glob(f"{collect.TMP_PREFIX}*")) if root.exists() else []


@pytest.mark.parametrize("argv, message", [
    (["--steps", "-5"], "--steps must be an integer >= 1, got -5"),
    (["--policy", "/nonexistent/policy"], "--policy /nonexistent/policy does not exist"),
    (["--policy", str(POLICIES / "walker2d-medium-sac-s0" / "policy")],
     "is a policy for Walker2d-v5 (observations 17, actions 6) but --env hopper is Hopper-v5 "
     "(observations 11, actions 3)"),
    (["--ref-episodes", "0"], "--ref-episodes must be an integer >= 1"),
    (["--replay", "x.npz"], "--replay is not used by --dataset medium"),
])
def test_bad_input_is_refused_before_any_rollout(argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    with pytest.raises(collect.CollectError) as err:
        collect.main(["--env", "hopper", "--dataset", "medium", "--root", str(tmp_path / "store"),
                      "--no-progress", *argv])
    assert message in str(err.value) and "\n" not in str(err.value)
    assert time.perf_counter() - start < 30  # no rollout, no 100 random reference episodes
    assert not (tmp_path / "store" / DS_ID).exists()


def test_policy_for_another_env_of_the_same_sizes_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(collect.CollectError, match="policy for HalfCheetah-v5 .* Walker2d-v5"):
        collect.main(["--env", "walker2d", "--dataset", "medium", "--policy",
                      str(POLICIES / "halfcheetah-medium-sac-s0" / "policy"), "--root",
                      str(tmp_path / "store"), "--no-progress"])


def test_command_line_errors_have_no_traceback(tmp_path):
    done = run(python_module("s4dm_jax.data.collect", "--env", "hopper", "--dataset", "medium",
                             "--steps", "-5", "--policy", "/nonexistent"), cwd=str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip() == "error: --steps must be an integer >= 1, got -5"
    done = run(python_module("s4dm_jax.data.collect", "--env", "hopper", "--dataset", "medium",
                             "--policy", str(tmp_path / "missing"), "--root",
                             str(tmp_path / "store")),  # not the user's store: may hold the id
               cwd=str(tmp_path))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: --policy {tmp_path / 'missing'} does not exist")


def test_half_written_dataset_from_an_old_killed_run_is_reported_incomplete(tmp_path,
                                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "store"
    target = root / DS_ID
    shutil.copytree(EMBEDDED_DATASETS_ROOT / EMBEDDED_DATASET_ID, target)
    hdf5 = target / "data" / "main_data.hdf5"
    hdf5.write_bytes(hdf5.read_bytes()[:100_000])
    with pytest.raises(collect.DatasetExistsError,
                       match=r"incomplete dataset 's4dm/hopper/medium-v0' .* delete it and rerun"):
        collect.main(["--env", "hopper", "--dataset", "medium", "--policy", HOPPER_POLICY,
                      "--root", str(root), "--no-progress"])
    with pytest.raises(DatasetError, match="incomplete dataset .* delete it and rerun"):
        load_dataset(str(target))


def kill_while_writing(root, cwd, extra_s=0.0):
    """Kill the collect run `extra_s` seconds after its temporary dataset store appears."""
    seen = {}

    def writing():
        if temporaries(root) and "t" not in seen:
            seen["t"] = time.monotonic()
        return "t" in seen and time.monotonic() - seen["t"] >= extra_s

    return run_and_kill_when(collect_cmd(root), writing, cwd=cwd, poll_s=0.001)


def assert_no_partial_dataset(root):
    """The id is absent, or holds a complete dataset (the kill came after the rename)."""
    target = root / DS_ID
    if target.exists():
        assert load_dataset(str(target)).num_steps == STEPS


def test_kill_9_while_writing_leaves_no_partial_dataset_and_rerun_completes(tmp_path):
    root = tmp_path / "store"
    rc, stderr = kill_while_writing(root, str(tmp_path))
    assert rc == -9, stderr[-2000:]
    assert not (root / DS_ID).exists()
    assert temporaries(root)  # the killed run's temporary store, never under the id
    done = run(collect_cmd(root), cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "a temporary dataset left by a killed collect run" in done.stdout
    assert temporaries(root) == []
    ds = load_dataset(str(root / DS_ID))
    assert ds.num_steps == STEPS and ds.env_id == "Hopper-v5"


@pytest.mark.slow
def test_five_kills_at_random_moments_then_the_same_dataset_as_an_uninterrupted_run(tmp_path):
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    reference_root = tmp_path / "reference"
    done = run(collect_cmd(reference_root), cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    root = tmp_path / "store"
    kills = 0
    for attempt in range(12):
        if attempt % 2:  # inside the write phase
            rc, _ = kill_while_writing(root, str(tmp_path), extra_s=rng.uniform(0.0, 0.05))
        else:  # anywhere from start-up through the rollout
            deadline = time.monotonic() + rng.uniform(0.5, 4.0)
            rc, _ = run_and_kill_when(collect_cmd(root), lambda d=deadline: time.monotonic() > d,
                                      cwd=str(tmp_path))
        assert rc in (-9, 0), f"kill seed {seed}"
        kills += rc == -9
        assert_no_partial_dataset(root)
        if (root / DS_ID).exists():  # the kill came after the rename: start over
            shutil.rmtree(root / DS_ID)
        if kills == 5:
            break
    assert kills == 5, f"kill seed {seed}"
    done = run(collect_cmd(root), cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert temporaries(root) == []
    got, want = load_dataset(str(root / DS_ID)), load_dataset(str(reference_root / DS_ID))
    for key in ("observations", "actions", "rewards", "episode_lengths"):
        np.testing.assert_array_equal(getattr(got, key), getattr(want, key))
