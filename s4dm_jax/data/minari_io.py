"""Minari datasets: local store lookup, fail-fast download, and reading the on-disk format.

Store layout: <root>/<dataset_id>/data/{metadata.json, main_data.hdf5}; main_data.hdf5 holds
groups episode_<i> with observations (T+1 rows), actions, rewards, terminations, truncations.
hdf5 datasets are read directly with h5py (fast, no env var or copy needed); other storage
formats go through minari's own reader.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
from pathlib import Path

import h5py
import minari
import numpy as np

from s4dm_jax.data.dataset import (
    TrajectoryDataset,
    check_env_spaces,
    check_finite,
    collect_command,
    resolve_ref_scores,
    validate_env_id,
)
from s4dm_jax.data.errors import DatasetError

NETWORK_PROBE_TIMEOUT_S = 3.0
_HUB_HOST = ("huggingface.co", 443)


def default_store_root() -> Path:
    """MINARI_DATASETS_PATH if set, else ~/.minari/datasets (not created)."""
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env).expanduser() if env else Path.home() / ".minari" / "datasets"


def _how_to_get(dataset_id: str) -> str:
    if dataset_id.startswith("s4dm/"):
        return (f"Create it with `{collect_command(dataset_id)}` (see --help for --steps, "
                "--policy, --root); s4dm/ datasets are generated locally, not downloaded")
    return (f"Download it with `minari download {dataset_id}` or load_dataset(..., download=True) "
            "(config.download=True; needs `pip install 'minari[hf]'` and network access), or "
            f"create a dataset with this project's generator, e.g. `{collect_command()}` "
            "(see --help)")


def load_minari(dataset_id: str, *, root=None, download: bool = False, embedded: bool = False,
                env_id: str | None = None, ref_min_score: float | None = None,
                ref_max_score: float | None = None) -> TrajectoryDataset:
    """Load Minari `dataset_id` from store `root` (default: the user's store), fast-failing.

    download=True fetches a missing id from the Minari hub into `root`; without network (or
    with HF_HUB_OFFLINE set, or without huggingface_hub) it raises DatasetError at once.
    """
    store = Path(root).expanduser() if root is not None else default_store_root()
    dataset_dir = store / dataset_id
    data_dir = dataset_dir / "data"
    if not (data_dir / "metadata.json").is_file():
        if embedded:
            raise DatasetError(
                f"the embedded dataset {dataset_id!r} is not in this installation (looked for "
                f"{data_dir}/metadata.json). Create it with `{collect_command(dataset_id, store)}`"
                " (see --help for --steps and --policy), or train on another dataset (a Minari id "
                "or a D4RL .hdf5 file)")
        if data_dir.exists():
            raise DatasetError(f"Minari dataset {dataset_id!r} at {dataset_dir} is incomplete "
                               f"(no data/metadata.json); delete that folder and recreate or "
                               f"re-download it. {_how_to_get(dataset_id)}")
        if not download:
            origin = ("" if root is not None else ", from MINARI_DATASETS_PATH, default "
                      "~/.minari/datasets")
            raise DatasetError(f"Minari dataset {dataset_id!r} not found: looked for {dataset_dir} "
                               f"(store root {store}{origin}). {_how_to_get(dataset_id)}")
        _download(dataset_id, store, dataset_dir)
    return load_minari_dir(data_dir, env_id=env_id, ref_min_score=ref_min_score,
                           ref_max_score=ref_max_score)


def _hub_reachable(timeout: float = NETWORK_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the Minari hub opens within `timeout` s (DNS included)."""
    result = []

    def probe():
        try:
            with socket.create_connection(_HUB_HOST, timeout=timeout):
                result.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result)


@contextlib.contextmanager
def store_env(store: str | os.PathLike | None):
    """Point MINARI_DATASETS_PATH at `store` (absolute) for the duration of the block, then
    restore it; None leaves it unchanged."""
    if store is None:
        yield
        return
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(store).absolute())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _download(dataset_id: str, store: Path, dataset_dir: Path) -> None:
    where = f"Minari dataset {dataset_id!r} is not in {dataset_dir} and cannot be downloaded"
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise DatasetError(f"{where}: HF_HUB_OFFLINE is set. {_how_to_get(dataset_id)}")
    try:
        # optional (minari[hf]): only downloads need it, so it is imported to check for it
        import huggingface_hub  # noqa: F401  (minari's hub backend)
    except ImportError:
        raise DatasetError(f"{where}: downloads need huggingface_hub (`pip install "
                           f"'minari[hf]'`). {_how_to_get(dataset_id)}") from None
    if not _hub_reachable():
        raise DatasetError(f"{where}: the Minari hub ({_HUB_HOST[0]}) is not reachable within "
                           f"{NETWORK_PROBE_TIMEOUT_S:.0f} s (no network?). "
                           f"{_how_to_get(dataset_id)}")
    try:
        with store_env(store):
            minari.download_dataset(dataset_id)
    except Exception as e:
        raise DatasetError(f"{where}: download failed ({type(e).__name__}: {e}). "
                           f"{_how_to_get(dataset_id)}") from e
    if not (dataset_dir / "data" / "metadata.json").is_file():
        raise DatasetError(f"{where}: the download finished but {dataset_dir}/data/metadata.json "
                           "is missing")


