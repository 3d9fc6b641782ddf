"""Return-conditioned rollouts of decision models in gymnasium vector environments.

All seeds x targets x episodes run at once in one vector env; the models' `step` API is vmapped
over seeds (their parameters are stacked on a leading axis), so one jitted call per env step
drives every episode.
"""

from __future__ import annotations

import dataclasses
import time

import gymnasium as gym
import imageio.v2 as imageio
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from s4dm_jax.envs import EnvError, StepContext, make_vector_env, run_episodes


class EvaluationError(ValueError):
    """The evaluation environment cannot be created or does not match the model, or the model
    cannot be evaluated as it was trained."""


@dataclasses.dataclass
class RolloutResult:
    returns: np.ndarray  # f64 [S, T, E] undiscounted episode returns
    lengths: np.ndarray  # int [S, T, E] episode lengths
    targets: tuple[float, ...]
    wall_time_s: float
    env_steps: int


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """How the episodes of one evaluation are run (see `rollout`)."""

    targets: tuple[float, ...]  # target returns, raw scale
    episodes: int               # per seed and target
    state_mean: np.ndarray      # f32 [obs] training statistics used to normalise states
    state_std: np.ndarray       # f32 [obs]
    rtg_scale: float
    max_steps: int = 1000       # episodes are cut (truncated) at this many steps
    delayed_reward: bool = False
    seed: int = 0               # env copy i is reset with seed + i

    @property
    def per_seed(self) -> int:
        """Episodes per parameter seed: len(targets) * episodes."""
        return len(self.targets) * self.episodes


def _make_envs(env_id: str, num_envs: int, **env_kwargs):
    """`make_vector_env`, its EnvError as an EvaluationError naming the config field."""
    try:
        return make_vector_env(env_id, num_envs, **env_kwargs)
    except EnvError as e:
        raise EvaluationError(f"{e} (set the evaluation environment with --config.env_id)") from e


def check_eval_env(env_id: str, obs_dim: int) -> None:
    """EvaluationError now if `env_id` cannot be made or its observations are not of size
    `obs_dim` (run before training, so a run never fails only at its final evaluation)."""
    envs = _make_envs(env_id, 1)
    try:
        _check_obs_dim(envs, obs_dim, env_id)
    finally:
        envs.close()


def _check_obs_dim(envs, obs_dim: int, env_id: str) -> None:
    size = envs.single_observation_space.shape[0]
    if size != obs_dim:
        raise EvaluationError(
            f"environment {env_id} has observations of size {size} "
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
            episode_start_windows: bool = False, show_progress: bool = False) -> RolloutResult:
    """Run `episodes` episodes per seed and target return.

    Args:
      model: a DecisionModel (init_carry/step API).
      params: variables with a leading seed axis S on every leaf.
      state_mean, state_std: [obs] statistics used to normalise states in training.
      rtg_scale: returns-to-go are divided by it, as in training.
      targets: target returns (raw scale); the rtg starts at target/rtg_scale and drops by
        reward/rtg_scale each step (stays constant with `delayed_reward`, whose training data
        had no intermediate rewards).
      max_steps: episodes are cut at this many steps (and at the env's own time limit).
      seed: env copy i (seed s, target j, episode e at i = (s * T + j) * E + e) resets with
        seed + i.
      episode_start_windows: whether the model was trained on whole episodes from their first
        step; a model whose step needs that (see `check_inference_regime`) is refused otherwise.
      show_progress: a progress bar of the env steps (all episodes run side by side, so at
        most max_steps) with the number of episodes still running.
    Returns:
      RolloutResult with returns/lengths of shape [S, len(targets), episodes].
    """
    check_inference_regime(model, episode_start_windows)
    num_seeds = jax.tree_util.tree_leaves(params)[0].shape[0]
    settings = EvalSettings(
        targets=tuple(float(t) for t in targets), episodes=int(episodes),
        state_mean=np.asarray(state_mean, np.float32), state_std=np.asarray(state_std, np.float32),
        rtg_scale=rtg_scale, max_steps=int(max_steps), delayed_reward=bool(delayed_reward),
        seed=int(seed))
    envs = _make_envs(env_id, num_seeds * settings.per_seed)
    try:
        _check_obs_dim(envs, model.obs_dim, env_id)
        return _run(model, params, envs, settings, show_progress)
    finally:
        envs.close()


def _run(model, params, envs, settings: EvalSettings, show_progress: bool) -> RolloutResult:
    """One episode per env copy of `envs` (S * per_seed copies) through `run_episodes`."""
    policy = ReturnConditionedPolicy(model, params, settings, envs.single_action_space)
    start = time.perf_counter()  # the episodes (with the step's compilation), as before
    with tqdm(total=settings.max_steps, desc=f"evaluate: {envs.num_envs} episodes", unit="step",
              disable=not show_progress, dynamic_ncols=True, mininterval=1.0) as bar:

        def on_steps(running: int) -> None:  # once per vector step, `running` copies active
            bar.update(1)
            bar.set_postfix_str(f"{running} running", refresh=False)

        result = run_episodes(envs, policy, seed=settings.seed, episodes_per_env=1,
                              max_episode_steps=settings.max_steps, on_steps=on_steps)
    shape = (policy.num_seeds, len(settings.targets), settings.episodes)
    return RolloutResult(result.returns.reshape(shape), result.lengths.reshape(shape),
                         settings.targets, time.perf_counter() - start, result.env_steps)


