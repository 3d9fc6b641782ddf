"""Replay buffers for SAC.

``ReplayBuffer`` (numpy, host) keeps every transition with whole episodes in collection order,
so the episodes of a run can be recovered for D4RL-style "medium-replay" datasets;
``EpisodeAssembler`` feeds it from N parallel environments one finished episode at a time.
``DeviceReplay`` is the fixed-capacity copy that SAC samples from inside its jitted update
(``replay_insert`` / ``replay_sample``), in arrival order.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
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
        self.add_batch({"obs": np.asarray(obs)[None], "act": np.asarray(act)[None],
                        "rew": np.asarray(rew)[None], "next_obs": np.asarray(next_obs)[None],
                        "terminated": np.asarray(terminated)[None],
                        "truncated": np.asarray(truncated)[None]})

    def add_batch(self, rows: dict[str, np.ndarray]) -> None:
        """Append n transitions in order: ``rows`` maps every name in FIELDS to [n, ...]."""
        n = len(rows["rew"])
        if self.size + n > self.capacity:
            raise RuntimeError(
                f"replay buffer full ({self.capacity} transitions); raise its capacity"
            )
        for k in self.FIELDS:
            getattr(self, k)[self.size : self.size + n] = rows[k]
        self.size += n

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


class EpisodeAssembler:
    """Collects the steps of ``num_envs`` parallel environments and appends each episode to a
    ``ReplayBuffer`` as one contiguous block when it ends, so the buffer holds whole episodes in
    the order they finished, ties by env index (with one environment: the collection order).
    """

    def __init__(self, buffer: ReplayBuffer, num_envs: int):
        self.buffer, self.num_envs = buffer, int(num_envs)
        self._pending: list[list[dict[str, np.ndarray]]] = [[] for _ in range(self.num_envs)]

    def add_chunk(self, chunk: dict[str, np.ndarray]) -> None:
        """chunk: FIELDS -> [T, num_envs, ...] (T vector steps); finished episodes are written."""
        ends = chunk["terminated"] | chunk["truncated"]                       # [T, N]
        start = np.zeros(self.num_envs, int)
        # by step, then env: the order they ended
        for end, env in zip(*np.nonzero(ends), strict=True):
            self._pending[env].append({k: v[start[env] : end + 1, env] for k, v in chunk.items()})
            self._write(env)
            start[env] = end + 1
        for env in range(self.num_envs):
            if start[env] < len(ends):
                self._pending[env].append({k: v[start[env] :, env] for k, v in chunk.items()})

    def close(self) -> None:
        """Write every unfinished episode (environment order), its last step marked truncated."""
        for env in range(self.num_envs):
            if self._pending[env]:
                self._pending[env][-1]["truncated"] = self._pending[env][-1]["truncated"].copy()
                self._pending[env][-1]["truncated"][-1] = True
                self._write(env)

    def _write(self, env: int) -> None:
        parts = self._pending[env]
        self.buffer.add_batch({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
        self._pending[env] = []


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


class DeviceReplay(NamedTuple):
    """Fixed-capacity transitions on the device, rows in arrival order (a pytree).

    obs f32 [cap, obs], act f32 [cap, act], rew f32 [cap], next_obs f32 [cap, obs],
    done f32 [cap] (1.0 only on true terminations, not on time limits). The number of valid rows
    is kept by the caller and passed to ``replay_sample``.
    """

    obs: jax.Array
    act: jax.Array
    rew: jax.Array
    next_obs: jax.Array
    done: jax.Array

    @classmethod
    def zeros(cls, obs_dim: int, act_dim: int, capacity: int) -> DeviceReplay:
        """An empty replay of ``capacity`` rows."""
        return cls(jnp.zeros((capacity, obs_dim), jnp.float32),
                   jnp.zeros((capacity, act_dim), jnp.float32),
                   jnp.zeros((capacity,), jnp.float32),
                   jnp.zeros((capacity, obs_dim), jnp.float32),
                   jnp.zeros((capacity,), jnp.float32))


def replay_insert(replay: DeviceReplay, start: jax.Array, rows: dict[str, jax.Array]
                  ) -> DeviceReplay:
    """Write n rows (dict with the DeviceReplay field names, each [n, ...]) at row ``start``.

    The caller guarantees start + n <= capacity (``dynamic_update_slice`` would clamp).
    """
    return DeviceReplay(*(
        jax.lax.dynamic_update_slice_in_dim(getattr(replay, k), rows[k].astype(jnp.float32),
                                            start, axis=0)
        for k in DeviceReplay._fields
    ))


def replay_sample(replay: DeviceReplay, size: jax.Array, key: jax.Array, batch_size: int
                  ) -> dict[str, jax.Array]:
    """A uniform batch (with replacement) from the first ``size`` rows: dict of [batch_size, ...]
    with keys obs, act, rew, next_obs, done (the batch format of ``SAC.update``)."""
    idx = jax.random.randint(key, (batch_size,), 0, size)
    return {k: getattr(replay, k)[idx] for k in DeviceReplay._fields}
