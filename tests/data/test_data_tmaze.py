"""Generated T-Maze datasets (spec, determinism, episode structure, behaviour success rates
against their closed forms with binomial bounds, replay in the environment) and velocity-masked
datasets (the "-P" columns of the embedded Hopper data)."""

import numpy as np
import pytest

from s4dm_jax.data import DatasetError, load_dataset
from s4dm_jax.data.masked import mask_dataset
from s4dm_jax.data.tmaze import EPSILON, generate, parse_spec, provenance
from s4dm_jax.envs import validate_env_id
from s4dm_jax.envs.tmaze import TMazeEnv


def _bound(p, n):
    """4 binomial standard deviations of a rate over n draws (two-sided tail < 1e-4)."""
    return 4 * np.sqrt(p * (1 - p) / n)


def test_spec_parsing_and_errors():
    assert parse_spec("tmaze:active-L30-medium-n200-s3") == {
        "kind": "active", "corridor_length": 30, "quality": "medium", "episodes": 200, "seed": 3}
    assert parse_spec("tmaze:passive-L5-mixed")["episodes"] == 1000
    for bad in ("tmaze:passive-L0-mixed", "tmaze:other-L5-mixed", "tmaze:passive-L5-expert",
                "tmaze:passive-L5-mixed-x"):
        with pytest.raises(DatasetError, match="tmaze:passive-L100-mixed"):
            load_dataset(bad)
    with pytest.raises(DatasetError, match="env_id"):
        load_dataset("tmaze:passive-L5-mixed", env_id="Hopper-v5")


@pytest.mark.parametrize("kind", ["passive", "active"])
def test_mixed_dataset_structure_and_success_rates(kind):
    length, n = 20, 900
    spec = f"tmaze:{kind}-L{length}-mixed-n{n}-s1"
    ds = load_dataset(spec)
    again = generate(spec)
    np.testing.assert_array_equal(ds.actions, again.actions)
    np.testing.assert_array_equal(ds.observations, again.observations)
    assert validate_env_id(ds.env_id, explicit=False, where="t") == ds.env_id
    assert ds.discrete and ds.act_dim == 4 and ds.obs_dim == 2 and ds.num_episodes == n
    ep_len = length + (1 if kind == "passive" else 3)
    assert np.all(ds.episode_lengths == ep_len)
    ends = ds.episode_starts + ds.episode_lengths - 1
    assert np.all(ds.terminals[ends]) and ds.terminals.sum() == n and not ds.timeouts.any()
    off_end = np.ones(ds.num_steps, bool)
    off_end[ends] = False
    assert np.all(ds.rewards[off_end] == 0)  # reward only at the end
    ret = ds.episode_returns
    third = n // 3
    assert np.all(ret[:third] == 1)  # oracle
    noisy = 1 - EPSILON * 3 / 4  # a random action at the junction is the goal's turn 1 in 4
    assert abs(ret[third:2 * third].mean() - noisy) <= _bound(noisy, third)
    assert np.all(ret[2 * third:] == 0)  # uniform random: 4^-(L+1)
    assert ds.normalized_score(1.0) == 100.0
    assert provenance(spec)["env_id"] == ds.env_id


def test_medium_dataset_is_a_memoryless_half():
    n = 1000
    ds = generate(f"tmaze:passive-L10-medium-n{n}")
    assert abs(ds.episode_returns.mean() - 0.5) <= _bound(0.5, n)


def test_transitions_replay_in_the_environment():
    """Each episode's actions, replayed from the recorded seed, give its observations and
    rewards (the data is the environment's)."""
    spec = "tmaze:active-L7-mixed-n30-s2"
    ds, p = generate(spec), parse_spec(spec)
    env = TMazeEnv(7, "active")
    for i, (s, k) in enumerate(zip(ds.episode_starts, ds.episode_lengths, strict=True)):
        obs, _ = env.reset(seed=p["seed"] * 1_000_003 + i)
        for t in range(k):
            np.testing.assert_array_equal(obs, ds.observations[s + t])
            obs, r, done, _, _ = env.step(int(ds.actions[s + t]))
            assert r == ds.rewards[s + t] and done == (t == k - 1)


def test_masked_embedded_hopper_keeps_the_position_columns():
    full = load_dataset("embedded")
    masked = load_dataset("masked:embedded")
    assert masked.env_id == "s4dm_jax/Hopper-P-v5" and masked.obs_dim == 5
    np.testing.assert_array_equal(masked.observations, full.observations[:, :5])
    np.testing.assert_array_equal(masked.actions, full.actions)
    assert (masked.ref_min_score, masked.ref_max_score) == (full.ref_min_score,
                                                            full.ref_max_score)
    with pytest.raises(DatasetError, match="no velocity mask"):
        mask_dataset(generate("tmaze:passive-L3-mixed-n3"))
    with pytest.raises(DatasetError, match="columns"):
        mask_dataset(masked.__class__(
            full.observations[:, :6], full.actions, full.rewards, full.terminals, full.timeouts,
            full.episode_starts, full.episode_lengths, env_id="Hopper-v5"))
