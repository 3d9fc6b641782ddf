"""D4RL-format hdf5 loading: episode splits, env inference, reference scores, bad input."""

import h5py
import numpy as np
import pytest

from s4dm_jax.data import D4RL_REF_SCORES, DatasetError, TrajectoryDataset, load_dataset


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # mujoco may write MUJOCO_LOG.TXT into the cwd


def write_d4rl(path, obs_dim=11, act_dim=3, **override):
    """7 transitions: terminal at 2, timeout at 4, unterminated tail 5..6 -> lengths 3, 2, 2."""
    t = 7
    data = {
        "observations": np.arange(t * obs_dim, dtype=np.float32).reshape(t, obs_dim) / 10,
        "actions": np.linspace(-1, 1, t * act_dim, dtype=np.float32).reshape(t, act_dim),
        "rewards": np.arange(1, t + 1, dtype=np.float32),
        "terminals": np.array([0, 0, 1, 0, 0, 0, 0], dtype=bool),
        "timeouts": np.array([0, 0, 0, 0, 1, 0, 0], dtype=bool),
    }
    data.update(override)
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            if v is not None:
                f.create_dataset(k, data=v)
        f.create_dataset("next_observations", data=data["observations"])
        f.create_dataset("infos/qpos", data=np.zeros((t, 2)))
    return data


def test_episode_splits_lengths_returns_and_refs(tmp_path):
    path = tmp_path / "hopper-medium-v2.hdf5"
    data = write_d4rl(path)
    ds = load_dataset(str(path))
    assert ds.env_id == "Hopper-v5"
    assert ds.name == "hopper-medium-v2"
    np.testing.assert_array_equal(ds.episode_starts, [0, 3, 5])
    np.testing.assert_array_equal(ds.episode_lengths, [3, 2, 2])
    np.testing.assert_allclose(ds.episode_returns, [1 + 2 + 3, 4 + 5, 6 + 7])
    assert ds.num_episodes == 3 and ds.obs_dim == 11 and ds.act_dim == 3
    assert not ds.discrete
    np.testing.assert_array_equal(ds.observations, data["observations"])
    np.testing.assert_array_equal(ds.actions, data["actions"])
    assert ds.observations.dtype == np.float32 and ds.rewards.dtype == np.float32
    assert ds.terminals.dtype == bool and ds.episode_starts.dtype == np.int64
    np.testing.assert_array_equal(ds.terminals, data["terminals"])
    np.testing.assert_array_equal(ds.timeouts, data["timeouts"])
    assert (ds.ref_min_score, ds.ref_max_score) == D4RL_REF_SCORES["hopper"]
    assert ds.ref_source == "D4RL reference constants (hopper)"
    # 100 * (R - (-20.272305)) / (3234.3 + 20.272305)
    assert ds.normalized_score(3234.3) == pytest.approx(100.0)
    assert ds.normalized_score(-20.272305) == pytest.approx(0.0)
    np.testing.assert_allclose(ds.normalized_score(np.array([1607.013848, 0.0])),
                               [50.0, 0.62288691], rtol=1e-6)


def test_terminal_and_timeout_on_same_step_split_once():
    ds = TrajectoryDataset.from_flat(
        np.zeros((4, 2)), np.zeros((4, 1)), np.ones(4), [0, 1, 0, 1], [0, 1, 0, 0],
        env_id="Foo-v0")
    np.testing.assert_array_equal(ds.episode_lengths, [2, 2])


def test_env_inference_for_other_envs_and_env_id_argument(tmp_path):
    write_d4rl(tmp_path / "halfcheetah_medium_replay-v2.hdf5", obs_dim=17, act_dim=6)
    ds = load_dataset(str(tmp_path / "halfcheetah_medium_replay-v2.hdf5"))
    assert ds.env_id == "HalfCheetah-v5"
    assert ds.ref_source == "D4RL reference constants (halfcheetah)"
    write_d4rl(tmp_path / "Walker2d-expert.h5", obs_dim=17, act_dim=6)
    assert load_dataset(str(tmp_path / "Walker2d-expert.h5")).env_id == "Walker2d-v5"

    write_d4rl(tmp_path / "data.hdf5")
    with pytest.raises(DatasetError, match="pass env_id="):
        load_dataset(str(tmp_path / "data.hdf5"))
    ds = load_dataset(str(tmp_path / "data.hdf5"), env_id="Hopper-v5")
    assert ds.env_id == "Hopper-v5" and ds.ref_max_score == 3234.3