# ----------------------------------------------------------------------------- reading


def _space(metadata: dict, key: str, where: str) -> dict:
    raw = metadata.get(key)
    if raw is None:
        raise DatasetError(f"{where}: metadata.json has no {key}")
    space = json.loads(raw) if isinstance(raw, str) else raw
    return space


def _env_id_from_metadata(metadata: dict) -> tuple[str | None, str | None]:
    """(id, metadata key it came from) of the evaluation env spec (else the data's env spec)."""
    for key in ("eval_env_spec", "env_spec"):
        raw = metadata.get(key)
        if raw:
            try:
                spec = json.loads(raw) if isinstance(raw, str) else raw
                if spec.get("id"):
                    return str(spec["id"]), key
            except (ValueError, AttributeError):
                continue
    return None, None


def _episode_index(name: str) -> int | None:
    match = re.fullmatch(r"episode_(\d+)", name)
    return int(match.group(1)) if match else None


def incomplete_reason(data_dir: Path) -> str | None:
    """Why the Minari dataset in `data_dir` (its data/ folder) is unfinished, or None.

    minari writes metadata.json (0 episodes), then the episodes, then the episode totals. A
    dataset missing any of these, or whose main_data.hdf5 cannot be opened or holds fewer
    episodes than recorded, is incomplete.
    """
    meta_path = Path(data_dir) / "metadata.json"
    if not meta_path.is_file():
        return "it has no data/metadata.json"
    try:
        metadata = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        return f"data/metadata.json cannot be parsed ({e})"
    if not isinstance(metadata, dict):
        return "data/metadata.json does not hold a JSON object"
    total = metadata.get("total_episodes")
    if not total or not metadata.get("total_steps"):
        return "its metadata records no episodes (total_episodes/total_steps are 0 or missing)"
    if metadata.get("data_format", "hdf5") != "hdf5":
        return None
    hdf5 = Path(data_dir) / "main_data.hdf5"
    if not hdf5.is_file():
        return "data/main_data.hdf5 is missing"
    try:
        with h5py.File(hdf5, "r") as f:
            stored = sum(1 for name in f.keys() if _episode_index(name) is not None)
    except OSError as e:
        return f"data/main_data.hdf5 cannot be opened ({e})"
    if stored < int(total):
        return f"data/main_data.hdf5 holds {stored} of the {total} episodes its metadata records"
    return None


def _read_hdf5_episodes(path: Path) -> list[dict[str, np.ndarray]]:
    keys = ("observations", "actions", "rewards", "terminations", "truncations")
    episodes = []
    try:
        with h5py.File(path, "r") as f:
            names = sorted((n for n in f.keys() if _episode_index(n) is not None),
                           key=_episode_index)
            for name in names:
                group = f[name]
                missing = [k for k in keys if k not in group]
                if missing:
                    raise DatasetError(f"{path}: {name} is missing key(s) {missing}")
                for k in keys:
                    if not isinstance(group[k], h5py.Dataset):
                        raise DatasetError(
                            f"{path}: {name}/{k} is a group (Dict/Tuple space); only Box "
                            "observations and Box/Discrete actions are supported")
                episodes.append({k: np.asarray(group[k][()]) for k in keys} | {"name": name})
    except OSError as e:
        raise DatasetError(f"{path}: cannot be read as an hdf5 file ({e})") from e
    return episodes


def _read_api_episodes(data_dir: Path) -> list[dict[str, np.ndarray]]:
    """Episodes through minari's reader (any storage format minari supports)."""
    try:
        ds = minari.MinariDataset(str(data_dir))
        episodes = []
        for ep in ds.iterate_episodes():
            if isinstance(ep.observations, dict | tuple) or isinstance(ep.actions, dict | tuple):
                raise DatasetError(f"{data_dir}: only Box observations and Box/Discrete actions "
                                   "are supported")
            episodes.append({"observations": np.asarray(ep.observations),
                             "actions": np.asarray(ep.actions),
                             "rewards": np.asarray(ep.rewards),
                             "terminations": np.asarray(ep.terminations),
                             "truncations": np.asarray(ep.truncations),
                             "name": f"episode_{ep.id}"})
    except DatasetError:
        raise
    except Exception as e:
        raise DatasetError(f"{data_dir}: minari could not read this dataset "
                           f"({type(e).__name__}: {e})") from e
    return episodes


