"""Decision-Transformer style context windows from a TrajectoryDataset, sampled in pure JAX.

Preprocessing (numpy, once): optional delayed reward (an episode's whole return on its last
step), returns-to-go with gamma 1 divided by rtg_scale, state normalisation with the mean/std of
all transitions (std + 1e-6), timesteps = position in the episode, and %BC filtering
(`top_fraction`: by default the best episodes by return until they hold that fraction of all
timesteps, as the DT reference; see `top_trajectories`). Sampling (`sample_batch`, jittable,
vmappable over keys): episode with probability proportional to its length, start uniform in the
episode, window [start, start+K) cut at the episode end and LEFT-padded to K
(states/actions/rtg/timesteps 0, mask 0).

Whole-episode windows (`from_episode_start=True`, config.episode_start_windows) start at the
drawn episode's first step and, with K >= the longest episode (the trainer requires it), hold
the whole episode. Every transition then weighs the same in the loss: episodes are still drawn
in proportion to their length, and the train step averages the loss over each window's real
steps before averaging over the batch (`models.base.action_loss(per_window=True)`), so a
transition of an episode of length L enters with probability L/T times weight 1/L: 1/T in
expectation for every transition (T = number of kept transitions), exactly, at any batch size.
(Averaging over all real steps of the batch instead would weight a transition in proportion to
its episode's length: lengths 100 and 900 would give the long episode 98.8% of the loss, not
90%.) This importance weighting was chosen over drawing episodes uniformly because an exact
uniform-draw estimator needs a constant normaliser (batch size x mean length), whose per-batch
loss varies with the drawn lengths, and because short episodes would fill most of each
K-step window with padding.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from s4dm_jax.data.dataset import TrajectoryDataset


def delay_rewards(rewards: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each episode's total reward moved to its last step, zeros elsewhere; f32 [T]."""
    out = np.zeros(len(rewards), dtype=np.float64)
    out[starts + lengths - 1] = np.add.reduceat(np.asarray(rewards, np.float64), starts)
    return out.astype(np.float32)


def returns_to_go(rewards: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """rtg[t] = sum of rewards from t to the end of t's episode (gamma 1); f32 [T]."""
    r = np.asarray(rewards, np.float64)
    total = np.cumsum(r[::-1])[::-1]  # sum from t to the end of the whole array
    ends = starts + lengths
    after = np.append(total, 0.0)[ends]  # sum from each episode's end onwards
    return (total - np.repeat(after, lengths)).astype(np.float32)


def episode_positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Position of each step within its episode, int32 [T]."""
    return (np.arange(int(lengths.sum())) - np.repeat(starts, lengths)).astype(np.int32)


TOP_FRACTION_BY = ("timesteps", "episodes")


def top_episodes(returns: np.ndarray, fraction: float) -> np.ndarray:
    """Indices (ascending) of the floor(fraction * E) >= 1 highest-return episodes."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {fraction}")
    num = len(returns)
    keep = max(1, min(num, int(np.floor(fraction * num + 1e-9))))
    order = np.argsort(-np.asarray(returns, np.float64), kind="stable")
    return np.sort(order[:keep])


