"""Datasets are data: an environment id read from a dataset never makes the package import code,
and a dataset left half-written by an interrupted write is reported as incomplete."""

import json
import shutil
import sys

import h5py
import pytest
from kill_utils import python_module, run
from runner_configs import ROOT

from s4dm_jax.data import EMBEDDED_DATASET_ID, EMBEDDED_DATASETS_ROOT, DatasetError, load_dataset
from s4dm_jax.evaluate.rollout import check_eval_env

PWN_MODULE = "import pathlib\npathlib.Path(__file__).with_name('PWNED').write_text('imported')\n"


def crafted_copy(tmp_path, env_spec_id="pwn:Hopper-v5", entry_point=None, keys=None):
    """A copy of the embedded dataset whose metadata env spec(s) name `env_spec_id`, plus a
    pwn.py beside it that leaves a PWNED marker file if it is ever imported."""
    dataset_dir = tmp_path / "crafted"
    shutil.copytree(EMBEDDED_DATASETS_ROOT / EMBEDDED_DATASET_ID, dataset_dir)
    meta_path = dataset_dir / "data" / "metadata.json"
    metadata = json.loads(meta_path.read_text())
    for key in keys or ("env_spec", "eval_env_spec"):
        spec = json.loads(metadata[key])
        spec["id"] = env_spec_id
        if entry_point:
            spec["entry_point"] = entry_point
        metadata[key] = json.dumps(spec)
    if keys == ("env_spec",):
        del metadata["eval_env_spec"]
    meta_path.write_text(json.dumps(metadata))
    (tmp_path / "pwn.py").write_text(PWN_MODULE)
    return dataset_dir


@pytest.fixture
def no_pwn(tmp_path, monkeypatch):
    """pwn.py importable (first on sys.path, and the cwd); asserts afterwards it never ran."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    assert "pwn" not in sys.modules
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("keys", [("env_spec", "eval_env_spec"), ("env_spec",)])
def test_module_entry_point_id_from_metadata_is_refused_without_import(tmp_path, no_pwn, keys):
    data = crafted_copy(tmp_path, keys=keys)
    with pytest.raises(DatasetError) as err:
        load_dataset(str(data))
    message = str(err.value)
    source = "eval_env_spec" if "eval_env_spec" in keys else "env_spec"
    assert f"'pwn:Hopper-v5' (metadata {source}.id)" in message
    assert "nothing was imported" in message
    assert "Did you mean 'Hopper-v5'" in message and "Walker2d-v5" in message
    assert "--config.env_id" in message and "\n" not in message


def test_explicit_env_id_overrides_the_crafted_one(tmp_path, no_pwn):
    ds = load_dataset(str(crafted_copy(tmp_path)), env_id="Hopper-v5")
    assert ds.env_id == "Hopper-v5" and ds.num_steps == 30000


def test_unregistered_plain_id_from_metadata_is_refused(tmp_path, no_pwn):
    with pytest.raises(DatasetError, match=r"'Hopper-v99' .* not an id registered"):
        load_dataset(str(crafted_copy(tmp_path, env_spec_id="Hopper-v99")))


def test_registered_id_with_a_crafted_entry_point_makes_the_registered_env(tmp_path, no_pwn):
    data = crafted_copy(tmp_path, env_spec_id="Hopper-v5", entry_point="pwn:Evil")
    ds = load_dataset(str(data))
    assert ds.env_id == "Hopper-v5"
    check_eval_env(ds.env_id, ds.obs_dim)  # makes Hopper-v5 from gymnasium's own registry


def test_crafted_dataset_run_fails_before_training_and_imports_nothing(tmp_path):
    data = crafted_copy(tmp_path)
    workdir = tmp_path / "run"
    # `python -m` puts the working directory (holding pwn.py) first on the import path
    done = run(python_module("s4dm_jax.main", f"--config={ROOT}/configs/bc.py",
                             f"--workdir={workdir}", f"--config.dataset={data}",
                             "--config.num_steps=4", "--noprogress"), cwd=str(tmp_path))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "error:" in done.stderr and "'pwn:Hopper-v5'" in done.stderr
    assert "nothing was imported" in done.stderr
    assert not (tmp_path / "PWNED").exists()
    assert not workdir.exists()  # failed before training: nothing written


# ----------------------------------------------------------------------------- half-written


def half_written(tmp_path, *, zero_totals=True, truncate_hdf5=True, torn_metadata=False):
    """A copy of the embedded dataset in the states an interrupted minari write leaves."""
    dataset_dir = tmp_path / "half"
    shutil.copytree(EMBEDDED_DATASETS_ROOT / EMBEDDED_DATASET_ID, dataset_dir)
    meta_path = dataset_dir / "data" / "metadata.json"
    text = meta_path.read_text()
    if zero_totals:
        metadata = json.loads(text)
        metadata.update(total_episodes=0, total_steps=0)
        text = json.dumps(metadata)
    meta_path.write_text(text[: len(text) // 2] if torn_metadata else text)
    hdf5 = dataset_dir / "data" / "main_data.hdf5"
    if truncate_hdf5:
        data = hdf5.read_bytes()
        hdf5.write_bytes(data[: len(data) // 2])
    return dataset_dir


@pytest.mark.parametrize("state, reason", [
    (dict(), "total_episodes/total_steps are 0 or missing"),
    (dict(zero_totals=False), "main_data.hdf5 cannot be opened"),
    (dict(zero_totals=False, truncate_hdf5=False, torn_metadata=True),
     "metadata.json cannot be parsed"),
])
def test_half_written_dataset_is_reported_as_incomplete(tmp_path, state, reason):
    data = half_written(tmp_path, **state)
    with pytest.raises(DatasetError) as err:
        load_dataset(str(data))
    message = str(err.value)
    assert message.startswith(f"incomplete dataset at {data}") and reason in message
    assert "delete it and rerun" in message
    assert "cannot be read as an hdf5 file" not in message


def test_fewer_episodes_than_recorded_is_incomplete(tmp_path):
    data = half_written(tmp_path, zero_totals=False, truncate_hdf5=False)
    with h5py.File(data / "data" / "main_data.hdf5", "r+") as f:
        del f["episode_72"]
    with pytest.raises(DatasetError, match="holds 72 of the 73 episodes"):
        load_dataset(str(data))
