"""study.stats against closed forms, scipy and rliable (the reference implementation of the
same metrics: github.com/google-research/rliable)."""

import warnings

import numpy as np
import pytest
from rliable import library as rly
from rliable import metrics
from scipy import stats as sps

from s4dm_jax.study import stats


def test_metrics_match_closed_forms_scipy_and_rliable():
    x = np.arange(12, dtype=float).reshape(4, 3)  # [runs, tasks]
    # IQM of 0..11: int(12 / 4) = 3 cut at each end -> mean of 3..8 = 5.5
    assert stats.iqm(x) == 5.5
    rng = np.random.default_rng(0)
    y = rng.normal(50, 20, size=(7, 5))
    np.testing.assert_allclose(stats.iqm(y), sps.trim_mean(y.reshape(-1), 0.25), rtol=1e-12)
    np.testing.assert_allclose(stats.iqm(y), metrics.aggregate_iqm(y), rtol=1e-12)
    np.testing.assert_allclose(stats.mean(y), metrics.aggregate_mean(y), rtol=1e-12)
    np.testing.assert_allclose(stats.median(y), metrics.aggregate_median(y), rtol=1e-12)
    np.testing.assert_allclose(stats.optimality_gap(y), metrics.aggregate_optimality_gap(y, 100),
                               rtol=1e-12)
    assert stats.optimality_gap(np.full((2, 2), 150.0)) == 0.0
    # batched: one value per leading replicate
    np.testing.assert_allclose(stats.iqm(np.stack([y, y + 1])), [stats.iqm(y), stats.iqm(y) + 1])


def test_probability_of_improvement_is_mann_whitney_and_matches_rliable():
    low, high = np.zeros((3, 2)), np.ones((4, 2))
    assert stats.probability_of_improvement(high, low) == 1.0  # separated samples
    assert stats.probability_of_improvement(low, high) == 0.0
    assert stats.probability_of_improvement(low, low) == 0.5  # ties count 1/2
    # x = [1, 2], y = [2]: 1 < 2 (0), 2 = 2 (1/2) -> 0.25
    assert stats.prob_greater([[1.0], [2.0]], [[2.0]])[0] == 0.25
    rng = np.random.default_rng(1)
    x, y = rng.normal(1, 1, size=(5, 4)), rng.normal(0, 1, size=(6, 4))
    x[0, 0] = y[0, 0]  # a tie
    np.testing.assert_allclose(stats.probability_of_improvement(x, y),
                               metrics.probability_of_improvement(x, y), rtol=1e-12)
    u = [sps.mannwhitneyu(x[:, t], y[:, t], alternative="greater").statistic / 30
         for t in range(4)]
    np.testing.assert_allclose(stats.prob_greater(x, y), u, rtol=1e-12)


def test_profile_matches_rliable_score_distributions():
    rng = np.random.default_rng(2)
    x = rng.normal(50, 20, size=(6, 3))
    taus = np.linspace(0, 100, 11)
    ours = stats.profile(x, taus)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs, _ = rly.create_performance_profile({"x": x}, taus, reps=10)
    np.testing.assert_allclose(ours, theirs["x"], rtol=1e-12)
    point, band = stats.profile_interval(x.T[:, :, None], taus, "p", reps=200)
    np.testing.assert_allclose(point, ours)
    assert band.shape == (2, 11) and np.all(band[0] <= point + 1e-12)


def test_seed_bootstrap_agrees_with_rliable_on_seed_means():
    """Same estimator, different random streams: percentile intervals agree to sampling
    error (rliable's from its seeded global generator)."""
    rng = np.random.default_rng(3)
    eps = rng.normal(50, 15, size=(4, 10, 5))  # [tasks, seeds, episodes]
    point, (lo, hi) = stats.interval(eps, "iqm", "agree", reps=20_000)
    runs = stats.seed_means(eps)  # [seeds, tasks]
    np.random.seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rp, rci = rly.get_interval_estimates(
            {"x": runs}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=20_000,
            random_state=np.random.RandomState(0))
    assert point == pytest.approx(float(rp["x"][0]), rel=1e-12)
    assert lo == pytest.approx(float(rci["x"][0, 0]), abs=0.3)
    assert hi == pytest.approx(float(rci["x"][1, 0]), abs=0.3)


