"""Numpy replay buffer that keeps transitions in collection order (so the episodes of a run can
be recovered for D4RL-style "medium-replay" datasets)."""

from __future__ import annotations

import os

import numpy as np


class ReplayBuffer:
    """Transitions stored in insertion order (no wrap-around: capacity must cover the run).

    Arrays (first ``size`` rows valid): obs f32 [cap, obs], act f32 [cap, act], rew f32 [cap],
    next_obs f32 [cap, obs], terminated bool [cap], truncated bool [cap].
    """

    FIELDS = ("obs", "act", "rew", "next_obs", "terminated", "truncated")

    def __init__(self, obs_dim: int, act_dim: int, capacity: int):
        self.capacity, self.size = int(capacity), 0
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.act = np.zeros((capacity, act_dim), np.float32)
        self.rew = np.zeros((capacity,), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.terminated = np.zeros((capacity,), bool)
        self.truncated = np.zeros((capacity,), bool)

    def add(self, obs, act, rew, next_obs, terminated: bool, truncated: bool) -> None:
        """Append one transition; raises when full (a D4RL replay must keep every step)."""
        if self.size >= self.capacity:
            raise RuntimeError(
                f"replay buffer full ({self.capacity} transitions); raise its capacity"
            )
        i = self.size
        self.obs[i], self.act[i], self.rew[i] = obs, act, rew
        self.next_obs[i] = next_obs
        self.terminated[i], self.truncated[i] = terminated, truncated
        self.size += 1

    def sample(self, rng: np.random.Generator, n: int, batch_size: int) -> dict[str, np.ndarray]:
        """n stacked uniform batches: dict of [n, batch_size, ...] for ``SAC.update_many``."""
        idx = rng.integers(0, self.size, size=(n, batch_size))
        return {
            "obs": self.obs[idx],
            "act": self.act[idx],
            "rew": self.rew[idx],
            "next_obs": self.next_obs[idx],
            "done": self.terminated[idx].astype(np.float32),
        }

    def arrays(self, close_last: bool = True) -> dict[str, np.ndarray]:
        """Valid rows as a dict; close_last marks an unfinished last episode truncated."""
        out = {k: getattr(self, k)[: self.size].copy() for k in self.FIELDS}
        if close_last and self.size and not (out["terminated"][-1] or out["truncated"][-1]):
            out["truncated"][-1] = True
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write the valid rows to a compressed .npz (last episode closed as truncated)."""
        np.savez_compressed(path, **self.arrays(close_last=True))

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReplayBuffer:
        """Inverse of ``save`` (capacity = stored size)."""
        with np.load(path) as z:
            data = {k: z[k] for k in cls.FIELDS}
        buf = cls(data["obs"].shape[1], data["act"].shape[1], len(data["rew"]))
        for k in cls.FIELDS:
            getattr(buf, k)[:] = data[k]
        buf.size = len(data["rew"])
        return buf


def split_episodes(arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Split ordered transitions into episodes at terminated | truncated.

    Returns dicts with observations [T+1, obs] (next_obs of the last step appended), actions
    [T, act], rewards [T], terminations [T], truncations [T]. A trailing unfinished
    episode is returned with its last step marked truncated.
    """
    ends = np.flatnonzero(arrays["terminated"] | arrays["truncated"])
    n = len(arrays["rew"])
    if n and (len(ends) == 0 or ends[-1] != n - 1):
        ends = np.append(ends, n - 1)
    episodes, start = [], 0
    for end in ends:
        sl = slice(start, end + 1)
        trunc = arrays["truncated"][sl].copy()
        term = arrays["terminated"][sl].copy()
        if not (term[-1] or trunc[-1]):
            trunc[-1] = True
        episodes.append(
            {
                "observations": np.concatenate(
                    [arrays["obs"][sl], arrays["next_obs"][end : end + 1]], axis=0
                ),
                "actions": arrays["act"][sl],
                "rewards": arrays["rew"][sl],
                "terminations": term,
                "truncations": trunc,
            }
        )
        start = end + 1
    return episodes
