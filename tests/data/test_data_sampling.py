"""SequenceSampler / sample_batch against hand-computed windows and numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4dm_jax.data import SequenceSampler, TrajectoryDataset, sample_batch
from s4dm_jax.data.sampling import (
    returns_to_go,
    top_episodes,
    top_timesteps,
    top_trajectories,
    windows_at,
)
from s4dm_jax.models import action_loss


def small_dataset():
    """Episode 0: steps 0..2, rewards 1, 2, 3; episode 1: steps 3..4, rewards 10, 20."""
    obs = np.array([[0, 1], [2, 1], [4, 1], [6, 3], [8, 3]], np.float32)
    act = np.array([[0.1], [0.2], [0.3], [0.4], [0.5]], np.float32)
    return TrajectoryDataset.from_flat(obs, act, [1, 2, 3, 10, 20], [0, 0, 1, 0, 0],
                                       [0, 0, 0, 0, 1], env_id="Foo-v0")


def by_episode(lengths, obs_dim=2):
    """obs[:, 0] = episode index, obs[:, 1] = position; reward 1 per step."""
    ep = np.repeat(np.arange(len(lengths)), lengths)
    pos = np.concatenate([np.arange(n) for n in lengths])
    obs = np.stack([ep, pos] + [np.zeros_like(ep)] * (obs_dim - 2), axis=1).astype(np.float32)
    starts = np.cumsum(lengths) - lengths
    return TrajectoryDataset(obs, obs[:, :1] / 10, np.ones(len(ep)), np.zeros(len(ep)),
                             np.zeros(len(ep)), starts, lengths, env_id="Foo-v0")


def test_state_stats_rtg_and_windows_hand_computed():
    s = SequenceSampler(small_dataset(), context_len=4, rtg_scale=10.0)
    # column 0: 0,2,4,6,8 -> mean 4, var 8; column 1: 1,1,1,3,3 -> mean 1.8, var 0.96
    np.testing.assert_allclose(s.state_mean, [4.0, 1.8], rtol=1e-6)
    np.testing.assert_allclose(s.state_std, [np.sqrt(8) + 1e-6, np.sqrt(0.96) + 1e-6], rtol=1e-6)
    assert s.state_mean.dtype == np.float32 and s.state_std.dtype == np.float32
    np.testing.assert_allclose(s.arrays["rtg"], [0.6, 0.5, 0.3, 3.0, 2.0], rtol=1e-6)
    np.testing.assert_array_equal(s.arrays["timesteps"], [0, 1, 2, 0, 1])

    b = windows_at(s.arrays, jnp.array([1, 3, 0, 4]), 4)
    np.testing.assert_array_equal(b["mask"], [[0, 0, 1, 1], [0, 0, 1, 1], [0, 1, 1, 1],
                                              [0, 0, 0, 1]])
    np.testing.assert_allclose(b["rtg"], [[0, 0, 0.5, 0.3], [0, 0, 3.0, 2.0], [0, 0.6, 0.5, 0.3],
                                          [0, 0, 0, 2.0]], rtol=1e-6)
    np.testing.assert_array_equal(b["timesteps"], [[0, 0, 1, 2], [0, 0, 0, 1], [0, 0, 1, 2],
                                                   [0, 0, 0, 1]])
    np.testing.assert_allclose(b["actions"][..., 0], [[0, 0, 0.2, 0.3], [0, 0, 0.4, 0.5],
                                                      [0, 0.1, 0.2, 0.3], [0, 0, 0, 0.5]])
    # step 1 = (2, 1) -> ((2 - 4) / sqrt(8), (1 - 1.8) / sqrt(0.96)) = (-0.70710678, -0.81649658)
    np.testing.assert_allclose(b["states"][0], [[0, 0], [0, 0], [-0.70710678, -0.81649658],
                                                [0.0, -0.81649658]], atol=1e-5)
    # step 4 = (8, 3) -> (1.41421356, 1.22474487)
    np.testing.assert_allclose(b["states"][3, 3], [1.41421356, 1.22474487], atol=1e-5)
    assert b["timesteps"].dtype == jnp.int32 and b["mask"].dtype == jnp.float32
    assert b["states"].dtype == jnp.float32 and b["rtg"].dtype == jnp.float32

    full = windows_at(s.arrays, jnp.array([0]), 2)  # no padding when the episode is long enough
    np.testing.assert_array_equal(full["mask"], [[1, 1]])
    np.testing.assert_allclose(full["rtg"], [[0.6, 0.5]], rtol=1e-6)

    np.testing.assert_allclose(s.normalize_states(np.array([[8, 3]])), [[1.41421356, 1.22474487]],
                               atol=1e-5)
    np.testing.assert_allclose(s.normalize_states(jnp.array([[8.0, 3.0]])),
                               [[1.41421356, 1.22474487]], atol=1e-5)


def test_delayed_reward_moves_return_to_last_step():
    s = SequenceSampler(small_dataset(), context_len=3, rtg_scale=10.0, delayed_reward=True)
    np.testing.assert_allclose(s.rewards, [0, 0, 6, 0, 30])
    np.testing.assert_allclose(s.arrays["rtg"], [0.6, 0.6, 0.6, 3.0, 3.0], rtol=1e-6)


def test_returns_to_go_matches_loop_reference():
    rng = np.random.default_rng(0)
    lengths = np.array([5, 1, 9, 3])
    starts = np.cumsum(lengths) - lengths
    rewards = rng.normal(size=lengths.sum())
    ref = np.zeros_like(rewards)
    for s0, n in zip(starts, lengths, strict=True):
        for t in range(s0, s0 + n):
            ref[t] = rewards[t:s0 + n].sum()
    np.testing.assert_allclose(returns_to_go(rewards, starts, lengths), ref, rtol=1e-5, atol=1e-5)


def test_sampling_is_length_proportional_with_uniform_starts():
    lengths = np.array([2, 6, 12])
    s = SequenceSampler(by_episode(lengths), context_len=3)
    b = s.sample(jax.random.PRNGKey(0), 20000)
    raw = np.asarray(b["states"]) * s.state_std + s.state_mean
    first = np.argmax(np.asarray(b["mask"]) > 0, axis=1)  # first real step of each window
    ep = np.rint(raw[np.arange(len(first)), first, 0]).astype(int)
    start = np.asarray(b["timesteps"])[np.arange(len(first)), first]
    freq = np.bincount(ep, minlength=3) / len(ep)
    np.testing.assert_allclose(freq, lengths / lengths.sum(), atol=0.015)
    pos = np.bincount(start[ep == 2], minlength=12) / np.sum(ep == 2)
    np.testing.assert_allclose(pos, np.full(12, 1 / 12), atol=0.015)
    # each window is exactly [start, start + K) of its episode, cut at the end and left-padded
    valid = np.minimum(3, lengths[ep] - start)
    np.testing.assert_array_equal(np.asarray(b["mask"]).sum(1), valid)
    for j in range(3):
        real = j >= 3 - valid
        expect = np.where(real, start + j - (3 - valid), 0)
        np.testing.assert_array_equal(np.asarray(b["timesteps"])[:, j], expect)
        np.testing.assert_allclose(raw[real, j, 0], ep[real], atol=1e-4)
        np.testing.assert_array_equal(np.asarray(b["states"])[~real, j], 0.0)
        np.testing.assert_allclose(np.asarray(b["rtg"])[:, j],
                                   np.where(real, (lengths[ep] - expect) / 1000.0, 0.0), rtol=1e-5)


def test_top_fraction_by_episodes_keeps_best_episodes_and_stats_use_all():
    lengths = np.array([1, 2, 3, 2])
    rewards = np.array([5.0, 0.5, 0.5, 3.0, 3.0, 3.0, 1.5, 1.5])  # returns 5, 1, 9, 3
    data = by_episode(lengths)
    ds = TrajectoryDataset(data.observations, data.actions, rewards, data.terminals,
                           data.timeouts, data.episode_starts, lengths, env_id="Foo-v0")
    np.testing.assert_allclose(ds.episode_returns, [5, 1, 9, 3])
    s = SequenceSampler(ds, context_len=2, top_fraction=0.5, top_fraction_by="episodes")
    np.testing.assert_array_equal(s.episodes, [0, 2])
    np.testing.assert_allclose(s.state_mean, ds.observations.mean(0), rtol=1e-6)
    b = s.sample(jax.random.PRNGKey(1), 4000)
    raw = np.asarray(b["states"])[:, -1] * s.state_std + s.state_mean  # last step is always real
    ep = np.rint(raw[:, 0]).astype(int)
    assert set(np.unique(ep)) == {0, 2}
    assert np.mean(ep == 2) == pytest.approx(0.75, abs=0.03)  # lengths 1 : 3
    np.testing.assert_array_equal(
        SequenceSampler(ds, 2, top_fraction=0.1, top_fraction_by="episodes").episodes, [2])
    np.testing.assert_array_equal(top_episodes(np.arange(10.0), 0.3), [7, 8, 9])
    with pytest.raises(ValueError, match="top_fraction"):
        SequenceSampler(ds, 2, top_fraction=0.0)
    with pytest.raises(ValueError, match="top_fraction_by"):
        SequenceSampler(ds, 2, top_fraction=0.5, top_fraction_by="returns")


def kzl_top_timesteps(returns, lengths, pct_traj):
    """The DT reference's loop (kzl/decision-transformer gym/experiment.py), written out."""
    num_timesteps = max(int(pct_traj * sum(lengths)), 1)
    sorted_inds = np.argsort(returns)  # lowest to highest
    num_trajectories, timesteps, ind = 1, lengths[sorted_inds[-1]], len(lengths) - 2
    while ind >= 0 and timesteps + lengths[sorted_inds[ind]] <= num_timesteps:
        timesteps += lengths[sorted_inds[ind]]
        num_trajectories += 1
        ind -= 1
    return np.sort(sorted_inds[-num_trajectories:])