def top_timesteps(returns: np.ndarray, lengths: np.ndarray, fraction: float) -> np.ndarray:
    """Indices (ascending) of the best episodes by return holding about `fraction` of all steps.

    The DT reference's %BC rule (kzl/decision-transformer gym/experiment.py): budget =
    max(int(fraction * total_steps), 1); keep the highest-return episode, then the next best
    ones while the kept steps plus the next episode's length stay <= budget; stop at the first
    episode that does not fit (no skipping to shorter ones). Ties in return: earlier episode
    first.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {fraction}")
    lengths = np.asarray(lengths, np.int64)
    budget = max(int(fraction * int(lengths.sum())), 1)
    order = np.argsort(-np.asarray(returns, np.float64), kind="stable")
    kept_steps = np.cumsum(lengths[order])
    keep = max(1, int(np.searchsorted(kept_steps, budget, side="right")))
    return np.sort(order[:keep])


def top_trajectories(returns: np.ndarray, lengths: np.ndarray, fraction: float,
                     by: str = "timesteps") -> np.ndarray:
    """%BC filter: `top_timesteps` (by="timesteps", the DT reference) or `top_episodes`
    (by="episodes", the top floor(fraction * E) episodes)."""
    if by == "timesteps":
        return top_timesteps(returns, lengths, fraction)
    if by == "episodes":
        return top_episodes(returns, fraction)
    raise ValueError(f"top_fraction_by must be one of {TOP_FRACTION_BY}, got {by!r}")


# ----------------------------------------------------------------------------- pure JAX


def sample_starts(arrays: dict, key: jax.Array, batch_size: int,
                  from_episode_start: bool = False) -> jax.Array:
    """Global start indices [B]: a uniformly drawn step among the kept episodes' steps.

    Drawing a step uniformly picks its episode with probability proportional to the episode's
    length and the start uniformly within it (the DT recipe). With `from_episode_start` the
    window starts at that episode's first step instead (whole-episode training for recurrent
    models, whose inference state also starts at the episode start); the length-proportional
    draw plus the per-window loss average weighs every transition equally (module docstring).
    """
    cum_ends = arrays["cum_ends"]  # [E'] cumulative lengths of the kept episodes
    u = jax.random.randint(key, (batch_size,), 0, cum_ends[-1])
    episode = jnp.searchsorted(cum_ends, u, side="right")
    if from_episode_start:
        return arrays["ep_start"][episode]
    offset = u - (cum_ends[episode] - arrays["ep_len"][episode])
    return arrays["ep_start"][episode] + offset


def windows_at(arrays: dict, starts: jax.Array, context_len: int) -> dict:
    """The left-padded windows [start, start+K) cut at the episode end, for starts [B]."""
    k = context_len
    ends = arrays["episode_end"][starts]  # [B] end (exclusive) of the start's episode
    valid = jnp.minimum(k, ends - starts)  # [B] real steps in the window, >= 1
    pad = k - valid
    pos = jnp.arange(k)[None, :]  # [1, K]
    mask = pos >= pad[:, None]  # [B, K]
    idx = jnp.where(mask, starts[:, None] + pos - pad[:, None], 0)

    def take(x):
        g = x[idx]
        m = mask.reshape(mask.shape + (1,) * (g.ndim - 2))
        return jnp.where(m, g, jnp.zeros((), g.dtype))

    return {
        "rtg": take(arrays["rtg"]),
        "states": take(arrays["states"]),
        "actions": take(arrays["actions"]),
        "timesteps": take(arrays["timesteps"]).astype(jnp.int32),
        "mask": mask.astype(jnp.float32),
    }


def sample_batch(arrays: dict, key: jax.Array, batch_size: int, context_len: int,
                 from_episode_start: bool = False) -> dict:
    """A batch of B windows of length K (batch_size, context_len, from_episode_start static).

    Windows start uniformly inside a length-weighted episode, or at its first step with
    `from_episode_start` (see `sample_starts`). Returns "rtg" f32 [B,K], "states" f32 [B,K,obs]
    (normalised), "actions" f32 [B,K,act] (discrete int32 [B,K]), "timesteps" int32 [B,K],
    "mask" f32 [B,K] (0 = left padding).
    """
    starts = sample_starts(arrays, key, batch_size, from_episode_start)
    return windows_at(arrays, starts, context_len)


# ----------------------------------------------------------------------------- sampler


class SequenceSampler:
    """Preprocessed arrays of a dataset + `sample(key, batch_size)` of length-K windows.

    Attributes: state_mean, state_std (np f32 [obs]), rtg_scale, context_len, top_fraction,
    top_fraction_by, delayed_reward, episodes (np int64 [E'], kept episode indices),
    longest_episode (steps of the longest kept episode), arrays (dict of jnp arrays for
    `sample_batch`).
    """

    def __init__(self, dataset: TrajectoryDataset, context_len: int, rtg_scale: float = 1000.0,
                 top_fraction: float = 1.0, delayed_reward: bool = False,
                 top_fraction_by: str = "timesteps"):
        if int(context_len) < 1:
            raise ValueError(f"context_len must be >= 1, got {context_len}")
        if not rtg_scale > 0:
            raise ValueError(f"rtg_scale must be > 0, got {rtg_scale}")
        self.dataset = dataset
        self.context_len = int(context_len)
        self.rtg_scale = float(rtg_scale)
        self.top_fraction = float(top_fraction)
        self.top_fraction_by = str(top_fraction_by)
        self.delayed_reward = bool(delayed_reward)

        starts, lengths = dataset.episode_starts, dataset.episode_lengths
        obs = dataset.observations.astype(np.float64)
        self.state_mean = obs.mean(axis=0).astype(np.float32)
        self.state_std = (obs.std(axis=0) + 1e-6).astype(np.float32)
        rewards = dataset.rewards
        if self.delayed_reward:
            rewards = delay_rewards(rewards, starts, lengths)
        self.rewards = rewards
        rtg = returns_to_go(rewards, starts, lengths) / np.float32(self.rtg_scale)
        self.episodes = top_trajectories(dataset.episode_returns, lengths, self.top_fraction,
                                         self.top_fraction_by)
        kept_len = lengths[self.episodes]
        self.longest_episode = int(kept_len.max())
        self.num_steps = int(kept_len.sum())
        if self.num_steps >= np.iinfo(np.int32).max:
            raise ValueError("datasets of 2**31 or more transitions are not supported")
        self.arrays = {
            "states": jnp.asarray(self.normalize_states(dataset.observations)),
            "actions": jnp.asarray(dataset.actions),
            "rtg": jnp.asarray(rtg.astype(np.float32)),
            "timesteps": jnp.asarray(episode_positions(starts, lengths)),
            "episode_end": jnp.asarray(np.repeat(starts + lengths, lengths).astype(np.int32)),
            "ep_start": jnp.asarray(starts[self.episodes].astype(np.int32)),
            "ep_len": jnp.asarray(kept_len.astype(np.int32)),
            "cum_ends": jnp.asarray(np.cumsum(kept_len).astype(np.int32)),
        }

    def normalize_states(self, obs):
        """(obs - state_mean) / state_std, float32, for numpy or jax arrays [..., obs]."""
        if isinstance(obs, jax.Array):
            return (obs.astype(jnp.float32) - self.state_mean) / self.state_std
        return ((np.asarray(obs, np.float32) - self.state_mean) / self.state_std).astype(
            np.float32)

    def sample(self, key: jax.Array, batch_size: int) -> dict:
        """`sample_batch(self.arrays, key, batch_size, self.context_len)`, jitted."""
        return _sample_jit(self.arrays, key, int(batch_size), self.context_len)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _sample_jit(arrays, key, batch_size, context_len):
    return sample_batch(arrays, key, batch_size, context_len)
