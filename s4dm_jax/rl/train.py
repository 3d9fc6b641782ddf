"""Online SAC training on a gymnasium environment (CPU friendly).

The loop steps the environment ``update_every`` times, then runs that many SAC updates in one
jitted ``lax.scan`` call (batches gathered from the numpy replay buffer). Exploration actions are
sampled in numpy from the actor's (mean, log_std), so a run is reproducible from its seed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import gymnasium as gym
import jax
import numpy as np

from s4dm_jax.rl.buffer import ReplayBuffer
from s4dm_jax.rl.policy import Policy
from s4dm_jax.rl.sac import SAC, SACConfig, SACState

MAX_EPISODE_STEPS = 1000


def make_env(env_id: str) -> gym.Env:
    """gym.make with 1000-step episodes; checks that actions live in [-1, 1]."""
    env = gym.make(env_id, max_episode_steps=MAX_EPISODE_STEPS)
    space = env.action_space
    if not (np.allclose(space.low, -1.0) and np.allclose(space.high, 1.0)):
        raise ValueError(f"{env_id}: SAC here assumes actions in [-1, 1], got {space}")
    return env


def evaluate_policy(policy: Policy, env_id: str, episodes: int, seed: int,
                    deterministic: bool = False) -> np.ndarray:
    """Undiscounted returns [episodes] of ``policy`` (stochastic unless deterministic)."""
    env = make_env(env_id)
    rng = np.random.default_rng(seed)
    returns = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(policy.act(obs, rng, deterministic))
            total += float(r)
            done = term or trunc
        returns.append(total)
    env.close()
    return np.asarray(returns)


@dataclasses.dataclass
class TrainResult:
    """What ``train_sac`` returns."""

    agent: SAC
    state: SACState
    buffer: ReplayBuffer
    policy: Policy
    history: list[dict]        # one dict per evaluation
    env_steps: int             # environment steps taken (= replay size)
    eval_return: float         # mean eval return of the returned policy
    reached_target: bool
    wall_time_s: float


def train_sac(
    env_id: str,
    *,
    seed: int = 0,
    max_steps: int = 1_000_000,
    target_return: float | None = None,
    start_steps: int = 5_000,
    update_every: int = 50,
    eval_every: int = 5_000,
    eval_episodes: int = 10,
    config: SACConfig | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> TrainResult:
    """Train SAC until the stochastic-policy eval return >= target_return or max_steps.

    Evaluation (every ``eval_every`` steps after ``start_steps``) uses ``eval_episodes`` episodes
    of the stochastic policy -- the same mode used to roll out datasets. The replay buffer holds
    every transition of the run in order (D4RL "medium-replay").
    """
    from tqdm.auto import tqdm

    config = SACConfig() if config is None else config
    t0 = time.time()
    env = make_env(env_id)
    obs_dim = env.observation_space.shape[0]
    act_dim = env.action_space.shape[0]
    agent = SAC(obs_dim, act_dim, config)
    state = agent.init(jax.random.PRNGKey(seed))
    buffer = ReplayBuffer(obs_dim, act_dim, max_steps)
    rng = np.random.default_rng(seed)
    meta = {"env_id": env_id, "seed": seed, "algorithm": "SAC", "sac_config":
            dataclasses.asdict(config)}

    def snapshot() -> Policy:
        return Policy(state.actor_params, obs_dim, act_dim, config.hidden, meta)

    obs, _ = env.reset(seed=seed)
    history: list[dict] = []
    ep_ret, ep_returns = 0.0, []
    eval_ret, reached = float("nan"), False
    pbar = tqdm(total=max_steps, desc=f"SAC {env_id}", disable=not progress, mininterval=2.0)
    policy = snapshot()
    info = {}
    for t in range(max_steps):
        if t < start_steps:
            act = rng.uniform(-1.0, 1.0, act_dim).astype(np.float32)
        else:
            act = policy.act(obs, rng)
        next_obs, rew, term, trunc, _ = env.step(act)
        buffer.add(obs, act, rew, next_obs, term, trunc)
        ep_ret += float(rew)
        obs = next_obs
        if term or trunc:
            ep_returns.append(ep_ret)
            ep_ret = 0.0
            obs, _ = env.reset()
        if t + 1 >= start_steps and (t + 1) % update_every == 0:
            batches = buffer.sample(rng, update_every, config.batch_size)
            state, info = agent.update_many(state, batches)
            policy = snapshot()
        pbar.update(1)
        if t + 1 > start_steps and (t + 1) % eval_every == 0:
            returns = evaluate_policy(policy, env_id, eval_episodes, seed=10_000 + t)
            eval_ret = float(returns.mean())
            rec = {"step": t + 1, "eval_return": eval_ret, "eval_std": float(returns.std()),
                   "train_return_last10": float(np.mean(ep_returns[-10:])) if ep_returns
                   else float("nan"), "time_s": time.time() - t0,
                   **{k: float(v) for k, v in info.items()}}
            history.append(rec)
            pbar.set_postfix(eval=f"{eval_ret:.0f}")
            if log is not None:
                log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in rec.items()))
            if target_return is not None and eval_ret >= target_return:
                reached = True
                break
    pbar.close()
    env.close()
    policy = snapshot()
    policy.meta.update({"env_steps": buffer.size, "eval_return": eval_ret,
                        "eval_episodes": eval_episodes, "eval_mode": "stochastic",
                        "target_return": target_return, "reached_target": reached,
                        "train_time_s": time.time() - t0})
    return TrainResult(agent, state, buffer, policy, history, buffer.size, eval_ret, reached,
                       time.time() - t0)