def test_top_fraction_by_timesteps_hand_computed():
    # episodes by return: 1 (9, 30 steps), 3 (7, 40 steps), 0 (5, 10 steps), 2 (1, 20 steps);
    # 100 steps in all
    returns, lengths = np.array([5.0, 9.0, 1.0, 7.0]), np.array([10, 30, 20, 40])
    cases = {
        0.5: [1],  # budget 50: 30 kept; 30 + 40 > 50 stops (episode 0 would fit: no skipping)
        0.699: [1],  # budget int(69.9) = 69
        0.7: [1, 3],  # budget 70: 30 + 40 <= 70; + 10 > 70
        0.8: [0, 1, 3],  # budget 80: 30 + 40 + 10
        0.05: [1],  # budget 5 < 30: the best episode is always kept
        1.0: [0, 1, 2, 3],
    }
    for fraction, expected in cases.items():
        np.testing.assert_array_equal(top_timesteps(returns, lengths, fraction), expected)
        np.testing.assert_array_equal(kzl_top_timesteps(returns, lengths, fraction), expected)
        np.testing.assert_array_equal(top_trajectories(returns, lengths, fraction), expected)
    np.testing.assert_array_equal(top_trajectories(returns, lengths, 0.5, by="episodes"), [1, 3])
    # random cases against the reference loop (distinct returns, so no tie-breaking questions)
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        rets, lens = rng.permutation(n) * 1.5 - 3, rng.integers(1, 50, n)
        frac = float(rng.uniform(0.01, 1.0))
        np.testing.assert_array_equal(top_timesteps(rets, lens, frac),
                                      kzl_top_timesteps(rets, lens, frac))
    # the sampler keeps those episodes and draws them in proportion to their length
    data = by_episode(lengths)
    rewards = np.repeat(returns / lengths, lengths)
    ds = TrajectoryDataset(data.observations, data.actions, rewards, data.terminals,
                           data.timeouts, data.episode_starts, lengths, env_id="Foo-v0")
    s = SequenceSampler(ds, context_len=2, top_fraction=0.7)
    np.testing.assert_array_equal(s.episodes, [1, 3])
    assert s.longest_episode == 40
    b = s.sample(jax.random.PRNGKey(1), 4000)
    ep = np.rint(np.asarray(b["states"])[:, -1, 0] * s.state_std[0] + s.state_mean[0])
    assert np.mean(ep == 3) == pytest.approx(40 / 70, abs=0.03)


