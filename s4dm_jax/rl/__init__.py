"""Soft Actor-Critic in JAX, used to train behaviour policies for dataset generation
(``s4dm_jax.data.collect``)."""

from s4dm_jax.rl.buffer import ReplayBuffer, split_episodes
from s4dm_jax.rl.policy import Policy
from s4dm_jax.rl.sac import SAC, SACConfig, SACState, polyak_update
from s4dm_jax.rl.train import (
    SACTrainConfig,
    TrainResult,
    evaluate_policy,
    make_env,
    train_sac,
)

__all__ = [
    "SAC", "SACConfig", "SACState", "polyak_update", "ReplayBuffer", "split_episodes",
    "Policy", "SACTrainConfig", "TrainResult", "evaluate_policy", "make_env", "train_sac",
]
