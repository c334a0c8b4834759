"""Ratings: Elo and Bradley-Terry on hand-checked numbers, Bradley-Terry against choix, and recovery of
known strengths (ranks and 95% interval coverage) on synthetic matches."""

import math

import choix
import numpy as np
import pytest

from evoarena.bench import ratings as rt


def test_win_matrix_counts_draws_half():
    w = rt.win_matrix([(0, 1), (1, 0), (0, 2)], [1.0, 0.5, 0.0], 3)
    assert w.tolist() == [[0, 1.5, 0], [0.5, 0, 0], [1, 0, 0]]


def test_elo_one_game_and_the_order_average():
    mean, sd = rt.elo_ratings([(0, 1)], [1.0], 2, k=16, orders=5)
    assert mean.tolist() == [1508.0, 1492.0] and sd.tolist() == [0.0, 0.0]
    # a win each: whoever wins first (1508 vs 1492) loses the second game's 16 * (1 - 1 / (1 + 10 ** (16 / 400)))
    # = 8.368, ending 0.368 below 1500; the other ends 0.368 above; over many orders the spread is ~0.368
    late = 16 * (1 - 1 / (1 + 10 ** (16 / 400)))
    mean, sd = rt.elo_ratings([(0, 1), (1, 0)], [1.0, 1.0], 2, k=16, orders=400, seed=0)
    assert abs(mean[0] + mean[1] - 3000) < 1e-9
    assert sd == pytest.approx([late - 8, late - 8], rel=0.02)
    assert abs(mean[0] - 1500) < 0.1  # half the orders each way, within sampling


def test_bradley_terry_two_players_by_hand():
    theta = rt.bradley_terry(rt.win_matrix([(0, 1)] * 4, [1, 1, 1, 0], 2), alpha=0.0)
    assert theta == pytest.approx([math.log(3) / 2, -math.log(3) / 2], abs=1e-9)


def _synthetic(true, games, rng):
    n = len(true)
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n) for _ in range(games)])
    p = 1 / (1 + np.exp(-(true[pairs[:, 0]] - true[pairs[:, 1]])))
    return pairs, (rng.random(len(p)) < p).astype(float)


def test_bradley_terry_matches_choix():
    rng = np.random.default_rng(0)
    pairs, scores = _synthetic(np.array([-1.0, -0.3, 0.2, 1.1]), 15, rng)
    data = [(i, j) if s == 1 else (j, i) for (i, j), s in zip(pairs, scores)]
    w = rt.win_matrix(pairs, scores, 4)
    mle = choix.ilsr_pairwise(4, data, alpha=0.0, tol=1e-12)
    assert np.abs(rt.bradley_terry(w, alpha=0.0) - (mle - mle.mean())).max() < 1e-8
    for alpha in (0.01, 1.0):  # choix's penalty is alpha * ||theta||^2, as ours
        assert np.abs(rt.bradley_terry(w, alpha) - choix.opt_pairwise(4, data, alpha=alpha, tol=1e-12)).max() < 1e-6


def test_bradley_terry_stays_finite_for_an_unbeaten_player():
    theta = rt.bradley_terry(rt.win_matrix([(0, 1)] * 20 + [(1, 2)] * 20, [1.0] * 40, 3))
    assert np.all(np.isfinite(theta)) and theta[0] > theta[1] > theta[2]


def test_ratings_recover_known_strengths():
    """100 tournaments drawn from known strengths: the fitted order is the true one every time, and the
    95% bootstrap intervals cover the true strengths in >= 90% of the trials."""
    true = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    rng = np.random.default_rng(2021)
    covered = np.zeros(len(true))
    for trial in range(100):
        pairs, scores = _synthetic(true, 40, rng)
        theta, low, high = rt.bradley_terry_intervals(pairs, scores, len(true), reps=500, seed=trial)
        assert rt.ranks(theta).tolist() == rt.ranks(true).tolist() == [5, 4, 3, 2, 1]
        elo, _ = rt.elo_ratings(pairs, scores, len(true), orders=20, seed=trial)
        assert rt.ranks(elo).tolist() == [5, 4, 3, 2, 1]
        covered += (low <= true) & (true <= high)
    assert covered.sum() / covered.size >= 0.90, covered
    assert covered.min() >= 85, covered


def test_ranks_share_ties_and_bad_input_is_named():
    assert rt.ranks([3.0, 1.0, 3.0 + 1e-12, 0.0]).tolist() == [1, 3, 1, 4]
    with pytest.raises(ValueError, match="self-play"):
        rt.win_matrix([(1, 1)], [1.0], 2)
    with pytest.raises(ValueError, match=r"0\.\.1"):
        rt.elo_ratings([(0, 2)], [1.0], 2)


def test_ratings_config_defaults_to_the_fits_penalty():
    from evoarena.config import RatingsConfig

    assert RatingsConfig().bt_alpha == rt.DEFAULT_ALPHA
