"""Aggregate statistics (IQM, probability of improvement, performance profiles, stratified bootstrap):
hand-checked numbers, and agreement with rliable on the same arrays to 1e-6."""

import numpy as np
import pytest
from rliable import library as rly
from rliable import metrics

from evoarena.bench import stats


def test_iqm_by_hand():
    assert stats.iqm(np.arange(1, 9)) == 4.5  # 8 values: drop 2 each end, mean of 3, 4, 5, 6
    assert stats.iqm([[1, 100], [2, 3], [4, -50]]) == 2.5  # 6 values: drop 1 each end


def test_probability_of_improvement_by_hand():
    x, y = np.array([[1.0], [3.0]]), np.array([[2.0], [3.0]])
    # pairs (1,2) lose, (1,3) lose, (3,2) win, (3,3) tie: (1 + 0.5) / 4
    assert stats.probability_of_improvement(x, y) == 0.375
    assert stats.probability_of_improvement(x, x) == 0.5


def test_score_distributions_by_hand():
    s = np.array([[0.1, 0.9], [0.5, 0.7]])
    assert stats.score_distribution(s, [0.0, 0.5, 0.8, 1.0]).tolist() == [1.0, 0.5, 0.25, 0.0]
    assert stats.average_score_distribution(s, [0.2, 0.5]).tolist() == [1.0, 0.5]  # task means 0.3, 0.8


ARRAYS = {"a": np.random.default_rng(0).normal(size=(5, 3)),
          "b": np.random.default_rng(1).normal(0.4, 1.3, size=(7, 3)),
          "ties": np.round(np.random.default_rng(2).normal(size=(6, 2)))}


@pytest.mark.parametrize("key", list(ARRAYS))
def test_point_estimates_agree_with_rliable(key):
    x = ARRAYS[key]
    assert abs(stats.iqm(x) - metrics.aggregate_iqm(x)) < 1e-6
    y = ARRAYS["ties"] if x.shape[1] == 2 else ARRAYS["a"]
    assert abs(stats.probability_of_improvement(x, y) - metrics.probability_of_improvement(x, y)) < 1e-6
    taus = np.linspace(-2, 2, 9)
    assert np.abs(stats.score_distribution(x, taus) - rly.score_distributions(x, taus)).max() < 1e-6
    assert np.abs(stats.average_score_distribution(x, taus) - rly.average_score_distributions(x, taus)).max() < 1e-6


@pytest.mark.parametrize("seed", [0, 7])
def test_intervals_agree_with_rliable(seed):
    a, b = ARRAYS["a"], ARRAYS["b"]
    np.random.seed(seed)
    point, ci = rly.get_interval_estimates({"a": a}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=400)
    p, lo, hi = stats.stratified_bootstrap(stats.iqm, a, reps=400, seed=seed)
    assert abs(p[0] - point["a"][0]) < 1e-6 and np.abs(np.array([lo[0], hi[0]]) - ci["a"][:, 0]).max() < 1e-6
    assert lo[0] < p[0] < hi[0]

    np.random.seed(seed)
    point, ci = rly.get_interval_estimates({"ab": [a, b]}, metrics.probability_of_improvement, reps=300)
    p, lo, hi = stats.stratified_bootstrap(stats.probability_of_improvement, a, b, reps=300, seed=seed)
    assert abs(p[0] - point["ab"]) < 1e-6 and np.abs(np.array([lo[0], hi[0]]) - ci["ab"][:, 0]).max() < 1e-6

    taus = np.linspace(-2, 2, 11)
    np.random.seed(seed)
    prof, pci = rly.create_performance_profile({"b": b}, taus, reps=200)
    p, lo, hi = stats.stratified_bootstrap(lambda s: stats.score_distribution(s, taus), b, reps=200, seed=seed)
    assert np.abs(p - prof["b"]).max() < 1e-6 and np.abs(np.stack([lo, hi]) - pci["b"]).max() < 1e-6


def test_mean_ci_still_there():
    mean, half = stats.mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(2.4841, abs=1e-4)  # t(0.975, 2) * 1 / sqrt(3)
