"""Online SAC training on gymnasium environments (CPU friendly).

The loop steps ``num_envs`` environments (a gymnasium ``SyncVectorEnv``) ``update_every`` times
with one batched policy call per step, then makes one jitted call that appends those
transitions to the device replay buffer and runs the chunk's SAC updates in a ``lax.scan`` with
the batches sampled on the device. Exploration noise comes from a numpy Generator and the SAC
randomness (initialisation, batch indices, reparameterisation) from the JAX key of the same seed,
so a run is reproducible from its seed. Evaluation runs its episodes side by side with one
batched policy call per step.

The standard SAC recipe (Haarnoja et al. 2018; one environment, one update per environment
step, updates in blocks of 50 as in Spinning Up) is the default. ``num_envs`` > 1 collects
``num_envs`` transitions per vector step and ``updates_per_step`` scales the number of updates
per collected transition; both are recorded in the policy metadata.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import gymnasium as gym
import jax
import numpy as np
from tqdm.auto import tqdm

from s4dm_jax import envs as envs_lib
from s4dm_jax.envs import run_episodes
from s4dm_jax.rl.buffer import DeviceReplay, EpisodeAssembler, ReplayBuffer
from s4dm_jax.rl.policy import Policy
from s4dm_jax.rl.sac import SAC, SACConfig, SACState

MAX_EPISODE_STEPS = 1000
# How SAC's environments (training, evaluation, dataset rollouts) are made: 1000-step episodes,
# actions in [-1, 1] (the tanh policy's range).
SAC_ENV = {"max_episode_steps": MAX_EPISODE_STEPS, "unit_actions": True}


def make_env(env_id: str) -> gym.Env:
    """One SAC environment (``SAC_ENV``); EnvError (a ValueError) unless actions are in
    [-1, 1]."""
    return envs_lib.make_env(env_id, **SAC_ENV)


def make_vec_env(env_id: str, num_envs: int) -> gym.vector.SyncVectorEnv:
    """``num_envs`` copies of ``make_env(env_id)`` for SAC's training collection. An environment
    that ends is reset in the same step (``info["final_obs"]`` holds its last observation).
    ``reset(seed=s)`` seeds copy i with s + i; later resets continue each copy's own generator,
    as a single env's ``reset()`` does.
    """
    return envs_lib.make_vector_env(
        env_id, num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP, **SAC_ENV)


def evaluate_policy(policy: Policy, env_id: str, episodes: int, seed: int,
                    deterministic: bool = False,
                    envs: gym.vector.VectorEnv | None = None) -> np.ndarray:
    """Undiscounted returns [episodes] of ``policy`` (stochastic unless deterministic).

    The episodes run side by side through ``s4dm_jax.envs.run_episodes``, one batched policy
    call per step (episode i starts from ``reset(seed=seed + i)``; ``envs``: a vector env of
    ``episodes`` copies from ``envs_lib.make_vector_env(env_id, episodes, **SAC_ENV)`` to reuse).
    Noise comes from ``np.random.default_rng(seed)``.
    """
    own = envs is None
    envs = envs_lib.make_vector_env(env_id, episodes, **SAC_ENV) if own else envs
    try:
        if envs.num_envs != episodes:
            raise ValueError(f"evaluate_policy: {envs.num_envs} environments cannot run "
                             f"{episodes} episodes side by side; pass {episodes}")
        rng = np.random.default_rng(seed)
        return run_episodes(envs, lambda obs, ctx: policy.act_batch(obs, rng, deterministic),
                            seed=seed, episodes_per_env=1).returns
    finally:
        if own:
            envs.close()


@dataclasses.dataclass
class TrainResult:
    """What ``train_sac`` returns."""

    agent: SAC
    state: SACState
    buffer: ReplayBuffer       # every transition, whole episodes in the order they ended
    policy: Policy
    history: list[dict]        # one dict per evaluation
    env_steps: int             # environment steps taken (= replay size)
    eval_return: float         # mean eval return of the returned policy
    reached_target: bool
    wall_time_s: float
    timings: dict[str, float]  # seconds: setup, collect (env + policy), update (with its
                               # compilation), eval


def _collect_chunk(envs, obs: np.ndarray, policy: Policy, rng: np.random.Generator, steps: int,
                   random_steps: int, ep_ret: np.ndarray):
    """Step the vector env ``steps`` times, the first ``random_steps`` with uniform random
    actions and the rest with ``policy`` (stochastic, noise from ``rng``).

    obs [N, obs] are the current observations, ep_ret [N] the running episode returns.
    Returns (chunk: ReplayBuffer.FIELDS -> [steps, N, ...] with next_obs the true last
    observation where an episode ended, next observations [N, obs], running returns [N],
    returns of the episodes that ended).
    """
    n, act_dim = envs.num_envs, envs.single_action_space.shape[0]
    rows = {k: [] for k in ReplayBuffer.FIELDS}
    ended: list[float] = []
    ep_ret = ep_ret.copy()
    for j in range(steps):
        if j < random_steps:
            act = rng.uniform(-1.0, 1.0, (n, act_dim)).astype(np.float32)
        else:
            act = policy.act_batch(obs, rng)
        next_obs, rew, term, trunc, info = envs.step(act)
        last_obs = next_obs
        if np.any(info.get("_final_obs", False)):
            last_obs = next_obs.copy()
            for i in np.flatnonzero(info["_final_obs"]):
                last_obs[i] = info["final_obs"][i]
        for k, v in zip(ReplayBuffer.FIELDS, (obs, act, rew, last_obs, term, trunc),
                        strict=True):
            rows[k].append(v)
        ep_ret += rew
        done = term | trunc
        ended.extend(ep_ret[done].tolist())
        ep_ret[done] = 0.0
        obs = next_obs
    chunk = {k: np.stack(v).astype(bool if k in ("terminated", "truncated") else np.float32)
             for k, v in rows.items()}
    return chunk, obs, ep_ret, ended


@dataclasses.dataclass(frozen=True)
class SACTrainConfig:
    """How ``train_sac`` runs: its budget, schedule, evaluation and the agent's hyperparameters.

    Steps are environment transitions summed over the ``num_envs`` parallel copies. Actions are
    uniform random while fewer than ``start_steps`` transitions have been collected; every
    ``update_every`` vector steps (``update_every * num_envs`` transitions) the new transitions
    join the replay and, once ``start_steps`` are collected, ``updates_per_step`` updates per
    new transition are made. Evaluation (every ``eval_every`` steps after ``start_steps``) uses
    ``eval_episodes`` episodes of the stochastic policy; training stops when their mean return
    reaches ``target_return`` (None: never) or at ``max_steps``.
    """

    seed: int = 0
    max_steps: int = 1_000_000
    target_return: float | None = None
    start_steps: int = 5_000
    update_every: int = 50
    eval_every: int = 5_000
    eval_episodes: int = 10
    num_envs: int = 1
    updates_per_step: float = 1.0
    sac: SACConfig = dataclasses.field(default_factory=SACConfig)

    def __post_init__(self):
        """ValueError for sizes below 1 or budgets that do not divide (see the messages)."""
        chunk_size = self.update_every * self.num_envs
        if (min(self.num_envs, self.update_every, self.eval_episodes, self.max_steps,
                self.eval_every) < 1 or self.updates_per_step < 0 or self.start_steps < 0):
            raise ValueError("train_sac: num_envs, update_every, eval_every, eval_episodes and "
                             "max_steps must be >= 1, start_steps and updates_per_step >= 0")
        if self.max_steps % self.num_envs or abs(round(chunk_size * self.updates_per_step)
                                                 - chunk_size * self.updates_per_step) > 1e-9:
            raise ValueError(
                f"train_sac: max_steps ({self.max_steps}) must be a multiple of num_envs "
                f"({self.num_envs}), and update_every * num_envs * updates_per_step "
                f"({chunk_size} * {self.updates_per_step}) must be a whole number of updates "
                "per chunk")


def train_sac(env_id: str, run: SACTrainConfig | None = None, *, progress: bool = True,
              log: Callable[[str], None] | None = print) -> TrainResult:
    """Train SAC on ``env_id`` as ``run`` says (default ``SACTrainConfig()``: the standard
    recipe) until the stochastic-policy eval return >= run.target_return or run.max_steps.

    Evaluation uses the stochastic policy -- the same mode used to roll out datasets. The
    replay buffer holds every transition of the run, whole episodes in the order they ended
    (with one env: collection order), for D4RL "medium-replay". ``log``: a line per evaluation
    and a summary (None: silent).
    """
    run = SACTrainConfig() if run is None else run
    seed, max_steps, num_envs = run.seed, run.max_steps, run.num_envs
    start_steps, update_every, eval_every = run.start_steps, run.update_every, run.eval_every
    eval_episodes, updates_per_step = run.eval_episodes, run.updates_per_step
    target_return, config = run.target_return, run.sac
    t0 = time.perf_counter()
    timings = dict.fromkeys(("setup", "collect", "update", "eval"), 0.0)
    envs = make_vec_env(env_id, num_envs)
    eval_envs = envs_lib.make_vector_env(env_id, eval_episodes, **SAC_ENV)
    obs_dim = envs.single_observation_space.shape[0]
    act_dim = envs.single_action_space.shape[0]
    agent = SAC(obs_dim, act_dim, config)
    state = agent.init(jax.random.PRNGKey(seed))
    replay = DeviceReplay.zeros(obs_dim, act_dim, max_steps)
    buffer = ReplayBuffer(obs_dim, act_dim, max_steps)
    episodes = EpisodeAssembler(buffer, num_envs)
    rng = np.random.default_rng(seed)
    meta = {"env_id": env_id, "seed": seed, "algorithm": "SAC", "sac_config":
            dataclasses.asdict(config), "num_envs": num_envs,
            "updates_per_step": updates_per_step, "update_every": update_every,
            "start_steps": start_steps}

    def snapshot() -> Policy:
        return Policy(state.actor_params, obs_dim, act_dim, config.hidden, meta)

    obs, _ = envs.reset(seed=seed)
    history: list[dict] = []
    ep_returns: list[float] = []
    ep_ret = np.zeros(num_envs)
    eval_ret, reached = float("nan"), False
    pbar = tqdm(total=max_steps, desc=f"SAC {env_id}", disable=not progress, mininterval=2.0)
    policy, info, collected = snapshot(), {}, 0
    timings["setup"] = time.perf_counter() - t0
    while collected < max_steps:
        tic = time.perf_counter()
        vec_steps = min(update_every, (max_steps - collected) // num_envs)
        random_steps = max(0, -(-(start_steps - collected) // num_envs))
        chunk, obs, ep_ret, ended = _collect_chunk(envs, obs, policy, rng, vec_steps,
                                                   random_steps, ep_ret)
        ep_returns.extend(ended)
        episodes.add_chunk(chunk)
        timings["collect"] += time.perf_counter() - tic
        tic = time.perf_counter()
        rows = {"obs": chunk["obs"], "act": chunk["act"], "rew": chunk["rew"],
                "next_obs": chunk["next_obs"], "done": chunk["terminated"]}
        rows = {k: v.reshape((-1,) + v.shape[2:]) for k, v in rows.items()}  # arrival order
        collected += len(rows["rew"])
        updates = (round(len(rows["rew"]) * updates_per_step) if collected >= start_steps
                   else 0)
        state, replay, new_info = agent.insert_and_train(
            state, replay, collected - len(rows["rew"]), rows, updates)
        info = new_info or info
        policy = snapshot()
        jax.block_until_ready(state)
        timings["update"] += time.perf_counter() - tic
        pbar.update(len(rows["rew"]))
        if collected > start_steps and (collected // eval_every
                                        > (collected - len(rows["rew"])) // eval_every):
            tic = time.perf_counter()
            returns = evaluate_policy(policy, env_id, eval_episodes, seed=10_000 + collected - 1,
                                      envs=eval_envs)
            timings["eval"] += time.perf_counter() - tic
            eval_ret = float(returns.mean())
            rec = {"step": collected, "eval_return": eval_ret, "eval_std": float(returns.std()),
                   "train_return_last10": float(np.mean(ep_returns[-10:])) if ep_returns
                   else float("nan"), "time_s": time.perf_counter() - t0,
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
    episodes.close()
    envs.close()
    eval_envs.close()
    wall = time.perf_counter() - t0
    policy = snapshot()
    policy.meta.update({"env_steps": buffer.size, "eval_return": eval_ret,
                        "eval_episodes": eval_episodes, "eval_mode": "stochastic",
                        "target_return": target_return, "reached_target": reached,
                        "train_time_s": wall, "sac_updates": int(state.step),
                        "timings_s": {k: round(v, 1) for k, v in timings.items()}})
    if log is not None:
        log(f"SAC {env_id}: {buffer.size} env steps, {int(state.step)} updates, {wall:.0f} s "
            "(" + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ")")
    return TrainResult(agent, state, buffer, policy, history, buffer.size, eval_ret, reached,
                       wall, timings)
