"""Velocity-masked MuJoCo ("-P" tasks: positions only; Ni et al. 2022, "Recurrent Model-Free
RL Can Be a Strong Baseline for Many POMDPs", their envs/pomdp: the observation keeps only the
position columns, the velocities are removed).

Gymnasium v5 observations are qpos[1:] then qvel (exclude_current_positions_from_observation
=True, the default): Hopper 5 + 6, Walker2d and HalfCheetah 8 + 9; POSITION_COLUMNS keeps the
first block. Registered ids (on import of s4dm_jax.envs): "s4dm_jax/Hopper-P-v5",
"s4dm_jax/Walker2d-P-v5", "s4dm_jax/HalfCheetah-P-v5" (1000-step time limit, as the full-state
v5 tasks). `data.masked.mask_dataset` removes the same columns from a dataset.
"""

from __future__ import annotations

import gymnasium
import numpy as np
from gymnasium import spaces

# full-state id -> (masked id, kept observation columns)
POSITION_COLUMNS = {
    "Hopper-v5": tuple(range(5)),
    "Walker2d-v5": tuple(range(8)),
    "HalfCheetah-v5": tuple(range(8)),
}
MASKED_IDS = {base: f"s4dm_jax/{base[:-3]}-P-v5" for base in POSITION_COLUMNS}
FULL_OBS_DIM = {"Hopper-v5": 11, "Walker2d-v5": 17, "HalfCheetah-v5": 17}


class VelocityMask(gymnasium.ObservationWrapper):
    """Keep the observation columns `keep` (a Box observation [obs_dim] -> [len(keep)])."""

    def __init__(self, env: gymnasium.Env, keep):
        super().__init__(env)
        self.keep = np.asarray(keep, np.int64)
        box = env.observation_space
        if not isinstance(box, spaces.Box) or box.shape != (box.shape[0],):
            raise ValueError(f"VelocityMask needs a flat Box observation, got {box}")
        if len(self.keep) == 0 or self.keep.min() < 0 or self.keep.max() >= box.shape[0]:
            raise ValueError(f"columns {keep} do not index an observation of size {box.shape[0]}")
        self.observation_space = spaces.Box(box.low[self.keep], box.high[self.keep],
                                            dtype=box.dtype)

    def observation(self, observation):
        return observation[self.keep]


def make_masked(base_id: str, **kwargs) -> gymnasium.Env:
    """Entry point of the "-P" ids: the base MuJoCo env (no wrappers; the registration adds the
    time limit) with its velocity columns removed."""
    if base_id not in POSITION_COLUMNS:
        raise ValueError(f"no velocity mask for {base_id!r}; known: {sorted(POSITION_COLUMNS)}")
    env = gymnasium.make(base_id, disable_env_checker=True, **kwargs).unwrapped
    if env.observation_space.shape != (FULL_OBS_DIM[base_id],):
        raise ValueError(f"{base_id} observations have shape {env.observation_space.shape}, "
                         f"expected ({FULL_OBS_DIM[base_id]},): the position columns would be "
                         "wrong (pass no exclude_current_positions_from_observation)")
    return VelocityMask(env, POSITION_COLUMNS[base_id])


def register_all() -> None:
    """Register the "-P" ids (idempotent; MuJoCo is only needed when one is made)."""
    for base, masked in MASKED_IDS.items():
        if masked not in gymnasium.registry:
            gymnasium.register(masked, entry_point=make_masked, max_episode_steps=1000,
                               kwargs={"base_id": base})
