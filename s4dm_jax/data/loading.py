"""`load_dataset`: one entry point for every dataset format.

This module sits above the format readers (dataset.py holds TrajectoryDataset and the shared
checks, d4rl.py and minari_io.py read the formats): it imports them, and none of them imports
it, so the data package has no import cycle.
"""

from __future__ import annotations

import os
import re

from s4dm_jax.data import dataset, masked, tmaze
from s4dm_jax.data.d4rl import load_d4rl
from s4dm_jax.data.dataset import TrajectoryDataset
from s4dm_jax.data.errors import DatasetError
from s4dm_jax.data.minari_io import load_minari, load_minari_dir

_MINARI_ID = re.compile(r"^([A-Za-z0-9_.\-]+/)*[A-Za-z0-9_.\-]+-v\d+$")


def load_dataset(spec: str, *, download: bool = False, env_id: str | None = None,
                 ref_min_score: float | None = None,
                 ref_max_score: float | None = None) -> TrajectoryDataset:
    """Load "embedded", a D4RL .hdf5/.h5 file, a Minari dataset directory, a Minari id, a
    generated T-Maze spec ("tmaze:...", data/tmaze.py) or "masked:<spec>" (data/masked.py).

    Minari ids are looked up in MINARI_DATASETS_PATH (default ~/.minari/datasets); with
    download=True a missing id is fetched from the Minari hub. env_id / ref_*_score override
    what the data says. Raises DatasetError.
    """
    refs = dict(env_id=env_id, ref_min_score=ref_min_score, ref_max_score=ref_max_score)
    if not isinstance(spec, str | os.PathLike) or not str(spec).strip():
        raise DatasetError(f"dataset spec {spec!r} must be 'embedded', a .hdf5 path or a Minari id")
    text = os.fspath(spec).strip()
    if tmaze.is_tmaze_spec(text):  # generated T-Maze data, e.g. "tmaze:passive-L100-mixed"
        return tmaze.load_tmaze(text, **refs)
    if text.startswith(masked.PREFIX):  # positions only, e.g. "masked:mujoco/hopper/medium-v0"
        return masked.mask_dataset(load_dataset(text[len(masked.PREFIX):], download=download,
                                                **refs))
    if text == "embedded":
        # read from dataset.py at call time: the one place that says where the embedded data is
        return load_minari(dataset.EMBEDDED_DATASET_ID, root=dataset.EMBEDDED_DATASETS_ROOT,
                           embedded=True, **refs)
    if text.lower().endswith((".hdf5", ".h5")):
        return load_d4rl(text, **refs)
    if os.path.isdir(os.path.expanduser(text)):
        return load_minari_dir(os.path.expanduser(text), **refs)
    if _MINARI_ID.match(text):
        return load_minari(text, download=download, **refs)
    raise DatasetError(
        f"dataset spec {text!r} is not understood: use 'embedded' (the small Hopper dataset "
        "shipped with the package), a path to a D4RL file ending in .hdf5/.h5 (e.g. "
        "~/d4rl/hopper-medium-v2.hdf5), a Minari dataset directory, or a Minari id with a "
        "version such as 's4dm/hopper/medium-v0' or 'mujoco/hopper/medium-v0'")
