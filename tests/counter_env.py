"""A tiny deterministic gymnasium env for runner tests (no MuJoCo, renders without GL)."""

import gymnasium
import numpy as np

COUNTER_ID = "S4dmTestCounter-v0"
COUNTER_LIMIT = 12  # registered time limit


class CounterEnv(gymnasium.Env):
    """obs = [resets so far, t, x]: x starts at a seeded uniform in [0, 0.5) and moves by the
    action sum each step; reward = 1 + x; terminated when x > 3. Frames encode (resets, t)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode=None):
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (3,), np.float64)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.render_mode = render_mode
        self.resets, self.t, self.x = 0, 0, 0.0

    def _obs(self):
        return np.array([self.resets, self.t, self.x], np.float64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.resets += 1
        self.t, self.x = 0, float(self.np_random.uniform(0.0, 0.5))
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        self.x += float(np.sum(action))
        return self._obs(), 1.0 + self.x, self.x > 3.0, False, {}

    def render(self):
        frame = np.zeros((4, 4, 3), np.uint8)
        frame[..., 0], frame[..., 1] = self.resets, self.t
        return frame


if COUNTER_ID not in gymnasium.registry:
    gymnasium.register(COUNTER_ID, entry_point=CounterEnv, max_episode_steps=COUNTER_LIMIT)
