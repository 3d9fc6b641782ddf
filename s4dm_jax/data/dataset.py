"""TrajectoryDataset, reference scores and environment checks (`load_dataset` is in loading.py).

A dataset is a flat array of T transitions split into E contiguous episodes
(`episode_starts[i]`, `episode_lengths[i]`), with the gymnasium id to evaluate in and the
reference returns used for normalised scores.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s4dm_jax import envs
from s4dm_jax.data.errors import DatasetError

# The small dataset shipped inside the package (a Minari store rooted at EMBEDDED_DATASETS_ROOT).
EMBEDDED_DATASET_ID = "s4dm/hopper/medium-mini-v0"
EMBEDDED_DATASETS_ROOT = Path(__file__).resolve().parent.parent / "assets" / "datasets"

# D4RL reference returns (Farama-Foundation/D4RL d4rl/infos.py): (random, expert).
D4RL_REF_SCORES = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
}
# gymnasium ids used for the D4RL locomotion environments.
D4RL_ENV_IDS = {"halfcheetah": "HalfCheetah-v5", "hopper": "Hopper-v5", "walker2d": "Walker2d-v5"}


_KINDS = ("medium-replay", "medium-expert", "random", "medium", "expert")


def collect_command(dataset_id: str | None = None, root=None) -> str:
    """The `python -m s4dm_jax.data.collect` command that creates `dataset_id` (s4dm/<env>/...).

    Ids outside s4dm/{halfcheetah,hopper,walker2d}/<name>-v<N> get a generic example.
    """
    match = re.fullmatch(r"s4dm/(halfcheetah|hopper|walker2d)/([A-Za-z0-9_.\-]+)-v(\d+)",
                         dataset_id or "")
    env, name, version = match.groups() if match else ("hopper", "medium", "0")
    kind = next((k for k in _KINDS if name == k or name.startswith(k + "-")), "medium")
    cmd = f"python -m s4dm_jax.data.collect --env {env} --dataset {kind}"
    if name != kind:
        cmd += f" --name {name}"
    if version != "0":
        cmd += f" --version {version}"
    if root is not None:
        cmd += f" --root {root}"
    return cmd


# ----------------------------------------------------------------------------- dataset


@dataclass(frozen=True, eq=False)
class TrajectoryDataset:
    """Offline RL transitions split into episodes.

    observations f32 [T, obs]; actions f32 [T, act] (discrete: int32 [T]); rewards f32 [T];
    terminals / timeouts bool [T]; episode_starts / episode_lengths int64 [E] tiling [0, T).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    episode_starts: np.ndarray
    episode_lengths: np.ndarray
    env_id: str
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    ref_source: str = "none"
    name: str = ""
    discrete: bool = False
    num_actions: int | None = None  # discrete only: size of the action set

    def __post_init__(self):
        where = self.name or "dataset"
        obs = np.asarray(self.observations, dtype=np.float32)
        if obs.ndim == 1:
            obs = obs[:, None]
        if self.discrete:
            act = np.asarray(self.actions)
            if act.ndim == 2 and act.shape[1] == 1:
                act = act[:, 0]
            if act.ndim != 1:
                raise DatasetError(
                    f"{where}: discrete actions must have shape [T], got {act.shape}")
            act = act.astype(np.int32)
        else:
            act = np.asarray(self.actions, dtype=np.float32)
            if act.ndim == 1:
                act = act[:, None]
        rew = np.asarray(self.rewards, dtype=np.float32).reshape(-1)
        term = np.asarray(self.terminals).astype(bool).reshape(-1)
        tout = np.asarray(self.timeouts).astype(bool).reshape(-1)
        starts = np.asarray(self.episode_starts, dtype=np.int64).reshape(-1)
        lengths = np.asarray(self.episode_lengths, dtype=np.int64).reshape(-1)
        if obs.ndim != 2 or act.ndim not in (1, 2):
            raise DatasetError(f"{where}: observations must be [T, obs] and actions [T, act]; "
                               f"got {obs.shape} and {act.shape}")
        sizes = {"observations": len(obs), "actions": len(act), "rewards": len(rew),
                 "terminals": len(term), "timeouts": len(tout)}
        if len(set(sizes.values())) != 1:
            raise DatasetError(f"{where}: arrays have mismatched lengths {sizes}")
        num = len(rew)
        if num == 0:
            raise DatasetError(f"{where}: the dataset is empty (0 transitions)")
        if (len(starts) != len(lengths) or len(starts) == 0 or np.any(lengths <= 0)
                or starts[0] != 0 or np.any(starts[1:] != starts[:-1] + lengths[:-1])
                or starts[-1] + lengths[-1] != num):
            raise DatasetError(f"{where}: episode_starts/episode_lengths must tile [0, {num}) "
                               "with positive, contiguous episodes")
        for key, arr in (("observations", obs), ("actions", act), ("rewards", rew)):
            check_finite(arr, key, where)
        if self.discrete and (act.min() < 0 or
                              (self.num_actions is not None and act.max() >= self.num_actions)):
            raise DatasetError(f"{where}: discrete actions must lie in [0, {self.num_actions}); "
                               f"got values in [{act.min()}, {act.max()}]")
        for key, value in (("observations", obs), ("actions", act), ("rewards", rew),
                           ("terminals", term), ("timeouts", tout),
                           ("episode_starts", starts), ("episode_lengths", lengths)):
            object.__setattr__(self, key, value)
        for key in ("ref_min_score", "ref_max_score"):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, float(value))

    @classmethod
    def from_flat(cls, observations, actions, rewards, terminals, timeouts, **kwargs):
        """Split flat D4RL-style arrays into episodes ending where terminals | timeouts.

        A final tail with neither flag set is an episode too. kwargs go to the constructor.
        """
        done = np.asarray(terminals).astype(bool).reshape(-1) | np.asarray(timeouts).astype(
            bool).reshape(-1)
        ends = np.flatnonzero(done) + 1
        num = len(done)
        if num == 0 or ends.size == 0 or ends[-1] != num:
            ends = np.append(ends, num)
        starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
        return cls(observations, actions, rewards, terminals, timeouts, starts,
                   (ends - starts).astype(np.int64), **kwargs)

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        """Action size; for discrete datasets the number of actions."""
        if self.discrete:
            if self.num_actions is not None:
                return int(self.num_actions)
            return int(self.actions.max()) + 1
        return int(self.actions.shape[1])

    @property
    def num_episodes(self) -> int:
        return int(len(self.episode_starts))

    @property
    def num_steps(self) -> int:
        return int(len(self.rewards))

    @property
    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each episode, f32 [E] (summed in float64)."""
        return np.add.reduceat(self.rewards.astype(np.float64), self.episode_starts).astype(
            np.float32)

    def normalized_score(self, returns):
        """100 * (R - ref_min) / (ref_max - ref_min), for a scalar or an array of returns."""
        if self.ref_min_score is None or self.ref_max_score is None:
            raise DatasetError(
                f"{self.name or 'this dataset'} (env {self.env_id}) has no reference scores "
                f"(ref_min_score={self.ref_min_score}, ref_max_score={self.ref_max_score}); pass "
                "ref_min_score= and ref_max_score= to load_dataset (config.ref_min_score / "
                "config.ref_max_score) to get normalised scores")
        span = self.ref_max_score - self.ref_min_score
        out = 100.0 * (np.asarray(returns, dtype=np.float64) - self.ref_min_score) / span
        return float(out) if out.ndim == 0 else out

    def __repr__(self) -> str:
        return (f"TrajectoryDataset(name={self.name!r}, env_id={self.env_id!r}, "
                f"steps={self.num_steps}, episodes={self.num_episodes}, obs_dim={self.obs_dim}, "
                f"act_dim={self.act_dim}, discrete={self.discrete}, refs=({self.ref_min_score}, "
                f"{self.ref_max_score}) from {self.ref_source!r})")


def check_finite(arr: np.ndarray, key: str, where: str) -> None:
    """DatasetError naming `key` and the count if `arr` holds NaN or inf."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(arr)
    if bad.any():
        n_nan = int(np.isnan(arr).sum())
        raise DatasetError(f"{where}: key '{key}' has {int(bad.sum())} non-finite values "
                           f"({n_nan} NaN, {int(bad.sum()) - n_nan} inf); clean the data first")


