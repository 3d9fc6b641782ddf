"""Velocity-masked datasets: a TrajectoryDataset of a full-state MuJoCo task with the same
columns removed as the "-P" environments remove (s4dm_jax.envs.masked: positions only).

Spec (config.dataset / load_dataset): "masked:<dataset spec>", e.g.
"masked:mujoco/hopper/medium-v0" or "masked:~/d4rl/walker2d-medium-v2.hdf5"; the dataset is
then evaluated in the masked id (e.g. "s4dm_jax/Hopper-P-v5") with the source's reference
scores (the reward is unchanged).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from s4dm_jax.data.dataset import TrajectoryDataset
from s4dm_jax.data.errors import DatasetError
from s4dm_jax.envs.masked import FULL_OBS_DIM, MASKED_IDS, POSITION_COLUMNS

PREFIX = "masked:"


def mask_dataset(dataset: TrajectoryDataset) -> TrajectoryDataset:
    """`dataset` with only its position columns, env_id the "-P" id (DatasetError for a task
    without a mask or observations of another size)."""
    base = dataset.env_id
    if base not in POSITION_COLUMNS:
        raise DatasetError(f"{dataset.name or 'dataset'}: no velocity mask for env {base!r}; "
                           f"masked tasks: {sorted(POSITION_COLUMNS)}")
    if dataset.obs_dim != FULL_OBS_DIM[base]:
        raise DatasetError(f"{dataset.name or 'dataset'}: {base} observations have "
                           f"{FULL_OBS_DIM[base]} columns, this data has {dataset.obs_dim}")
    keep = np.asarray(POSITION_COLUMNS[base])
    return dataclasses.replace(dataset, observations=dataset.observations[:, keep],
                               env_id=MASKED_IDS[base], name=PREFIX + (dataset.name or base))
