"""Checking a dataset's environment writes and deletes no file in the current directory:
MuJoCo's warnings (which it would append to MUJOCO_LOG.TXT there) go to logging instead."""

import logging

import gymnasium
import pytest

mujoco = pytest.importorskip("mujoco")

from s4dm_jax.data import dataset  # noqa: E402
from s4dm_jax.envs import make as envs_make  # noqa: E402

ENV_ID = "HalfCheetah-v5"  # MuJoCo 4 warns about its deprecated `settotalmass` when compiled


def test_env_check_leaves_the_working_directory_alone(tmp_path, monkeypatch, caplog):
    unguarded = tmp_path / "unguarded"
    unguarded.mkdir()
    monkeypatch.chdir(unguarded)
    gymnasium.make(ENV_ID).close()
    if not (unguarded / "MUJOCO_LOG.TXT").exists():
        pytest.skip(f"MuJoCo {mujoco.__version__} writes no warning when it makes {ENV_ID}")

    clean = tmp_path / "clean"
    clean.mkdir()
    monkeypatch.chdir(clean)
    previous = mujoco.get_mju_user_warning()
    with caplog.at_level(logging.DEBUG, logger=envs_make.__name__):
        dataset.check_env_spaces(ENV_ID, 17, 6, False, "test")
    assert list(clean.iterdir()) == []  # nothing written
    assert any("settotalmass" in r.getMessage() for r in caplog.records)
    assert mujoco.get_mju_user_warning() is previous  # the callback is restored

    user_log = clean / "MUJOCO_LOG.TXT"  # a log the user already has is neither changed nor removed
    user_log.write_text("the user's own log\n")
    dataset.check_env_spaces(ENV_ID, 17, 6, False, "test")
    assert user_log.read_text() == "the user's own log\n"


def test_env_check_still_refuses_wrong_sizes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(dataset.DatasetError, match="observations have 11 features"):
        dataset.check_env_spaces(ENV_ID, 11, 6, False, "test")
    assert list(tmp_path.iterdir()) == []


def test_writing_a_dataset_leaves_the_working_directory_alone(tmp_path, monkeypatch, caplog):
    """collect.write_minari makes the env, and minari makes it again (env and eval env): none
    of them may leave MuJoCo's warning log in the user's directory."""
    import numpy as np

    from s4dm_jax.data import collect, load_dataset

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    rng = np.random.default_rng(0)
    episode = {"observations": rng.normal(size=(5, 17)), "actions": rng.uniform(-1, 1, (4, 6)),
               "rewards": rng.normal(size=4), "terminations": np.zeros(4, bool),
               "truncations": np.array([False, False, False, True])}
    with caplog.at_level(logging.WARNING, logger=envs_make.__name__):
        collect.write_minari("test/halfcheetah/tiny-v0", [episode], ENV_ID,
                             collect.MinariMeta(0.0, 1.0, "tiny", {}, ref_episodes=1),
                             root=tmp_path / "store")
    assert list(cwd.iterdir()) == []
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "store"))
    assert load_dataset("test/halfcheetah/tiny-v0").num_steps == 4


def test_a_repeated_mujoco_warning_is_logged_once_per_process(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(envs_make, "_LOGGED_MUJOCO_WARNINGS", set())
    with caplog.at_level(logging.DEBUG, logger=envs_make.__name__):
        envs_make.make_vector_env(ENV_ID, 3).close()
        envs_make.make_env(ENV_ID).close()
    records = [r for r in caplog.records if "settotalmass" in r.getMessage()]
    if not records:
        pytest.skip(f"MuJoCo {mujoco.__version__} writes no warning when it makes {ENV_ID}")
    assert [r.levelno for r in records] == [logging.WARNING] + [logging.DEBUG] * (len(records) - 1)
    assert len(records) >= 4