def test_sample_batch_pure_jit_and_vmap_over_keys():
    s = SequenceSampler(small_dataset(), context_len=4)
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    jitted = jax.jit(sample_batch, static_argnums=(2, 3))
    vmapped = jax.jit(jax.vmap(lambda k: sample_batch(s.arrays, k, 8, 4)))(keys)
    shapes = {k: v.shape for k, v in vmapped.items()}
    assert shapes == {"rtg": (3, 8, 4), "states": (3, 8, 4, 2), "actions": (3, 8, 4, 1),
                      "timesteps": (3, 8, 4), "mask": (3, 8, 4)}
    for i in range(3):
        one = jitted(s.arrays, keys[i], 8, 4)
        eager = sample_batch(s.arrays, keys[i], 8, 4)
        for k in one:
            np.testing.assert_array_equal(vmapped[k][i], one[k])
            np.testing.assert_array_equal(eager[k], one[k])


def test_discrete_actions_are_int32_with_zero_padding():
    obs = np.arange(6, dtype=np.float32)[:, None]
    ds = TrajectoryDataset.from_flat(obs, np.array([1, 0, 1, 1, 0, 1]), np.ones(6),
                                     [0, 0, 0, 1, 0, 0], np.zeros(6), env_id="Foo-v0",
                                     discrete=True, num_actions=2)
    s = SequenceSampler(ds, context_len=3)
    b = windows_at(s.arrays, jnp.array([3, 4]), 3)
    assert b["actions"].dtype == jnp.int32 and b["actions"].shape == (2, 3)
    np.testing.assert_array_equal(b["actions"], [[0, 0, 1], [0, 0, 1]])
    np.testing.assert_array_equal(b["mask"], [[0, 0, 1], [0, 1, 1]])
    np.testing.assert_array_equal(b["timesteps"], [[0, 0, 3], [0, 0, 1]])


