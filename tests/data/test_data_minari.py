"""Minari loading against datasets created with the real minari API; fast failures; embedded."""

import os
import time
import warnings

import gymnasium as gym
import h5py
import minari
import numpy as np
import pytest
from minari.data_collector.episode_buffer import EpisodeBuffer

from s4dm_jax.data import DatasetError, load_dataset, minari_io
from s4dm_jax.data import dataset as dataset_mod


@pytest.fixture(autouse=True)
def _store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # mujoco may write MUJOCO_LOG.TXT into the cwd
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "store"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def random_buffers(env, episodes, max_steps, seed=0):
    """Random-policy episodes (as EpisodeBuffers) and the flat arrays they hold."""
    env.action_space.seed(seed)
    buffers, flat = [], {k: [] for k in ("obs", "act", "rew", "term", "trunc", "len")}
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        o, a, r, te, tr = [obs], [], [], [], []
        for t in range(max_steps):
            action = env.action_space.sample()
            obs, rew, term, trunc, _ = env.step(action)
            trunc = trunc or t == max_steps - 1
            o.append(obs), a.append(action), r.append(rew), te.append(term), tr.append(trunc)
            if term or trunc:
                break
        buffers.append(EpisodeBuffer(observations=np.array(o), actions=np.array(a), rewards=r,
                                     terminations=te, truncations=tr, infos={}))
        flat["obs"].append(np.array(o[:-1])), flat["act"].append(np.array(a))
        flat["rew"].append(np.array(r)), flat["term"].append(np.array(te))
        flat["trunc"].append(np.array(tr)), flat["len"].append(len(r))
    return buffers, {k: (np.array(v) if k == "len" else np.concatenate(v)) for k, v in flat.items()}


