"""Environments: construction and id validation (`make`), and the one loop that runs a policy
in them (`runner`). Sits below data/, rl/ and evaluate/, which use it; imports none of them."""

from s4dm_jax.envs.make import (
    EnvError,
    check_env_spaces,
    make_env,
    make_vector_env,
    registered_env_ids,
    validate_env_id,
)
from s4dm_jax.envs.runner import Policy, RunResult, StepContext, run_episodes

__all__ = [
    "EnvError", "Policy", "RunResult", "StepContext", "check_env_spaces", "make_env",
    "make_vector_env", "registered_env_ids", "run_episodes", "validate_env_id",
]
