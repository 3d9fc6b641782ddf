"""Statistics of a study: aggregate metrics and stratified-bootstrap intervals whose runs are
seeds.

A run is one training seed; its score is the mean over its evaluation episodes (episodes of one
seed share its network, so they are not independent runs). Scores of a model are arranged
[seeds, tasks] (rliable's [runs, tasks] layout, Agarwal et al. 2021, "Deep RL at the Edge of
the Statistical Precipice", and github.com/google-research/rliable, rliable/metrics.py and
rliable/library.py), or, with episodes kept, [tasks, seeds, episodes].

Every interval draws from its own `np.random.default_rng`, seeded from a key string (the
table, cell and metric) through SHA-256: an interval depends only on its own data and key,
never on which other cells or models are in the table, nor on numpy's global generator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np

CONFIDENCE = 0.95


def key_rng(key: str) -> np.random.Generator:
    """A generator seeded by the SHA-256 of `key` (stable across processes and Python
    versions, unlike hash())."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


# --- aggregate metrics on [..., runs, tasks] (leading axes: bootstrap replicates) ---------

def iqm(scores) -> np.ndarray:
    """Interquartile mean over all runs and tasks: the mean of the middle half of the sorted
    values, int(n / 4) cut at each end (scipy.stats.trim_mean(x, 0.25)); [..., R, T] -> [...]."""
    x = np.asarray(scores, np.float64)
    flat = np.sort(x.reshape(*x.shape[:-2], -1), axis=-1)
    n = flat.shape[-1]
    cut = int(0.25 * n)
    return flat[..., cut:n - cut].mean(axis=-1)


def mean(scores) -> np.ndarray:
    """Mean over tasks of the per-task mean over runs; [..., R, T] -> [...]."""
    return np.asarray(scores, np.float64).mean(axis=(-2, -1))


def median(scores) -> np.ndarray:
    """Median over tasks of the per-task mean over runs; [..., R, T] -> [...]."""
    return np.median(np.asarray(scores, np.float64).mean(axis=-2), axis=-1)


def optimality_gap(scores, gamma: float = 100.0) -> np.ndarray:
    """gamma - mean(min(score, gamma)) over runs and tasks (normalised scores: gamma 100, the
    expert); [..., R, T] -> [...]."""
    x = np.asarray(scores, np.float64)
    return gamma - np.minimum(x, gamma).mean(axis=(-2, -1))


METRICS: dict[str, Callable] = {"iqm": iqm, "mean": mean, "median": median,
                                "optimality_gap": optimality_gap}


def prob_greater(x, y) -> np.ndarray:
    """P(X > Y) per task, ties counted 1/2: the Mann-Whitney U statistic of x against y over
    (n m); x [..., n, T], y [..., m, T] -> [..., T]."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    diff = x[..., :, None, :] - y[..., None, :, :]  # [..., n, m, T]
    wins = (diff > 0).sum(axis=(-3, -2)) + 0.5 * (diff == 0).sum(axis=(-3, -2))
    return wins / (x.shape[-2] * y.shape[-2])


def probability_of_improvement(x, y) -> np.ndarray:
    """P(X > Y) per task, averaged over tasks; [..., n, T], [..., m, T] -> [...]."""
    return prob_greater(x, y).mean(axis=-1)


def profile(scores, taus) -> np.ndarray:
    """Performance profile: for each threshold tau, the fraction of runs scoring above tau,
    averaged over tasks (rliable's score distribution); [..., R, T], [K] -> [..., K]."""
    x = np.asarray(scores, np.float64)[..., None]
    return (x > np.asarray(taus, np.float64)).mean(axis=-3).mean(axis=-2)


# --- resampling ----------------------------------------------------------------------------

def seed_means(episodes) -> np.ndarray:
    """Per-seed mean scores [seeds, tasks] from episode scores [tasks, seeds, episodes]."""
    return np.asarray(episodes, np.float64).mean(axis=-1).T


def _check_episodes(episodes) -> np.ndarray:
    x = np.asarray(episodes, np.float64)
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(f"episode scores must be [tasks, seeds, episodes], non-empty; got "
                         f"shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("episode scores must be finite")
    return x


def resample(episodes, rng: np.random.Generator, reps: int,
             two_level: bool = False) -> np.ndarray:
    """Stratified bootstrap replicates of the per-seed means, [reps, seeds, tasks]: within each
    task, seeds drawn with replacement; with `two_level`, each drawn seed's episodes are drawn
    with replacement too (for cells with few seeds: the episode noise of each seed enters the
    interval)."""
    x = _check_episodes(episodes)
    tasks, seeds, eps = x.shape
    t = np.arange(tasks)[None, :, None]
    pick = rng.integers(0, seeds, size=(reps, tasks, seeds))
    if two_level:
        ep = rng.integers(0, eps, size=(reps, tasks, seeds, eps))
        means = x[t[..., None], pick[..., None], ep].mean(axis=-1)
    else:
        means = x.mean(axis=-1)[t, pick]
    return np.swapaxes(means, -1, -2)


def _percentiles(values: np.ndarray, size: float) -> tuple[float, float]:
    lo, hi = np.percentile(values, [50 * (1 - size), 50 * (1 + size)], axis=0)
    return float(lo), float(hi)


def interval(episodes, metric: str | Callable, key: str, reps: int = 2000,
             two_level: bool = False) -> tuple[float, tuple[float, float]]:
    """(point estimate, 95% percentile-bootstrap interval) of `metric` (a name in METRICS or a
    function of [..., seeds, tasks]) on one model's episode scores [tasks, seeds, episodes];
    the replicates resample seeds within each task (stratified) from the generator of
    `key`."""
    fn = METRICS[metric] if isinstance(metric, str) else metric
    x = _check_episodes(episodes)
    point = float(fn(seed_means(x)))
    reps_ = resample(x, key_rng(key), reps, two_level)
    return point, _percentiles(fn(reps_), CONFIDENCE)


def improvement_interval(x_episodes, y_episodes, key: str, reps: int = 2000,
                         two_level: bool = False) -> tuple[float, tuple[float, float]]:
    """P(X > Y) over per-seed means, per task then averaged over tasks, with its 95%
    interval; X and Y resampled independently (each stratified by task)."""
    x, y = _check_episodes(x_episodes), _check_episodes(y_episodes)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"X and Y must cover the same tasks; got {x.shape[0]} and "
                         f"{y.shape[0]}")
    point = float(probability_of_improvement(seed_means(x), seed_means(y)))
    rng = key_rng(key)
    rx = resample(x, rng, reps, two_level)
    ry = resample(y, rng, reps, two_level)
    return point, _percentiles(probability_of_improvement(rx, ry), CONFIDENCE)


def profile_interval(episodes, taus: Sequence[float], key: str, reps: int = 2000
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Performance profile at `taus` [K] over per-seed means and its 95% band [2, K]."""
    x = _check_episodes(episodes)
    point = profile(seed_means(x), taus)
    reps_ = profile(resample(x, key_rng(key), reps), taus)
    band = np.percentile(reps_, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)], axis=0)
    return point, band
