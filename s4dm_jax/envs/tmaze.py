"""Passive and Active T-Maze (Ni et al. 2023, "When Do Transformers Shine in RL? Decoupling
Memory from Credit Assignment"; their code: twni2016/Memory-RL, envs/tmaze.py,
TMazeClassicPassive / TMazeClassicActive). Our own implementation of that specification.

Layout (x to the right, y up), corridor length L, oracle length o (0 passive, 1 active):

        x = 0 (oracle: shows the goal side)  ...  x = o + L (junction); goals at y = +1 / -1

* Passive (o = 0): the episode starts on the oracle, whose observation at t = 0 shows the goal
  side; episode length L + 1 (L moves right, then up or down).
* Active (o = 1): the episode starts at x = 1; the agent must first step left onto the oracle to
  see the goal side; episode length L + 3.
* Actions Discrete(4): 0 right, 1 up, 2 left, 3 down; a move into a wall leaves the agent in
  place. Observation float32 [2] (ambiguous positions, as in the classic task): [0, g] on the
  oracle's first visit (g = goal side +-1), [0, 0] elsewhere in the corridor, [1, y] at the
  junction and on a goal cell.
* Reward: 1 at the last step when the agent stands on the goal cell, else 0. Departure from Ni
  et al.'s experiments: they add a per-step penalty when the agent falls behind the optimal
  x (penalty < 0, `reward_fn`); here the reward is only at the end (their `penalty=0`, the
  classic T-Maze of Bakker 2001), so an episode's return is its success.
* The episode terminates after its fixed length (`terminated`, no time limit wrapper);
  info["success"] is set at the last step (bool), info["goal"] is the goal side.

Registered ids (on import of s4dm_jax.envs): "s4dm_jax/TMazePassive-L{L}-v0" and
"s4dm_jax/TMazeActive-L{L}-v0" for L in REGISTERED_LENGTHS; `tmaze_env_id(kind, L)` registers
any other L >= 1, and an id of that pattern is registered when validated (envs.make), so a
dataset's env_id string alone recreates its environment.
"""

from __future__ import annotations

import re

import gymnasium
import numpy as np
from gymnasium import spaces

KINDS = ("passive", "active")
REGISTERED_LENGTHS = (5, 10, 20, 30, 50, 100, 200, 300, 500, 1000, 1500)
RIGHT, UP, LEFT, DOWN = 0, 1, 2, 3
_MOVES = ((1, 0), (0, 1), (-1, 0), (0, -1))
_ID = re.compile(r"^s4dm_jax/TMaze(Passive|Active)-L([1-9][0-9]*)-v0$")


class TMazeEnv(gymnasium.Env):
    """The T-Maze of the module docstring (corridor_length L >= 1, kind "passive" | "active")."""

    metadata = {"render_modes": []}

    def __init__(self, corridor_length: int = 10, kind: str = "passive",
                 render_mode: str | None = None):
        if kind not in KINDS:
            raise ValueError(f"T-Maze kind must be one of {KINDS}, got {kind!r}")
        if int(corridor_length) != corridor_length or int(corridor_length) < 1:
            raise ValueError(f"corridor_length must be an integer >= 1, got {corridor_length!r}")
        if render_mode is not None:
            raise ValueError("T-Maze has no rendering; pass render_mode=None")
        self.corridor_length = int(corridor_length)
        self.kind = kind
        self.oracle_length = 0 if kind == "passive" else 1
        self.episode_length = self.corridor_length + 2 * self.oracle_length + 1
        self.junction_x = self.oracle_length + self.corridor_length
        self.action_space = spaces.Discrete(4)
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.x = self.y = self.goal = self.t = 0
        self.oracle_seen = False

    def _obs(self) -> np.ndarray:
        if self.x == 0 and not self.oracle_seen:
            self.oracle_seen = True
            return np.array([0.0, self.goal], np.float32)
        if self.x < self.junction_x:
            return np.zeros(2, np.float32)
        return np.array([1.0, self.y], np.float32)

    def _free(self, x: int, y: int) -> bool:
        if y == 0:
            return 0 <= x <= self.junction_x
        return x == self.junction_x and abs(y) == 1

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.x, self.y, self.t = self.oracle_length, 0, 0
        self.goal = int(self.np_random.choice([-1, 1]))
        self.oracle_seen = False
        return self._obs(), {"goal": self.goal}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"T-Maze action must be one of 0..3 (right, up, left, down), got "
                             f"{action!r}")
        if self.t >= self.episode_length:
            raise RuntimeError("T-Maze episode is over; call reset()")
        self.t += 1
        dx, dy = _MOVES[int(action)]
        if self._free(self.x + dx, self.y + dy):
            self.x, self.y = self.x + dx, self.y + dy
        done = self.t >= self.episode_length
        success = bool(done and self.y == self.goal)
        info = {"goal": self.goal}
        if done:
            info["success"] = success
        return self._obs(), float(success), done, False, info


def oracle_action(kind: str, corridor_length: int, t: int, goal: int) -> int:
    """The optimal action at step t (goal side +-1, seen on the oracle): active mazes step left
    first, then right to the junction, then turn to the goal."""
    o = 0 if kind == "passive" else 1
    if o and t == 0:
        return LEFT
    if t == corridor_length + 2 * o:
        return UP if goal > 0 else DOWN
    return RIGHT


def tmaze_env_id(kind: str, corridor_length: int) -> str:
    """The gymnasium id of a T-Maze (registered now if new), e.g. 's4dm_jax/TMazePassive-L30-v0'."""
    if kind not in KINDS:
        raise ValueError(f"T-Maze kind must be one of {KINDS}, got {kind!r}")
    env_id = f"s4dm_jax/TMaze{kind.capitalize()}-L{int(corridor_length)}-v0"
    if not ensure_registered(env_id):
        raise ValueError(f"corridor_length must be an integer >= 1, got {corridor_length!r}")
    return env_id


def ensure_registered(env_id: str) -> bool:
    """Register `env_id` if it is a T-Maze id ('s4dm_jax/TMaze{Passive,Active}-L{L}-v0');
    True if it is one (parsed by a fixed pattern: nothing is imported)."""
    match = _ID.match(str(env_id))
    if not match:
        return False
    if env_id not in gymnasium.registry:
        gymnasium.register(env_id, entry_point=TMazeEnv, disable_env_checker=True,
                           kwargs={"corridor_length": int(match.group(2)),
                                   "kind": match.group(1).lower()})
    return True


def register_all() -> None:
    """Register the T-Maze ids of REGISTERED_LENGTHS (idempotent)."""
    for kind in KINDS:
        for length in REGISTERED_LENGTHS:
            tmaze_env_id(kind, length)
