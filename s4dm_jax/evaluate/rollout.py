"""Return-conditioned rollouts of decision models in gymnasium vector environments.

All seeds x targets x episodes run at once in one vector env; the models' `step` API is vmapped
over seeds (their parameters are stacked on a leading axis), so one jitted call per env step
drives every episode.
"""

from __future__ import annotations

import dataclasses
import time

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np


class EvaluationError(ValueError):
    """The evaluation environment cannot be created or does not match the model."""


@dataclasses.dataclass
class RolloutResult:
    returns: np.ndarray  # f64 [S, T, E] undiscounted episode returns
    lengths: np.ndarray  # int [S, T, E] episode lengths
    targets: tuple[float, ...]
    wall_time_s: float
    env_steps: int


def make_vector_env(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """Synchronous vector env (faster than async on few cores for MuJoCo, see REFERENCE 4)."""
    try:
        return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync")
    except gym.error.Error as e:
        raise EvaluationError(
            f"cannot create the evaluation environment {env_id!r}: {e}. Pass --config.env_id with "
            "a registered gymnasium id (e.g. Hopper-v5; MuJoCo envs need gymnasium[mujoco])."
        ) from e


def check_eval_env(env_id: str, obs_dim: int) -> None:
    """EvaluationError now if `env_id` cannot be made or its observations are not of size
    `obs_dim` (run before training, so a run never fails only at its final evaluation)."""
    envs = make_vector_env(env_id, 1)
    try:
        _check_obs_dim(envs, obs_dim)
    finally:
        envs.close()


def _check_obs_dim(envs, obs_dim: int) -> None:
    size = envs.single_observation_space.shape[0]
    if size != obs_dim:
        raise EvaluationError(
            f"environment {envs.spec.id if envs.spec else ''} has observations of size {size} "
            f"but the model was built for {obs_dim}; check --config.env_id"
        )


def check_inference_regime(model, episode_start_windows: bool) -> None:
    """Refuse (EvaluationError) to run a model whose `step` carries a recurrent state over the
    whole episode (Decision Mamba with inference="recurrent") unless it was trained on whole
    episodes from their first step (`episode_start_windows`)."""
    if model.requires_whole_episode_training and not episode_start_windows:
        raise EvaluationError(
            f"model {model.name!r} with inference='recurrent' runs its recurrent state over the "
            "whole episode, which is only valid for a model trained on whole episodes "
            "(config.episode_start_windows=True with context_len >= the longest episode); "
            "pass episode_start_windows=True if it was, or rebuild it with inference='window' "
            "(re-runs the model on the last K steps, as it trained on K-step windows)."
        )


def rollout(model, params, *, env_id: str, state_mean: np.ndarray, state_std: np.ndarray,
            rtg_scale: float, targets, episodes: int, max_steps: int = 1000,
            delayed_reward: bool = False, seed: int = 0,
            episode_start_windows: bool = False) -> RolloutResult:
    """Run `episodes` episodes per seed and target return.

    Args:
      model: a DecisionModel (init_carry/step API).
      params: variables with a leading seed axis S on every leaf.
      state_mean, state_std: [obs] statistics used to normalise states in training.
      rtg_scale: returns-to-go are divided by it, as in training.
      targets: target returns (raw scale); the rtg starts at target/rtg_scale and drops by
        reward/rtg_scale each step (stays constant with `delayed_reward`, whose training data
        had no intermediate rewards).
      episode_start_windows: whether the model was trained on whole episodes from their first
        step; a model whose step needs that (see `check_inference_regime`) is refused otherwise.
    Returns:
      RolloutResult with returns/lengths of shape [S, len(targets), episodes].
    """
    check_inference_regime(model, episode_start_windows)
    num_seeds = jax.tree_util.tree_leaves(params)[0].shape[0]
    targets = tuple(float(t) for t in targets)
    per_seed = len(targets) * episodes
    n = num_seeds * per_seed
    envs = make_vector_env(env_id, n)
    try:
        return _run(model, params, envs, num_seeds, per_seed, targets, episodes,
                    np.asarray(state_mean, np.float32), np.asarray(state_std, np.float32),
                    rtg_scale, max_steps, delayed_reward, seed)
    finally:
        envs.close()


def _run(model, params, envs, num_seeds, per_seed, targets, episodes, mean, std, rtg_scale,
         max_steps, delayed_reward, seed):
    n = num_seeds * per_seed
    _check_obs_dim(envs, model.obs_dim)
    obs_dim = model.obs_dim
    space = envs.single_action_space
    discrete = isinstance(space, gym.spaces.Discrete)
    params = jax.jit(jax.vmap(model.prepare_step))(params)
    step_fn = jax.jit(jax.vmap(model.step))

    carry = model.init_carry(per_seed)
    carry = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (num_seeds, *x.shape)), carry)
    rtg = np.repeat(np.asarray(targets, np.float32), episodes) / rtg_scale  # [T*E]
    rtg = np.broadcast_to(rtg, (num_seeds, per_seed)).copy()
    if discrete:
        a_prev = np.zeros((num_seeds, per_seed), np.int32)
    else:
        a_prev = np.zeros((num_seeds, per_seed, model.act_dim), np.float32)
    t = np.zeros((num_seeds, per_seed), np.int32)

    returns = np.zeros(n)
    lengths = np.zeros(n, np.int64)
    alive = np.ones(n, bool)
    start = time.perf_counter()
    obs, _ = envs.reset(seed=seed)
    steps = 0
    for _ in range(max_steps):
        s = ((obs.astype(np.float32) - mean) / std).reshape(num_seeds, per_seed, obs_dim)
        carry, out = step_fn(params, carry, jnp.asarray(rtg), jnp.asarray(s), jnp.asarray(a_prev),
                             jnp.asarray(t))
        out = np.asarray(out)
        if discrete:
            a_prev = out.argmax(-1).astype(np.int32)
            action = a_prev.reshape(n)
        else:
            a_prev = out.astype(np.float32)
            action = np.clip(a_prev.reshape(n, -1), space.low, space.high)
        obs, reward, term, trunc, _ = envs.step(action)
        live_reward = np.where(alive, reward, 0.0)
        steps += int(alive.sum())
        returns += live_reward
        lengths += alive
        alive &= ~(term | trunc)
        if not delayed_reward:
            rtg -= live_reward.reshape(num_seeds, per_seed).astype(np.float32) / rtg_scale
        t = np.minimum(t + 1, np.iinfo(np.int32).max)
        if not alive.any():
            break
    shape = (num_seeds, len(targets), episodes)
    return RolloutResult(returns.reshape(shape), lengths.reshape(shape), targets,
                         time.perf_counter() - start, steps)


