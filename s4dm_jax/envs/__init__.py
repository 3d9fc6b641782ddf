"""Environments: construction and id validation (`make`), and the one loop that runs a policy
in them (`runner`); the memory tasks this package registers with gymnasium on import: T-Maze
(`tmaze`, "s4dm_jax/TMazePassive-L{L}-v0", "s4dm_jax/TMazeActive-L{L}-v0") and velocity-masked
MuJoCo (`masked`, "s4dm_jax/Hopper-P-v5", ...). Sits below data/, rl/ and evaluate/, which use
it; imports none of them."""

from s4dm_jax.envs import masked, tmaze
from s4dm_jax.envs.make import (
    EnvError,
    check_env_spaces,
    make_env,
    make_vector_env,
    registered_env_ids,
    validate_env_id,
)
from s4dm_jax.envs.runner import Policy, RunResult, StepContext, run_episodes

tmaze.register_all()
masked.register_all()

__all__ = [
    "EnvError", "Policy", "RunResult", "StepContext", "check_env_spaces", "make_env",
    "make_vector_env", "masked", "registered_env_ids", "run_episodes", "tmaze", "validate_env_id",
]