# ----------------------------------------------------------------------------- references


def d4rl_env_key(env_id: str | None) -> str | None:
    """'Hopper-v5' -> 'hopper' (halfcheetah / hopper / walker2d only), else None."""
    if not env_id:
        return None
    base = re.sub(r"-v\d+$", "", env_id.split("/")[-1]).lower()
    return base if base in D4RL_REF_SCORES else None


def infer_env_id(name: str) -> str | None:
    """Gymnasium id from a file name containing halfcheetah / hopper / walker2d, else None."""
    flat = re.sub(r"[^a-z0-9]", "", name.lower())
    for key in ("halfcheetah", "hopper", "walker2d"):
        if key in flat:
            return D4RL_ENV_IDS[key]
    return None


def resolve_ref_scores(env_id, meta_min=None, meta_max=None, meta_source="",
                       ref_min_score=None, ref_max_score=None):
    """(ref_min, ref_max, ref_source): explicit args > dataset metadata > D4RL constants."""
    base_min = base_max = None
    base_source = "none"
    key = d4rl_env_key(env_id)
    if meta_min is not None and meta_max is not None:
        base_min, base_max, base_source = float(meta_min), float(meta_max), meta_source
    elif key is not None:
        base_min, base_max = D4RL_REF_SCORES[key]
        base_source = f"D4RL reference constants ({key})"
    lo = base_min if ref_min_score is None else float(ref_min_score)
    hi = base_max if ref_max_score is None else float(ref_max_score)
    if ref_min_score is not None and ref_max_score is not None:
        source = "user-provided"
    elif ref_min_score is not None:
        source = f"ref_min_score user-provided; ref_max_score from {base_source}"
    elif ref_max_score is not None:
        source = f"ref_max_score user-provided; ref_min_score from {base_source}"
    else:
        source = base_source
    if lo is not None and hi is not None and not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise DatasetError(f"reference scores must be finite with ref_max_score > ref_min_score; "
                           f"got ref_min_score={lo}, ref_max_score={hi} ({source})")
    return lo, hi, source


# ----------------------------------------------------------------------------- env check


def validate_env_id(env_id: str, *, explicit: bool, where: str, source: str = "") -> str:
    """`s4dm_jax.envs.validate_env_id` raising DatasetError: an id read from data (`explicit`
    False) must be an exact gymnasium registry key, so data never makes gymnasium import code."""
    return envs.validate_env_id(env_id, explicit=explicit, where=where, source=source,
                                error=DatasetError)


def check_env_spaces(env_id: str, obs_dim: int, act_dim: int, discrete: bool, where: str) -> None:
    """`s4dm_jax.envs.check_env_spaces` raising DatasetError (skipped when the env cannot be
    made, e.g. mujoco missing)."""
    envs.check_env_spaces(env_id, obs_dim, act_dim, discrete, where, error=DatasetError)