class ReturnConditionedPolicy:
    """A runner policy (see `s4dm_jax.envs.runner`) driving a decision model's `step`, vmapped
    over the S parameter seeds, in S * per_seed env copies (copy i = s * per_seed + j).

    It keeps each copy's per-episode state: the model carry, the return-to-go (target/rtg_scale
    at an episode's first step, then minus reward/rtg_scale per step unless delayed_reward),
    the previous action (zeros at the first step); all are reset where an episode starts.
    Actions are clipped to the action space (discrete: the argmax of the logits).
    """

    def __init__(self, model, params, settings: EvalSettings, action_space):
        self.num_seeds = jax.tree_util.tree_leaves(params)[0].shape[0]
        self.settings = settings
        self.obs_dim = model.obs_dim
        self.space = action_space
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.params = jax.jit(jax.vmap(model.prepare_step))(params)
        self.step_fn = jax.jit(jax.vmap(model.step))
        batch = (self.num_seeds, settings.per_seed)
        fresh = model.init_carry(settings.per_seed)
        self.fresh_carry = jax.tree_util.tree_map(
            lambda x: jnp.broadcast_to(x, (self.num_seeds, *x.shape)), fresh)
        self.carry = self.fresh_carry
        target_rtg = np.repeat(np.asarray(settings.targets, np.float32),
                               settings.episodes) / settings.rtg_scale  # [T*E]
        self.target_rtg = np.broadcast_to(target_rtg, batch).copy()
        self.rtg = self.target_rtg.copy()
        self.a_prev = (np.zeros(batch, np.int32) if self.discrete
                       else np.zeros((*batch, model.act_dim), np.float32))

    def __call__(self, obs: np.ndarray, ctx: StepContext) -> np.ndarray:
        """obs [N, obs] -> actions [N, act] (discrete: [N])."""
        mean, std, batch = self.settings.state_mean, self.settings.state_std, self.rtg.shape
        start = (ctx.t == 0).reshape(batch)
        if not self.settings.delayed_reward:
            self.rtg -= ctx.prev_reward.reshape(batch).astype(np.float32) / self.settings.rtg_scale
        if np.any(start & ctx.active.reshape(batch)):
            self._reset(start)
        s = ((obs.astype(np.float32) - mean) / std).reshape(*batch, self.obs_dim)
        self.carry, out = self.step_fn(self.params, self.carry, jnp.asarray(self.rtg),
                                       jnp.asarray(s), jnp.asarray(self.a_prev),
                                       jnp.asarray(ctx.t.reshape(batch).astype(np.int32)))
        out = np.asarray(out)
        if self.discrete:
            self.a_prev = out.argmax(-1).astype(np.int32)
            return self.a_prev.reshape(-1)
        self.a_prev = out.astype(np.float32)
        return np.clip(self.a_prev.reshape(len(obs), -1), self.space.low, self.space.high)

    def _reset(self, start: np.ndarray) -> None:
        """Fresh carry, target rtg and zero previous action where start [S, per_seed]."""
        self.rtg = np.where(start, self.target_rtg, self.rtg)
        self.a_prev[start] = 0
        if start.all():
            self.carry = self.fresh_carry
            return
        mask = jnp.asarray(start)
        self.carry = jax.tree_util.tree_map(
            lambda fresh, c: jnp.where(mask.reshape(mask.shape + (1,) * (c.ndim - 2)), fresh, c),
            self.fresh_carry, self.carry)


def render_episode(model, params, path: str, *, env_id: str, state_mean, state_std,
                   rtg_scale: float, target: float, max_steps: int = 1000, fps: int = 30,
                   seed: int = 0, episode_start_windows: bool = False) -> float:
    """Render one episode of a single seed's `params` (no seed axis) to a GIF; returns its return.

    The episode runs as in `rollout` (one seed, one target, one episode). Needs MuJoCo
    offscreen rendering (set MUJOCO_GL=egl or osmesa on headless machines).
    episode_start_windows: as in `rollout`.
    """
    check_inference_regime(model, episode_start_windows)
    settings = EvalSettings(
        targets=(float(target),), episodes=1, state_mean=np.asarray(state_mean, np.float32),
        state_std=np.asarray(state_std, np.float32), rtg_scale=rtg_scale,
        max_steps=int(max_steps), seed=int(seed))
    envs = _make_envs(env_id, 1, render_mode="rgb_array")
    try:
        _check_obs_dim(envs, model.obs_dim, env_id)
        one_seed = jax.tree_util.tree_map(lambda x: jnp.asarray(x)[None], params)
        policy = ReturnConditionedPolicy(model, one_seed, settings, envs.single_action_space)
        result = run_episodes(envs, policy, seed=settings.seed, episodes_per_env=1,
                              max_episode_steps=settings.max_steps, render=True)
    finally:
        envs.close()
    imageio.mimsave(path, result.frames[0][::2], duration=2000 / fps, loop=0)
    return float(result.returns[0])
