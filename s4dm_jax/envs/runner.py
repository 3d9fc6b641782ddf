"""The one environment loop: run a policy in a gymnasium vector env and return its episodes.

`run_episodes` steps every copy of a `SyncVectorEnv` made with autoreset DISABLED
(`make_vector_env`) with one policy call per step for all copies, and resets a copy itself when
its episode ends: the last observation of an episode (what `step` returned) is recorded as its
final observation, the reset's observation is the first of the next episode; the two never
mix. Termination (the env's terminal state) and truncation (the env's time limit, the runner's
`max_episode_steps` or the end of a step budget) are recorded separately. A copy that has run
its episodes is parked: reset and stepped on with the others (the vector env steps all copies),
its steps neither recorded nor counted.

Evaluation of the sequence models, GIF rendering, dataset collection and SAC evaluation all
run through here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection

import gymnasium
import numpy as np


@dataclasses.dataclass(frozen=True)
class StepContext:
    """What a policy may need besides the observations [N, ...] of the N env copies."""

    t: np.ndarray            # int [N] steps taken in each copy's current episode (0: a first obs)
    prev_reward: np.ndarray  # f64 [N] reward of the step that led to the obs (0 at a first obs)
    active: np.ndarray       # bool [N] False for parked copies (their actions are ignored)


# observations [N, ...], context -> actions [N, ...] (one batched call for every copy)
Policy = Callable[[np.ndarray, StepContext], np.ndarray]


@dataclasses.dataclass
class RunResult:
    """Episodes ordered by env copy, then by start (copy 0's episodes first)."""

    returns: np.ndarray     # f64 [M] undiscounted returns
    lengths: np.ndarray     # int [M] steps
    terminated: np.ndarray  # bool [M] ended in a terminal state
    truncated: np.ndarray   # bool [M] cut by a time limit or the step budget
    env_index: np.ndarray   # int [M] the copy that ran it
    env_steps: int          # recorded steps, sum(lengths)
    # keep "transitions": per episode observations [T+1, ...] (the final one included), actions
    # [T, ...], rewards f64 [T], terminations / truncations bool [T] (set only at the last step)
    episodes: list[dict[str, np.ndarray]] | None = None
    # keep "frames": per episode the T+1 frames (first observation's, then one per step)
    frames: list[list[np.ndarray]] | None = None


# What run_episodes can return besides returns and lengths (its `keep`).
KEEP = ("transitions", "frames")


def run_episodes(envs: gymnasium.vector.VectorEnv, policy: Policy, *, seed: int | None,
                 episodes_per_env: int | None = None, steps_per_env: int | None = None,
                 max_episode_steps: int | None = None, keep: Collection[str] = (),
                 on_steps: Callable[[int], None] | None = None) -> RunResult:
    """Reset `envs` (copy i seeded `seed` + i) and run `policy` until every copy has run
    `episodes_per_env` episodes or exactly `steps_per_env` steps (exactly one of the two; the
    last episode of a step budget is cut there and marked truncated).

    max_episode_steps: cut (truncate) episodes at this many steps (None: only the env's own
    time limit). keep: what to return besides returns and lengths, any of KEEP: "transitions"
    (each episode's), "frames" (its frames; the vector env made with render_mode="rgb_array").
    on_steps(k) is called with the k steps recorded at each vector step (progress bars).
    """
    unknown = sorted(set(keep) - set(KEEP))
    if unknown or isinstance(keep, str):
        raise ValueError(f"run_episodes: keep={keep!r} must be a collection of {KEEP}")
    record, render = "transitions" in keep, "frames" in keep
    if (episodes_per_env is None) == (steps_per_env is None):
        raise ValueError("run_episodes: pass exactly one of episodes_per_env and steps_per_env")
    if min(episodes_per_env or 1, steps_per_env or 1, max_episode_steps or 1) < 1:
        raise ValueError("run_episodes: episodes_per_env, steps_per_env and max_episode_steps "
                         "must be >= 1")
    if envs.metadata.get("autoreset_mode") != gymnasium.vector.AutoresetMode.DISABLED:
        raise ValueError("run_episodes resets env copies itself: make the vector env with "
                         "autoreset_mode=AutoresetMode.DISABLED (s4dm_jax.envs.make_vector_env)")
    n = envs.num_envs
    t = np.zeros(n, np.int64)
    ret = np.zeros(n)
    prev_reward = np.zeros(n)
    active = np.ones(n, bool)
    episodes_done = np.zeros(n, np.int64)
    steps_done = np.zeros(n, np.int64)
    finished: list[tuple[int, int, float, int, bool, bool]] = []  # env, k, return, len, term, trunc
    current = [_new_record() for _ in range(n)] if record else None
    recorded: dict[tuple[int, int], dict] = {}
    frames = [[] for _ in range(n)] if render else None
    kept_frames: dict[tuple[int, int], list] = {}

    obs, _ = envs.reset(seed=seed)
    if record:
        for i in range(n):
            current[i]["observations"].append(obs[i])
    if render:
        for i, frame in enumerate(envs.render()):
            frames[i].append(frame)
    while active.any():
        actions = policy(obs, StepContext(t.copy(), prev_reward.copy(), active.copy()))
        next_obs, reward, term, trunc, _ = envs.step(actions)
        env_done = term | trunc
        t += 1
        ret += reward
        steps_done += active
        cut = active & (  # the runner's limits, on recorded episodes only
            (max_episode_steps is not None and t >= max_episode_steps)
            | (steps_per_env is not None and steps_done >= steps_per_env))
        trunc = trunc | (cut & ~term)
        ended = active & (term | trunc)
        if on_steps is not None:
            on_steps(int(active.sum()))
        if record:
            for i in np.flatnonzero(active):
                _append(current[i], next_obs[i], actions[i], reward[i], term[i], trunc[i])
        if render:
            for i, frame in enumerate(envs.render()):
                if active[i]:
                    frames[i].append(frame)
        for i in np.flatnonzero(ended):
            key = (int(i), int(episodes_done[i]))
            finished.append((*key, float(ret[i]), int(t[i]), bool(term[i]), bool(trunc[i])))
            if record:
                recorded[key], current[i] = _finish(current[i]), _new_record()
            if render:
                kept_frames[key], frames[i] = frames[i], []
            episodes_done[i] += 1
            if (episodes_per_env is not None and episodes_done[i] >= episodes_per_env) or (
                    steps_per_env is not None and steps_done[i] >= steps_per_env):
                active[i] = False
        restart = env_done | ended  # the env's own end, or the runner's cut
        obs = next_obs
        if restart.any() and active.any():
            obs, _ = envs.reset(options={"reset_mask": restart})
            first = np.flatnonzero(restart & active)
            if record:
                for i in first:
                    current[i]["observations"].append(obs[i])
            if render and len(first):
                rendered = envs.render()
                for i in first:
                    frames[i].append(rendered[i])
        t[restart], ret[restart], prev_reward[:] = 0, 0.0, np.where(restart, 0.0, reward)

    finished.sort()
    env_index, _, returns, lengths, terminated, truncated = (
        np.asarray(col) for col in zip(*finished, strict=True))
    keys = [(e, k) for e, k, *_ in finished]
    return RunResult(
        returns=returns.astype(np.float64), lengths=lengths.astype(np.int64),
        terminated=terminated.astype(bool), truncated=truncated.astype(bool),
        env_index=env_index.astype(np.int64), env_steps=int(lengths.sum()),
        episodes=[recorded[k] for k in keys] if record else None,
        frames=[kept_frames[k] for k in keys] if render else None)


def _new_record() -> dict[str, list]:
    return {"observations": [], "actions": [], "rewards": [], "terminations": [],
            "truncations": []}


def _append(rec: dict[str, list], next_obs, action, reward, term, trunc) -> None:
    rec["observations"].append(next_obs)
    rec["actions"].append(action)
    rec["rewards"].append(float(reward))
    rec["terminations"].append(bool(term))
    rec["truncations"].append(bool(trunc))


def _finish(rec: dict[str, list]) -> dict[str, np.ndarray]:
    return {
        "observations": np.asarray(rec["observations"]),
        "actions": np.asarray(rec["actions"]),
        "rewards": np.asarray(rec["rewards"], np.float64),
        "terminations": np.asarray(rec["terminations"], bool),
        "truncations": np.asarray(rec["truncations"], bool),
    }