def test_intervals_are_keyed_and_of_a_constant_are_the_point():
    const = np.full((2, 3, 4), 7.0)
    for two_level in (False, True):
        assert stats.interval(const, "iqm", "c", reps=100, two_level=two_level) == (7.0,
                                                                                   (7.0, 7.0))
    rng = np.random.default_rng(4)
    eps = rng.normal(0, 1, size=(1, 5, 3))
    a = stats.interval(eps, "mean", "cell-a", reps=500)
    assert a == stats.interval(eps, "mean", "cell-a", reps=500)  # same key, same interval
    np.random.seed(123)  # the global generator plays no part
    assert a == stats.interval(eps, "mean", "cell-a", reps=500)
    assert a != stats.interval(eps, "mean", "cell-b", reps=500)
    # the key's generator is stable across processes: sha256, not hash()
    assert stats.key_rng("x").integers(0, 2**31) == stats.key_rng("x").integers(0, 2**31)


def test_disagreeing_seeds_give_a_wide_interval_episodes_would_hide():
    """The quick-tuned S4DM cell on halfcheetah-medium-replay: per-seed mean returns 622, 1547
    and 176 (normalised with refs (0, 12135) here, 5.1 to 12.7), 10 episodes each. Resampling
    seeds spans the seeds' spread; resampling 30 episodes as runs gave [5.4, 10.7]."""
    rng = np.random.default_rng(5)
    per_seed = np.array([622.0, 1547.0, 176.0]) / 12135 * 100
    eps = per_seed[None, :, None] + rng.normal(0, 0.3, size=(1, 3, 10))
    eps -= eps.mean(axis=-1, keepdims=True) - per_seed[None, :, None]  # exact seed means
    point, (lo, hi) = stats.interval(eps, "iqm", "wide", reps=5000)
    assert lo == pytest.approx(per_seed.min(), abs=0.05)
    assert hi == pytest.approx(per_seed.max(), abs=0.05)
    assert hi - lo > 10
    _, (elo, ehi) = stats.interval(eps.reshape(1, 30, 1), "iqm", "wide", reps=5000)
    assert ehi - elo < (hi - lo) / 2  # episodes as runs: far too narrow


def test_two_level_bootstrap_adds_episode_noise():
    rng = np.random.default_rng(6)
    eps = rng.normal(0, 10, size=(1, 2, 20))
    eps -= eps.mean(axis=-1, keepdims=True)  # both seeds mean 0: seed resampling sees nothing
    assert stats.interval(eps, "mean", "k", reps=500)[1] == pytest.approx((0.0, 0.0), abs=1e-12)
    _, (lo, hi) = stats.interval(eps, "mean", "k", reps=2000, two_level=True)
    # the mean of 40 draws of sd ~10: 95% half width ~ 1.96 * 10 / sqrt(40) = 3.1
    assert -4.5 < lo < -1.5 and 1.5 < hi < 4.5


def test_improvement_interval_and_bad_input():
    rng = np.random.default_rng(7)
    x, y = rng.normal(10, 1, size=(3, 5, 4)), rng.normal(0, 1, size=(3, 5, 4))
    assert stats.improvement_interval(x, y, "poi", reps=300) == (1.0, (1.0, 1.0))
    p, (lo, hi) = stats.improvement_interval(x, x + rng.normal(0, 1, size=x.shape), "poi",
                                             reps=500)
    assert lo <= p <= hi and hi - lo > 0.1
    with pytest.raises(ValueError, match="same tasks"):
        stats.improvement_interval(x, y[:2], "poi")
    with pytest.raises(ValueError, match=r"\[tasks, seeds, episodes\]"):
        stats.interval(np.ones((3, 4)), "iqm", "k")
    with pytest.raises(ValueError, match="finite"):
        stats.interval(np.full((1, 2, 2), np.nan), "iqm", "k")
