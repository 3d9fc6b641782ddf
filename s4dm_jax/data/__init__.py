"""Offline RL datasets (D4RL hdf5, Minari, the embedded one) and DT-style window sampling."""

from s4dm_jax.data.dataset import (
    D4RL_REF_SCORES,
    EMBEDDED_DATASET_ID,
    EMBEDDED_DATASETS_ROOT,
    TrajectoryDataset,
)
from s4dm_jax.data.errors import DatasetError
from s4dm_jax.data.loading import load_dataset
from s4dm_jax.data.sampling import SequenceSampler, sample_batch

__all__ = [
    "D4RL_REF_SCORES",
    "DatasetError",
    "EMBEDDED_DATASETS_ROOT",
    "EMBEDDED_DATASET_ID",
    "SequenceSampler",
    "TrajectoryDataset",
    "load_dataset",
    "sample_batch",
]