def load_minari_dir(path, *, env_id: str | None = None, ref_min_score: float | None = None,
                    ref_max_score: float | None = None, use_minari_api: bool = False
                    ) -> TrajectoryDataset:
    """Load the Minari dataset stored in `path` (the dataset folder or its data/ folder)."""
    path = Path(path).expanduser()
    data_dir = path / "data" if (path / "data" / "metadata.json").is_file() else path
    meta_path = data_dir / "metadata.json"
    if not meta_path.is_file():
        raise DatasetError(f"{path} is not a Minari dataset folder (no metadata.json in it or in "
                           "its data/ subfolder)")
    reason = incomplete_reason(data_dir)
    if reason is not None:
        raise DatasetError(
            f"incomplete dataset at {data_dir.parent}: {reason}. It was left by an interrupted "
            "write (a killed `collect` or download): delete it and rerun the command that "
            "created it (or download it again)")
    metadata = json.loads(meta_path.read_text())
    dataset_id = str(metadata.get("dataset_id") or path.name)
    where = f"Minari dataset {dataset_id!r} ({data_dir})"
    # The environment id is checked first: data must never choose code to import.
    if env_id:
        env = validate_env_id(env_id, explicit=True, where=where)
    else:
        env, key = _env_id_from_metadata(metadata)
        if env is None:
            raise DatasetError(f"{where}: metadata names no environment (env_spec); pass "
                               "env_id= (config.env_id)")
        env = validate_env_id(env, explicit=False, where=where, source=f"metadata {key}.id")

    obs_space = _space(metadata, "observation_space", where)
    act_space = _space(metadata, "action_space", where)
    if obs_space.get("type") != "Box":
        raise DatasetError(f"{where}: observation space {obs_space.get('type')} is not supported "
                           "(only Box)")
    if act_space.get("type") not in ("Box", "Discrete"):
        raise DatasetError(f"{where}: action space {act_space.get('type')} is not supported "
                           "(only Box and Discrete)")
    discrete = act_space["type"] == "Discrete"
    num_actions = int(act_space["n"]) if discrete else None
    if discrete and int(act_space.get("start", 0)) != 0:
        raise DatasetError(f"{where}: Discrete action spaces must start at 0")

    fmt = metadata.get("data_format", "hdf5")
    if fmt == "hdf5" and not use_minari_api:
        episodes = _read_hdf5_episodes(data_dir / "main_data.hdf5")
    else:
        episodes = _read_api_episodes(data_dir)
    episodes = [ep for ep in episodes if len(ep["rewards"]) > 0]
    if not episodes:
        raise DatasetError(f"{where}: the dataset is empty (no episode with a transition)")

    for ep in episodes:
        n = len(ep["rewards"])
        sizes = {k: int(ep[k].shape[0]) for k in ("observations", "actions", "rewards",
                                                   "terminations", "truncations")}
        if sizes["observations"] != n + 1 or any(
                sizes[k] != n for k in ("actions", "terminations", "truncations")):
            raise DatasetError(f"{where}: {ep['name']} has mismatched lengths {sizes} (Minari "
                               f"stores T+1 observations and T of everything else, T={n})")
        for k in ("observations", "actions", "rewards"):
            check_finite(ep[k], k, f"{where} {ep['name']}")

    lo, hi, source = resolve_ref_scores(
        env, metadata.get("ref_min_score"), metadata.get("ref_max_score"),
        f"Minari dataset metadata ({dataset_id})", ref_min_score, ref_max_score)

    lengths = np.array([len(ep["rewards"]) for ep in episodes], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    def cat(key):
        return np.concatenate([ep[key] for ep in episodes])

    obs = np.concatenate([ep["observations"][:-1] for ep in episodes])
    obs = obs.reshape(len(obs), -1)
    dataset = TrajectoryDataset(
        observations=obs, actions=cat("actions"), rewards=cat("rewards"),
        terminals=cat("terminations"), timeouts=cat("truncations"), episode_starts=starts,
        episode_lengths=lengths, env_id=env, ref_min_score=lo, ref_max_score=hi,
        ref_source=source, name=dataset_id, discrete=discrete, num_actions=num_actions)
    check_env_spaces(env, dataset.obs_dim, dataset.act_dim, discrete, where)
    return dataset
