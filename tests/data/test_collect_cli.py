"""End-to-end test of the dataset-generation CLI (s4dm_jax.data.collect) on a tiny budget."""

import os

import jax
import numpy as np
import pytest

minari = pytest.importorskip("minari")
mujoco = pytest.importorskip("mujoco")

from s4dm_jax.data import collect  # noqa: E402


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """tmp Minari root + a tiny SAC run (policy + replay buffer) made with the CLI."""
    base = tmp_path_factory.mktemp("collect")
    mp = pytest.MonkeyPatch()
    mp.chdir(base)  # mujoco may write MUJOCO_LOG.TXT into the cwd
    mp.setenv("MINARI_DATASETS_PATH", str(base / "default_store"))
    run = base / "run"
    out = collect.main(["train-policy", "--env", "hopper", "--seed", "3", "--out", str(run),
                        "--max-steps", "400", "--start-steps", "300", "--eval-every", "200",
                        "--eval-episodes", "1", "--no-progress"])
    assert out == run.absolute()
    yield {"root": base / "store", "run": run}
    mp.undo()


def _load(root, ds_id, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return minari.load_dataset(ds_id)


def _common(root, steps):
    return ["--env", "hopper", "--steps", str(steps), "--root", str(root), "--ref-episodes", "3",
            "--no-progress"]


def test_random_dataset_loads_with_refs_and_command(work, monkeypatch):
    argv = ["--dataset", "random", "--seed", "1", *_common(work["root"], 500)]
    summary = collect.main(argv)
    assert summary["dataset_id"] == "s4dm/hopper/random-v0" and summary["steps"] == 500
    ds = _load(work["root"], "s4dm/hopper/random-v0", monkeypatch)
    meta = ds.storage.metadata
    assert ds.total_steps == 500
    assert meta["ref_max_score"] == 3234.3
    np.testing.assert_allclose(meta["ref_min_score"], summary["ref_min_score"])
    prov = meta["s4dm_provenance"]
    assert prov["command"] == "python -m s4dm_jax.data.collect " + " ".join(argv)
    assert prov["seed"] == 1 and prov["kind"] == "random"
    # where it was made: SAC's data differ across hosts (docs/datasets.md), so the dataset
    # says which host
    assert prov["machine"]["cpus"] == os.cpu_count()
    assert prov["machine"]["libraries"]["mujoco"] == mujoco.__version__
    assert prov["git_commit"] == "unknown" or len(prov["git_commit"].split("+")[0]) == 40
    eps = list(ds.iterate_episodes())
    assert sum(len(e.rewards) for e in eps) == 500
    for e in eps:
        assert e.observations.shape == (len(e.rewards) + 1, 11)
        assert e.actions.shape == (len(e.rewards), 3)
        assert np.all(np.abs(e.actions) <= 1)
        assert e.terminations[-1] or e.truncations[-1]
    assert eps[-1].truncations[-1]  # budget cut
    # refuses to overwrite, before doing any work
    with pytest.raises(collect.DatasetExistsError, match="Delete"):
        collect.main(argv)


def test_medium_from_policy_is_deterministic(work, monkeypatch):
    pol = str(work["run"] / "policy")
    s0 = collect.main(["--dataset", "medium", "--policy", pol, "--seed", "0",
                       *_common(work["root"], 800)])
    s1 = collect.main(["--dataset", "medium", "--policy", pol, "--seed", "0", "--version", "1",
                       *_common(work["root"], 800)])
    assert s0["dataset_id"] == "s4dm/hopper/medium-v0" and s1["dataset_id"].endswith("-v1")
    d0 = _load(work["root"], "s4dm/hopper/medium-v0", monkeypatch)
    d1 = _load(work["root"], "s4dm/hopper/medium-v1", monkeypatch)
    a0 = np.concatenate([e.actions for e in d0.iterate_episodes()])
    a1 = np.concatenate([e.actions for e in d1.iterate_episodes()])
    np.testing.assert_array_equal(a0, a1)
    assert len(a0) == 800
    prov = d0.storage.metadata["s4dm_provenance"]
    assert prov["behavior_policy"]["path"].endswith("policy")
    assert "train-policy" in prov["behavior_policy"]["command"]
    assert prov["behavior_policy"]["machine"]["libraries"]["jax"] == jax.__version__


def test_medium_replay_is_the_whole_buffer(work, monkeypatch):
    collect.main(["--dataset", "medium-replay", "--run-dir", str(work["run"]),
                  *_common(work["root"], 1)])
    ds = _load(work["root"], "s4dm/hopper/medium-replay-v0", monkeypatch)
    assert ds.total_steps == 400  # every SAC transition, --steps ignored
    z = np.load(work["run"] / "replay.npz")
    rewards = np.concatenate([e.rewards for e in ds.iterate_episodes()])
    np.testing.assert_allclose(rewards, z["rew"], rtol=1e-6)
    obs0 = next(iter(ds.iterate_episodes())).observations
    np.testing.assert_allclose(obs0[:-1], z["obs"][: len(obs0) - 1], rtol=1e-6)


def test_medium_expert_concatenates(work, monkeypatch):
    pol = str(work["run"] / "policy")
    s = collect.main(["--dataset", "medium-expert", "--policy", pol, "--expert-policy", pol,
                      *_common(work["root"], 400)])
    assert s["steps"] == 400
    with pytest.raises(ValueError, match="train-policy"):
        collect.main(["--dataset", "expert", "--name", "e2", *_common(work["root"], 10)])
