"""Statistics of benchmark scores: means with t intervals, and the aggregate metrics of Agarwal et al.
2021 ("Deep RL at the edge of the statistical precipice"): interquartile mean, probability of
improvement, performance profiles, with stratified-bootstrap percentile intervals.

Score arrays are ``(runs, tasks)``: one row per independent run (seed), one column per task.
Each function here computes the same numbers as the ``rliable`` package on the same arrays (a test
checks it to 1e-6): the bootstrap draws its resamples exactly as ``rliable`` does, so with
``seed=s`` the intervals equal ``rliable``'s after ``np.random.seed(s)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from evoarena.agents.match import mean_ci

__all__ = ["average_score_distribution", "iqm", "mean_ci", "probability_of_improvement", "score_distribution",
           "stratified_bootstrap", "summarize"]


def summarize(result: Any) -> dict[str, Any]:
    """JSON-ready summary of a :class:`~evoarena.agents.match.MatchResult`: mean return +- 95% CI
    per seat and the mean of every metric."""
    seats = {}
    for a in result.agents:
        mean, half = mean_ci(result.returns[a])
        seats[a] = {"agent": result.seat_names[a], "mean_return": mean, "ci95": half}
    return {"env": result.env_id, "episodes": len(result.metrics), "seats": seats, "metrics": result.mean_metrics()}


def _scores(x: Any) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"scores must be a non-empty (runs, tasks) array, got shape {a.shape}")
    return a


def iqm(scores: Any) -> float:
    """Interquartile mean of all scores: the mean of what is left after cutting ``int(n / 4)`` of the
    ``n`` values from each end (rliable's ``aggregate_iqm``)."""
    x = np.sort(_scores(scores), axis=None)
    cut = int(0.25 * x.size)
    return float(x[cut:x.size - cut].mean())


def probability_of_improvement(x: Any, y: Any) -> float:
    """P(X > Y): per task, the share of (run of x, run of y) pairs in which x scores higher, ties
    counting half (the Mann-Whitney U statistic over ``runs_x * runs_y``), averaged over tasks."""
    x, y = _scores(x), _scores(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has {x.shape[1]} tasks but y has {y.shape[1]}")
    gt = (x[:, None, :] > y[None, :, :]).mean(axis=(0, 1))
    eq = (x[:, None, :] == y[None, :, :]).mean(axis=(0, 1))
    return float(np.mean(gt + 0.5 * eq))


def score_distribution(scores: Any, taus: Sequence[float]) -> np.ndarray:
    """Performance profile: for each threshold tau, the share of all (run, task) scores above tau."""
    x = _scores(scores).reshape(-1)
    return (x[None, :] > np.asarray(taus, dtype=np.float64)[:, None]).mean(axis=1)


def average_score_distribution(scores: Any, taus: Sequence[float]) -> np.ndarray:
    """Performance profile of task means: for each tau, the share of tasks whose mean over runs is above tau."""
    x = _scores(scores).mean(axis=0)
    return (x[None, :] > np.asarray(taus, dtype=np.float64)[:, None]).mean(axis=1)


def stratified_bootstrap(func: Callable[..., Any], *arrays: Any, reps: int = 2000, level: float = 0.95,
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``func(*arrays)`` and its stratified-bootstrap percentile interval: ``(point, low, high)``, each a
    1-D array (one entry per output of ``func``).

    Each resample redraws, independently for every array and within every task (column), as many runs
    as the array has, with replacement. The resamples are drawn from ``np.random.RandomState(seed)``
    in the order ``rliable`` draws them from numpy's global generator.
    """
    if not arrays:
        raise ValueError("stratified_bootstrap needs at least one score array")
    data = [_scores(a) for a in arrays]
    rng = np.random.RandomState(seed)
    point = np.atleast_1d(np.asarray(func(*data), dtype=np.float64))
    results = np.empty((reps, point.size))
    cols = [np.arange(a.shape[1])[None, :] for a in data]
    for r in range(reps):
        resampled = [a[rng.choice(a.shape[0], a.shape, replace=True), c] for a, c in zip(data, cols)]
        results[r] = np.atleast_1d(np.asarray(func(*resampled), dtype=np.float64))
    tail = (1.0 - level) / 2.0
    low = np.empty(point.size)
    high = np.empty(point.size)
    for k in range(point.size):
        low[k], high[k] = np.percentile(results[:, k], [100 * tail, 100 * (1.0 - tail)])
    return point, low, high
