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
    """How the episodes of one evaluation (`rollout`) or one GIF (`render_episode`) are run."""

    env_id: str
    targets: tuple[float, ...]  # target returns, raw scale
    episodes: int               # per seed and target
    state_mean: np.ndarray      # f32 [obs] training statistics used to normalise states
    state_std: np.ndarray       # f32 [obs]
    rtg_scale: float            # returns-to-go are divided by it, as in training
    max_steps: int = 1000       # episodes are cut (truncated) at this many steps
    # the return-to-go stays at target/rtg_scale (the training data had no intermediate rewards)
    delayed_reward: bool = False
    seed: int = 0               # env copy i is reset with seed + i
    # the model was trained on whole episodes from their first step (`check_inference_regime`)
    episode_start_windows: bool = False

    def __post_init__(self):
        """Normalise the types (targets: a tuple of floats, statistics: f32 arrays)."""
        for name, value in (("targets", tuple(float(t) for t in self.targets)),
                            ("episodes", int(self.episodes)),
                            ("state_mean", np.asarray(self.state_mean, np.float32)),
                            ("state_std", np.asarray(self.state_std, np.float32)),
                            ("rtg_scale", float(self.rtg_scale)),
                            ("max_steps", int(self.max_steps)),
                            ("delayed_reward", bool(self.delayed_reward)),
                            ("seed", int(self.seed)),
                            ("episode_start_windows", bool(self.episode_start_windows))):
            object.__setattr__(self, name, value)
        if not self.targets or self.episodes < 1 or self.max_steps < 1:
            raise EvaluationError(
                f"evaluation needs at least one target return, episodes >= 1 and max_steps >= 1 "
                f"(got targets={self.targets}, episodes={self.episodes}, "
                f"max_steps={self.max_steps}); check --config.eval")

    @classmethod
    def from_config(cls, config, env_id: str, state_mean, state_std) -> EvalSettings:
        """A run config's evaluation: config.eval's targets, episodes and episode length,
        config.rtg_scale / delayed_reward / episode_start_windows, env seeds from
        config.seed + 10_000 (the same at every evaluation of a run, so they compare)."""
        return cls(env_id=env_id, targets=config.eval.target_returns,
                   episodes=config.eval.episodes, state_mean=state_mean, state_std=state_std,
                   rtg_scale=config.rtg_scale, max_steps=config.eval.max_episode_steps,
                   delayed_reward=config.delayed_reward, seed=config.seed + 10_000,
                   episode_start_windows=config.episode_start_windows)

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


def rollout(model, params, settings: EvalSettings, *,
            show_progress: bool = False) -> RolloutResult:
    """Run settings.episodes episodes per seed and target return in settings.env_id.

    Args:
      model: a DecisionModel (init_carry/step API).
      params: variables with a leading seed axis S on every leaf.
      settings: the targets, episodes, state statistics and the rest (see `EvalSettings`);
        the rtg starts at target/rtg_scale and drops by reward/rtg_scale each step (stays
        constant with delayed_reward). Env copy i (seed s, target j, episode e at
        i = (s * T + j) * E + e) resets with settings.seed + i. A model whose step needs whole
        episodes (see `check_inference_regime`) is refused unless
        settings.episode_start_windows.
      show_progress: a progress bar of the env steps (all episodes run side by side, so at
        most max_steps) with the number of episodes still running.
    Returns:
      RolloutResult with returns/lengths of shape [S, len(targets), episodes].
    """
    check_inference_regime(model, settings.episode_start_windows)
    num_seeds = jax.tree_util.tree_leaves(params)[0].shape[0]
    envs = _make_envs(settings.env_id, num_seeds * settings.per_seed)
    try:
        _check_obs_dim(envs, model.obs_dim, settings.env_id)
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


def render_episode(model, params, path: str, settings: EvalSettings, *, fps: int = 30) -> float:
    """Render one episode of a single seed's `params` (no seed axis) to a GIF; returns its return.

    The episode is the first of `rollout(model, params[None], settings)`: target
    settings.targets[0], env seed settings.seed, the same return-to-go rule (delayed_reward
    included). Needs MuJoCo offscreen rendering (MUJOCO_GL=egl or osmesa on headless machines).
    """
    check_inference_regime(model, settings.episode_start_windows)
    one = dataclasses.replace(settings, targets=settings.targets[:1], episodes=1)
    envs = _make_envs(one.env_id, 1, render_mode="rgb_array")
    try:
        _check_obs_dim(envs, model.obs_dim, one.env_id)
        one_seed = jax.tree_util.tree_map(lambda x: jnp.asarray(x)[None], params)
        policy = ReturnConditionedPolicy(model, one_seed, one, envs.single_action_space)
        result = run_episodes(envs, policy, seed=one.seed, episodes_per_env=1,
                              max_episode_steps=one.max_steps, keep=("frames",))
    finally:
        envs.close()
    imageio.mimsave(path, result.frames[0][::2], duration=2000 / fps, loop=0)
    return float(result.returns[0])