def create(dataset_id, env_id="Hopper-v5", episodes=3, max_steps=15, **kwargs):
    env = gym.make(env_id)
    buffers, flat = random_buffers(env, episodes, max_steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(dataset_id, buffers, env=env,
                                           algorithm_name="random", **kwargs)
    env.close()
    return flat


def test_loads_same_arrays_as_written_with_metadata_refs():
    flat = create("test/hopper/random-v0", ref_min_score=-5.0, ref_max_score=100.0)
    ds = load_dataset("test/hopper/random-v0")
    assert ds.env_id == "Hopper-v5" and ds.name == "test/hopper/random-v0"
    assert (ds.obs_dim, ds.act_dim, ds.discrete) == (11, 3, False)
    np.testing.assert_array_equal(ds.episode_lengths, flat["len"])
    np.testing.assert_array_equal(ds.episode_starts, np.cumsum(flat["len"]) - flat["len"])
    np.testing.assert_allclose(ds.observations, flat["obs"].astype(np.float32))
    np.testing.assert_allclose(ds.actions, flat["act"])
    np.testing.assert_allclose(ds.rewards, flat["rew"].astype(np.float32))
    np.testing.assert_array_equal(ds.terminals, flat["term"])
    np.testing.assert_array_equal(ds.timeouts, flat["trunc"])
    ends = np.cumsum(flat["len"])
    returns = [flat["rew"][e - n:e].sum() for e, n in zip(ends, flat["len"], strict=True)]
    np.testing.assert_allclose(ds.episode_returns, returns, rtol=1e-5)
    assert (ds.ref_min_score, ds.ref_max_score) == (-5.0, 100.0)
    assert ds.ref_source == "Minari dataset metadata (test/hopper/random-v0)"
    assert ds.normalized_score(47.5) == pytest.approx(50.0)

    # the same arrays as minari's own reader
    api = minari.load_dataset("test/hopper/random-v0")
    eps = list(api.iterate_episodes())
    api_obs = np.concatenate([e.observations[:-1] for e in eps]).astype(np.float32)
    np.testing.assert_allclose(ds.observations, api_obs)
    np.testing.assert_allclose(ds.rewards, np.concatenate([e.rewards for e in eps]), rtol=1e-6)
    via_api = minari_io.load_minari_dir(
        os.path.join(os.environ["MINARI_DATASETS_PATH"], "test/hopper/random-v0"),
        use_minari_api=True)
    for key in ("observations", "actions", "rewards", "terminals", "timeouts", "episode_lengths"):
        np.testing.assert_array_equal(getattr(via_api, key), getattr(ds, key))


def test_overrides_and_d4rl_fallback_refs():
    create("test/hopper/norefs-v0", ref_min_score=0.0)  # minari stores no refs without a max
    ds = load_dataset("test/hopper/norefs-v0")
    assert (ds.ref_min_score, ds.ref_max_score) == (-20.272305, 3234.3)
    assert ds.ref_source == "D4RL reference constants (hopper)"
    ds = load_dataset("test/hopper/norefs-v0", ref_min_score=1.0, ref_max_score=3.0)
    assert (ds.ref_min_score, ds.ref_max_score, ds.ref_source) == (1.0, 3.0, "user-provided")
    with pytest.raises(DatasetError, match=r"11 features per step but Walker2d-v5 observations"):
        load_dataset("test/hopper/norefs-v0", env_id="Walker2d-v5")


def test_discrete_dataset_without_refs():
    flat = create("test/cartpole/random-v0", env_id="CartPole-v1", episodes=2, max_steps=8,
                  ref_min_score=0.0)
    ds = load_dataset("test/cartpole/random-v0")
    assert ds.discrete and ds.actions.dtype == np.int32 and ds.actions.shape == (flat["len"].sum(),)
    assert (ds.obs_dim, ds.act_dim, ds.env_id) == (4, 2, "CartPole-v1")
    np.testing.assert_array_equal(ds.actions, flat["act"])
    assert ds.ref_min_score is None and ds.ref_source == "none"
    with pytest.raises(DatasetError, match="has no reference scores"):
        ds.normalized_score(10.0)


def test_missing_id_fails_fast_naming_id_and_path(tmp_path, monkeypatch):
    start = time.perf_counter()
    with pytest.raises(DatasetError) as info:
        load_dataset("s4dm/hopper/medium-v0")
    assert time.perf_counter() - start < 5.0
    msg = str(info.value)
    assert "'s4dm/hopper/medium-v0'" in msg
    assert str(tmp_path / "store" / "s4dm" / "hopper" / "medium-v0") in msg
    assert "`python -m s4dm_jax.data.collect --env hopper --dataset medium`" in msg
    with pytest.raises(DatasetError, match="minari download mujoco/hopper/expert-v0"):
        load_dataset("mujoco/hopper/expert-v0")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(DatasetError, match="cannot be downloaded") as info:
        load_dataset("mujoco/hopper/medium-v0", download=True)
    assert time.perf_counter() - start < 5.0
    assert str(tmp_path / "store" / "mujoco" / "hopper" / "medium-v0") in str(info.value)
    assert not (tmp_path / "store" / "mujoco").exists()


def test_network_probe_is_bounded(monkeypatch):
    def hanging_connect(*args, **kwargs):  # a DNS lookup / connect that never answers in time
        time.sleep(3.0)
        raise OSError("too late")

    monkeypatch.setattr(minari_io.socket, "create_connection", hanging_connect)
    start = time.perf_counter()
    assert minari_io._hub_reachable(timeout=0.5) is False
    assert time.perf_counter() - start < 1.5


def test_corrupt_episodes_are_reported(tmp_path):
    create("test/hopper/bad-v0", ref_min_score=0.0)
    path = tmp_path / "store/test/hopper/bad-v0/data/main_data.hdf5"
    with h5py.File(path, "r+") as f:
        f["episode_1/rewards"][0] = np.nan
    with pytest.raises(DatasetError, match=r"episode_1: key 'rewards' has 1 non-finite"):
        load_dataset("test/hopper/bad-v0")
    with h5py.File(path, "r+") as f:
        f["episode_1/rewards"][0] = 0.0
        actions = f["episode_0/actions"][()]
        del f["episode_0/actions"]
        f["episode_0/actions"] = actions[:-1]
    with pytest.raises(DatasetError, match=r"episode_0 has mismatched lengths"):
        load_dataset("test/hopper/bad-v0")
    with h5py.File(path, "r+") as f:
        del f["episode_0/actions"]
    with pytest.raises(DatasetError, match=r"episode_0 is missing key\(s\) \['actions'\]"):
        load_dataset("test/hopper/bad-v0")
    (tmp_path / "store/test/hopper/half-v0/data").mkdir(parents=True)
    with pytest.raises(DatasetError, match="incomplete"):
        load_dataset("test/hopper/half-v0")


def test_dataset_directory_spec(tmp_path):
    create("test/hopper/dir-v0", ref_min_score=0.0, ref_max_score=1.0)
    ds = load_dataset(str(tmp_path / "store/test/hopper/dir-v0"))
    assert ds.name == "test/hopper/dir-v0" and ds.ref_max_score == 1.0


def test_embedded_from_explicit_root_without_env_or_copies(tmp_path, monkeypatch):
    root = tmp_path / "pkg_assets"
    monkeypatch.setattr(dataset_mod, "EMBEDDED_DATASETS_ROOT", root)
    with pytest.raises(DatasetError, match=r"embedded dataset 's4dm/hopper/medium-mini-v0'") as e:
        load_dataset("embedded")
    assert str(root / "s4dm/hopper/medium-mini-v0/data") in str(e.value)
    assert (f"python -m s4dm_jax.data.collect --env hopper --dataset medium --name medium-mini "
            f"--root {root}") in str(e.value)

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    create(dataset_mod.EMBEDDED_DATASET_ID, ref_min_score=-20.0, ref_max_score=3000.0)
    user_store = tmp_path / "user_store"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(user_store))
    env_before = dict(os.environ)
    ds = load_dataset("embedded")
    assert dict(os.environ) == env_before
    assert not user_store.exists()
    assert ds.name == "s4dm/hopper/medium-mini-v0" and ds.env_id == "Hopper-v5"
    assert ds.ref_max_score == 3000.0


def test_shipped_embedded_dataset_if_present():
    root = dataset_mod.EMBEDDED_DATASETS_ROOT
    if not (root / dataset_mod.EMBEDDED_DATASET_ID / "data" / "metadata.json").is_file():
        with pytest.raises(DatasetError, match="embedded"):
            load_dataset("embedded")
        pytest.skip("the embedded dataset has not been generated yet")
    ds = load_dataset("embedded")
    assert ds.env_id == "Hopper-v5" and (ds.obs_dim, ds.act_dim) == (11, 3)
    assert ds.ref_min_score is not None and ds.ref_max_score is not None
    assert ds.num_steps > 1000
