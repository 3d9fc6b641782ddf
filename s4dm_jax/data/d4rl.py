"""D4RL hdf5 files: flat observations, actions, rewards, terminals, timeouts."""

from __future__ import annotations

import os

import h5py
import numpy as np

from s4dm_jax.data.dataset import (
    TrajectoryDataset,
    check_env_spaces,
    check_finite,
    infer_env_id,
    resolve_ref_scores,
    validate_env_id,
)
from s4dm_jax.data.errors import DatasetError

D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


def read_d4rl_arrays(path: str) -> dict[str, np.ndarray]:
    """The five D4RL arrays of `path`, validated (keys, lengths, finite values, not empty)."""
    if not os.path.isfile(path):
        raise DatasetError(
            f"D4RL file not found: {path}. Pass the path of a D4RL v2 hdf5 file (keys "
            f"{', '.join(D4RL_KEYS)}; e.g. hopper-medium-v2.hdf5 from the D4RL dataset "
            "mirrors), or use a Minari dataset id / 'embedded' instead")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in D4RL_KEYS if k not in f]
            if missing:
                raise DatasetError(f"{path}: missing required key(s) {missing}; a D4RL file needs "
                                   f"{list(D4RL_KEYS)} (found {sorted(f.keys())})")
            not_arrays = [k for k in D4RL_KEYS if not isinstance(f[k], h5py.Dataset)]
            if not_arrays:
                raise DatasetError(f"{path}: key(s) {not_arrays} must be arrays, not groups")
            data = {k: np.asarray(f[k][()]) for k in D4RL_KEYS}
    except OSError as e:
        raise DatasetError(f"{path}: cannot be read as an hdf5 file ({e})") from e
    for key in ("rewards", "terminals", "timeouts"):
        if data[key].ndim == 2 and data[key].shape[1] == 1:
            data[key] = data[key][:, 0]
    lengths = {k: (int(v.shape[0]) if v.ndim else 0) for k, v in data.items()}
    if len(set(lengths.values())) != 1:
        raise DatasetError(f"{path}: arrays have mismatched lengths {lengths}; every key must have "
                           "one row per transition")
    if lengths["rewards"] == 0:
        raise DatasetError(f"{path}: the dataset is empty (0 transitions)")
    for key in ("rewards", "terminals", "timeouts"):
        if data[key].ndim != 1:
            raise DatasetError(f"{path}: key '{key}' must have shape [T], got {data[key].shape}")
    if data["observations"].ndim != 2:
        raise DatasetError(f"{path}: key 'observations' must have shape [T, obs_dim], "
                           f"got {data['observations'].shape}")
    if data["actions"].ndim not in (1, 2):
        raise DatasetError(f"{path}: key 'actions' must have shape [T, act_dim], "
                           f"got {data['actions'].shape}")
    for key in D4RL_KEYS:
        check_finite(data[key], key, path)
    return data


def load_d4rl(path: str, *, env_id: str | None = None, ref_min_score: float | None = None,
              ref_max_score: float | None = None) -> TrajectoryDataset:
    """Load a D4RL hdf5 file; episodes end at terminals | timeouts (and at the file's end).

    env_id is inferred from the file name (halfcheetah/hopper/walker2d -> *-v5) unless given.
    """
    path = os.path.expanduser(os.fspath(path))
    name = os.path.basename(path)
    for suffix in (".hdf5", ".h5"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    # An explicit environment id is checked before the (possibly large) file is read; an
    # inferred one comes from a fixed table of names.
    if env_id:
        env = validate_env_id(env_id, explicit=True, where=path)
    data = read_d4rl_arrays(path)
    if not env_id:
        env = infer_env_id(name)
        if env is None:
            raise DatasetError(
                f"{path}: cannot tell which environment this data is from (the file name names "
                "none of halfcheetah, hopper, walker2d); pass env_id= (config.env_id), e.g. "
                "env_id='Hopper-v5'")
        env = validate_env_id(env, explicit=False, where=path, source="inferred from the file name")
    lo, hi, source = resolve_ref_scores(env, ref_min_score=ref_min_score,
                                        ref_max_score=ref_max_score)
    dataset = TrajectoryDataset.from_flat(
        data["observations"], data["actions"], data["rewards"], data["terminals"],
        data["timeouts"], env_id=env, ref_min_score=lo, ref_max_score=hi, ref_source=source,
        name=name)
    check_env_spaces(env, dataset.obs_dim, dataset.act_dim, False, path)
    return dataset