def render_episode(model, params, path: str, *, env_id: str, state_mean, state_std,
                   rtg_scale: float, target: float, max_steps: int = 1000, fps: int = 30,
                   seed: int = 0, episode_start_windows: bool = False) -> float:
    """Render one episode of a single seed's `params` (no seed axis) to a GIF; returns its return.

    Needs MuJoCo offscreen rendering (set MUJOCO_GL=egl or osmesa on headless machines).
    episode_start_windows: as in `rollout`.
    """
    import imageio.v2 as imageio

    check_inference_regime(model, episode_start_windows)
    env = gym.make(env_id, render_mode="rgb_array")
    try:
        step_fn = jax.jit(model.step)
        params = jax.jit(model.prepare_step)(params)
        carry = model.init_carry(1)
        obs, _ = env.reset(seed=seed)
        rtg = np.array([target / rtg_scale], np.float32)
        a_prev = np.zeros((1, model.act_dim), np.float32)
        frames, total = [env.render()], 0.0
        for t in range(max_steps):
            s = ((obs.astype(np.float32) - state_mean) / state_std)[None]
            carry, a = step_fn(params, carry, jnp.asarray(rtg), jnp.asarray(s),
                               jnp.asarray(a_prev), jnp.full((1,), t, jnp.int32))
            a_prev = np.asarray(a, np.float32)
            obs, reward, term, trunc, _ = env.step(
                np.clip(a_prev[0], env.action_space.low, env.action_space.high))
            total += float(reward)
            rtg = rtg - np.float32(reward / rtg_scale)
            frames.append(env.render())
            if term or trunc:
                break
        imageio.mimsave(path, frames[::2], duration=2000 / fps, loop=0)
        return total
    finally:
        env.close()