def test_episode_start_windows_cover_whole_episodes_length_weighted():
    lengths = np.array([2, 6, 12])
    s = SequenceSampler(by_episode(lengths), context_len=12)
    arrays = s.arrays
    b = sample_batch(arrays, jax.random.PRNGKey(1), 6000, 12, from_episode_start=True)
    mask = np.asarray(b["mask"])
    first = np.argmax(mask > 0, axis=1)
    rows = np.arange(len(first))
    # every window starts at timestep 0 and holds the whole episode (K = longest episode)
    np.testing.assert_array_equal(np.asarray(b["timesteps"])[rows, first], 0)
    raw = np.asarray(b["states"]) * s.state_std + s.state_mean
    ep = np.rint(raw[rows, first, 0]).astype(int)
    np.testing.assert_array_equal(mask.sum(1), lengths[ep])
    np.testing.assert_array_equal(np.asarray(b["timesteps"])[:, -1], lengths[ep] - 1)
    freq = np.bincount(ep, minlength=3) / len(ep)
    np.testing.assert_allclose(freq, lengths / lengths.sum(), atol=0.02)


def effective_transition_weights(sampler, num_batches, batch_size, per_window):
    """Each transition's weight in the training loss, averaged over `num_batches` batches of
    whole-episode windows: d loss / d (squared error of that transition), summed over the
    windows holding it. Returns f64 [number of transitions]; each batch's weights sum to 1."""
    k = sampler.context_len
    big = sample_batch(sampler.arrays, jax.random.PRNGKey(7), num_batches * batch_size, k,
                       from_episode_start=True)
    mask = big["mask"].reshape(num_batches, batch_size, k)
    actions = big["actions"].reshape(num_batches, batch_size, k, 1)

    def batch_weights(actions, mask):
        # preds = actions + sqrt(u): the squared error is u, so d loss / d u = each step's weight
        def loss(u):
            return action_loss(actions + jnp.sqrt(u)[..., None], actions, mask, False,
                               per_window=per_window)[0]

        return jax.grad(loss)(jnp.ones(mask.shape))

    w = np.asarray(jax.jit(jax.vmap(batch_weights))(actions, mask), np.float64)
    np.testing.assert_allclose(w.sum(axis=(1, 2)), 1.0, rtol=1e-4)
    raw = np.asarray(big["states"]) * sampler.state_std + sampler.state_mean  # (episode, pos)
    ep, pos = np.rint(raw[..., 0]).astype(int), np.rint(raw[..., 1]).astype(int)
    starts = sampler.dataset.episode_starts
    index = (starts[ep] + pos).reshape(w.shape)
    real = np.asarray(mask) > 0
    total = np.bincount(index[real], weights=w[real], minlength=sampler.num_steps)
    return total / num_batches


def test_whole_episode_sampling_weighs_every_transition_equally():
    """Episodes of 100, 300 and 900 steps: every transition's expected weight is 1/T.

    Per batch, an episode's total weight is (windows holding it) / B with that count
    Binomial(B, L/T), so over N batches its mean has std sqrt(p (1 - p) / (N B)), p = L/T;
    the assertion allows 5 of them. Averaging over all real steps of the batch (the previous
    normalisation) weighs transitions in proportion to their episode's length and fails it.
    """
    lengths = np.array([100, 300, 900])
    total = lengths.sum()
    sampler = SequenceSampler(by_episode(lengths), context_len=900)
    num_batches, batch_size = 400, 8
    weights = effective_transition_weights(sampler, num_batches, batch_size, per_window=True)
    starts = np.cumsum(lengths) - lengths
    p = lengths / total
    tolerance = 5 * np.sqrt(p * (1 - p) / (num_batches * batch_size))
    per_episode = np.array([weights[s0:s0 + n].sum() for s0, n in zip(starts, lengths,
                                                                        strict=True)])
    for s0, n in zip(starts, lengths, strict=True):  # uniform inside each (whole) episode
        np.testing.assert_allclose(weights[s0:s0 + n], weights[s0], rtol=1e-4)
    assert np.all(np.abs(per_episode - p) <= tolerance), (per_episode, p, tolerance)
    np.testing.assert_allclose(weights * total, 1.0, atol=np.max(tolerance * total / lengths))

    # the previous normalisation: transitions weigh in proportion to their episode's length
    # (about L^2 / sum L^2 per episode: 0.011, 0.099, 0.890 instead of 0.077, 0.231, 0.692)
    old = effective_transition_weights(sampler, num_batches, batch_size, per_window=False)
    old_per_episode = np.array([old[s0:s0 + n].sum() for s0, n in zip(starts, lengths,
                                                                      strict=True)])
    assert np.all(np.abs(old_per_episode - p) > tolerance)
    np.testing.assert_allclose(old_per_episode, lengths ** 2 / np.sum(lengths ** 2), atol=0.03)