def test_explicit_refs_override_and_missing_refs_error(tmp_path):
    write_d4rl(tmp_path / "hopper.hdf5")
    ds = load_dataset(str(tmp_path / "hopper.hdf5"), ref_min_score=0.0, ref_max_score=200.0)
    assert (ds.ref_min_score, ds.ref_max_score, ds.ref_source) == (0.0, 200.0, "user-provided")
    assert ds.normalized_score(50.0) == pytest.approx(25.0)
    ds = load_dataset(str(tmp_path / "hopper.hdf5"), ref_max_score=979.727695)
    assert ds.ref_min_score == -20.272305 and "user-provided" in ds.ref_source
    assert ds.normalized_score(479.727695) == pytest.approx(50.0)

    with pytest.raises(DatasetError, match="'NotAnEnv-v0' .* not a registered .* Hopper-v5"):
        load_dataset(str(tmp_path / "hopper.hdf5"), env_id="NotAnEnv-v0")
    write_d4rl(tmp_path / "swimmer-data.hdf5", obs_dim=8, act_dim=2)
    ds = load_dataset(str(tmp_path / "swimmer-data.hdf5"), env_id="Swimmer-v5")
    assert ds.ref_min_score is None and ds.ref_source == "none"
    with pytest.raises(DatasetError, match="ref_min_score= and ref_max_score="):
        ds.normalized_score(1.0)
    with pytest.raises(DatasetError, match="ref_max_score > ref_min_score"):
        load_dataset(str(tmp_path / "hopper.hdf5"), ref_min_score=5.0, ref_max_score=5.0)


@pytest.mark.parametrize("override, pattern", [
    ({"timeouts": None}, r"missing required key\(s\) \['timeouts'\]"),
    ({"rewards": np.ones(6, np.float32)}, r"mismatched lengths .*'rewards': 6"),
    ({"observations": np.where(np.eye(7, 11) > 0, np.array([np.nan, np.inf, np.nan, 0, 0, 0, 0])
                               [:, None], 0.0).astype(np.float32)},
     r"key 'observations' has 3 non-finite values \(2 NaN, 1 inf\)"),
    ({"rewards": np.array([1, 2, np.nan, 4, 5, 6, 7], np.float32)},
     r"key 'rewards' has 1 non-finite values"),
    ({k: np.zeros((0, 11) if k == "observations" else (0, 3) if k == "actions" else (0,))
      for k in ("observations", "actions", "rewards", "terminals", "timeouts")}, "empty"),
    ({"observations": np.zeros((7, 12), np.float32)},
     r"12 features per step but Hopper-v5 observations have shape \(11,\)"),
    ({"actions": np.zeros((7, 4), np.float32)}, r"actions have 4 dims but Hopper-v5 actions"),
])
def test_bad_input_errors_name_file_and_field(tmp_path, override, pattern):
    path = tmp_path / "hopper-bad-v2.hdf5"
    write_d4rl(path, **override)
    with pytest.raises(DatasetError, match=pattern) as info:
        load_dataset(str(path))
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(DatasetError, match=r"D4RL file not found: /nonexistent/hopper-medium-v2"):
        load_dataset("/nonexistent/hopper-medium-v2.hdf5")
    bad = tmp_path / "hopper.hdf5"
    bad.write_text("not hdf5")
    with pytest.raises(DatasetError, match="cannot be read as an hdf5 file"):
        load_dataset(str(bad))


def test_unknown_spec_is_a_clear_error():
    for spec in ("not a dataset", "hopper-medium", ""):
        with pytest.raises(DatasetError, match="'embedded'"):
            load_dataset(spec)


def test_dataset_constructor_validates_episode_tiling():
    args = (np.zeros((4, 2)), np.zeros((4, 1)), np.ones(4), np.zeros(4), np.zeros(4))
    with pytest.raises(DatasetError, match="tile"):
        TrajectoryDataset(*args, episode_starts=[0, 2], episode_lengths=[2, 1], env_id="Foo-v0")
    ds = TrajectoryDataset(*args, episode_starts=[0, 1], episode_lengths=[1, 3], env_id="Foo-v0")
    np.testing.assert_allclose(ds.episode_returns, [1.0, 3.0])
