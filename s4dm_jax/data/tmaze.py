"""Offline T-Maze datasets, generated in seconds by running behaviour policies in the T-Maze
environments (s4dm_jax.envs.tmaze), deterministically from their spec.

Spec (config.dataset / load_dataset): "tmaze:{passive|active}-L{L}-{mixed|medium}" with
optional "-n{episodes}" (default 1000) and "-s{seed}" (default 0), e.g. "tmaze:passive-L100-mixed"
or "tmaze:active-L30-medium-n2000-s1". The spec is the provenance: the same spec gives the same
transitions (`provenance(spec)` says how they were made; the dataset's `ref_source` names it).

Qualities (D4RL-like mixtures of behaviour policies; a return is a success, 0 or 1):
  * "mixed": a third each of oracle episodes (always succeed), epsilon-noisy oracle episodes
    (the oracle's path; its turn at the junction is a uniformly random action with probability
    EPSILON: 1 - 3 EPSILON / 4 succeed) and uniformly random episodes (succeed with probability
    4^-(L+1), i.e. never);
  * "medium": a memoryless walker on the oracle's path that turns up or down at random at the
    junction (half succeed), the success rate of a policy without memory.
Noise only at the junction: in these fixed-length mazes one random step in the corridor costs
the step needed to reach the junction, so per-step noise makes every noisy episode fail.
Reference scores 0 and 1: a normalised score is 100 x the success rate.
"""

from __future__ import annotations

import re

import numpy as np

from s4dm_jax.data.dataset import TrajectoryDataset
from s4dm_jax.data.errors import DatasetError
from s4dm_jax.envs import tmaze as tmaze_env

EPSILON = 0.5
DEFAULT_EPISODES = 1000
QUALITIES = ("mixed", "medium")
_SPEC = re.compile(r"^tmaze:(passive|active)-L([1-9][0-9]*)-(mixed|medium)"
                   r"(?:-n([1-9][0-9]*))?(?:-s([0-9]+))?$")


def is_tmaze_spec(text: str) -> bool:
    """True for a string that starts like a T-Maze dataset spec ("tmaze:")."""
    return str(text).startswith("tmaze:")


def parse_spec(spec: str) -> dict:
    """{kind, corridor_length, quality, episodes, seed} of a spec; DatasetError when malformed."""
    match = _SPEC.match(str(spec).strip())
    if not match:
        raise DatasetError(
            f"T-Maze dataset spec {spec!r} is not understood: use "
            "'tmaze:{passive|active}-L{length}-{mixed|medium}' with optional '-n{episodes}' and "
            "'-s{seed}', e.g. 'tmaze:passive-L100-mixed' or 'tmaze:active-L30-medium-n2000-s1'")
    kind, length, quality, episodes, seed = match.groups()
    return {"kind": kind, "corridor_length": int(length), "quality": quality,
            "episodes": int(episodes or DEFAULT_EPISODES), "seed": int(seed or 0)}


def provenance(spec: str) -> dict:
    """How the dataset of `spec` is made (the record a generated dataset carries)."""
    p = parse_spec(spec)
    policies = {"mixed": ["oracle", f"epsilon-noisy oracle (epsilon={EPSILON} at the junction)",
                          "uniform random"],
                "medium": ["memoryless walker (oracle path, random up/down turn)"]}[p["quality"]]
    return {**p, "env_id": tmaze_env.tmaze_env_id(p["kind"], p["corridor_length"]),
            "behaviour_policies": policies, "generator": "s4dm_jax.data.tmaze",
            "env_seeds": f"reset(seed={p['seed']} * 1_000_003 + episode)"}


def _behaviour(quality: str, episode: int, n: int) -> str:
    if quality == "medium":
        return "walker"
    return ("oracle", "noisy", "random")[min(3 * episode // n, 2)]


def _episode(env, policy: str, rng: np.random.Generator, seed: int) -> dict:
    obs, info = env.reset(seed=seed)
    goal = info["goal"]
    observations, actions, rewards = [], [], []
    done, t = False, 0
    while not done:
        junction = t == env.episode_length - 1
        turn = int(rng.choice([-1, 1])) if policy == "walker" and junction else goal
        action = tmaze_env.oracle_action(env.kind, env.corridor_length, t, turn)
        if policy == "random" or (policy == "noisy" and junction and rng.random() < EPSILON):
            action = int(rng.integers(4))
        observations.append(obs)
        actions.append(action)
        obs, reward, done, _, _ = env.step(action)
        rewards.append(reward)
        t += 1
    return {"observations": np.asarray(observations, np.float32),
            "actions": np.asarray(actions, np.int32), "rewards": np.asarray(rewards, np.float32)}


def generate(spec: str) -> TrajectoryDataset:
    """The dataset of `spec` (see the module docstring); terminals at each episode's end."""
    p = parse_spec(spec)
    env = tmaze_env.TMazeEnv(p["corridor_length"], p["kind"])
    rng = np.random.default_rng(p["seed"])
    eps = [_episode(env, _behaviour(p["quality"], i, p["episodes"]), rng,
                    p["seed"] * 1_000_003 + i) for i in range(p["episodes"])]
    lengths = np.array([len(e["rewards"]) for e in eps], np.int64)
    terminals = np.zeros(int(lengths.sum()), bool)
    terminals[np.cumsum(lengths) - 1] = True
    return TrajectoryDataset(
        np.concatenate([e["observations"] for e in eps]),
        np.concatenate([e["actions"] for e in eps]),
        np.concatenate([e["rewards"] for e in eps]), terminals, np.zeros_like(terminals),
        np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64), lengths,
        env_id=tmaze_env.tmaze_env_id(p["kind"], p["corridor_length"]), ref_min_score=0.0,
        ref_max_score=1.0, ref_source=f"T-Maze success rate (generated: {provenance(spec)})",
        name=str(spec).strip(), discrete=True, num_actions=4)


def load_tmaze(spec: str, *, env_id: str | None = None, ref_min_score: float | None = None,
               ref_max_score: float | None = None) -> TrajectoryDataset:
    """`generate(spec)` for load_dataset; env_id / ref_* must be left unset (the spec decides)."""
    given = {k: v for k, v in (("env_id", env_id), ("ref_min_score", ref_min_score),
                               ("ref_max_score", ref_max_score)) if v is not None}
    if given:
        raise DatasetError(f"{spec}: a T-Maze dataset fixes its environment and reference "
                           f"scores; do not pass {sorted(given)}")
    return generate(spec)
