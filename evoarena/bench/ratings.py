"""Ratings from pairwise game outcomes: Elo averaged over random game orders, Bradley-Terry maximum
likelihood with stratified-bootstrap intervals, and ranks.

An outcome is ``(i, j, s)``: players ``i`` and ``j`` met once and ``i`` scored ``s`` (1 win, 0.5 draw,
0 loss; ``j`` scored ``1 - s``). Bradley-Terry: ``P(i beats j) = sigmoid(theta_i - theta_j)``, a draw
counting as half a win each; ``theta`` is fitted by Newton's method on the log-likelihood minus
``alpha * ||theta||^2`` (the penalty of ``choix.opt_pairwise``; it keeps a player who never lost finite),
and has mean 0. All functions are pure numpy.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit
from scipy.stats import rankdata

DEFAULT_ALPHA = 0.01  #: L2 penalty of the Bradley-Terry fit (tiny next to the likelihood of a few games)
ELO_SCALE = 400.0 / math.log(10.0)  #: Elo points per unit of Bradley-Terry theta


def _check(pairs: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(pairs) != len(scores):
        raise ValueError(f"{len(pairs)} pairs but {len(scores)} scores")
    if len(pairs) and (pairs.min() < 0 or pairs.max() >= n):
        raise ValueError(f"player indices must lie in 0..{n - 1}")
    if np.any(pairs[:, 0] == pairs[:, 1]):
        raise ValueError("an outcome pairs a player with itself; leave self-play out of ratings")
    if np.any((scores < 0) | (scores > 1)):
        raise ValueError("scores must lie in [0, 1] (1 win, 0.5 draw, 0 loss)")
    return pairs, scores


def win_matrix(pairs: np.ndarray, scores: np.ndarray, n: int) -> np.ndarray:
    """``W[i, j]``: what ``i`` scored against ``j`` in total (draws count half)."""
    pairs, scores = _check(pairs, scores, n)
    w = np.zeros((n, n))
    np.add.at(w, (pairs[:, 0], pairs[:, 1]), scores)
    np.add.at(w, (pairs[:, 1], pairs[:, 0]), 1.0 - scores)
    return w


def _bt_objective(theta: np.ndarray, wins: np.ndarray, alpha: float) -> np.ndarray:
    diff = theta[..., :, None] - theta[..., None, :]
    return -(wins * np.logaddexp(0.0, -diff)).sum(axis=(-2, -1)) - alpha * (theta ** 2).sum(-1)


def bradley_terry(wins: np.ndarray, alpha: float = DEFAULT_ALPHA, tol: float = 1e-10,
                  max_iter: int = 200) -> np.ndarray:
    """Penalised maximum-likelihood Bradley-Terry strengths (mean 0) of the win matrix ``wins``
    (``(..., n, n)``: a batch of matrices is fitted at once, e.g. bootstrap resamples)."""
    wins = np.asarray(wins, dtype=np.float64)
    n = wins.shape[-1]
    games = wins + np.swapaxes(wins, -1, -2)
    won = wins.sum(-1)
    theta = np.zeros(wins.shape[:-1])
    obj = _bt_objective(theta, wins, alpha)
    eye, ones = np.eye(n), np.full((n, n), 1.0 / n)
    for _ in range(max_iter):
        p = expit(theta[..., :, None] - theta[..., None, :])
        grad = won - (games * p).sum(-1) - 2.0 * alpha * theta
        c = games * p * (1.0 - p)
        neg_hess = c.sum(-1)[..., :, None] * eye - c + 2.0 * alpha * eye
        # theta is defined up to a shift: the 1/n * ones term pins the mean without changing the step
        step = np.linalg.solve(neg_hess + ones, grad[..., None])[..., 0]
        t = np.ones(theta.shape[:-1])
        for _ in range(50):  # backtracking: never accept a step that lowers the penalised likelihood
            new = theta + t[..., None] * step
            new_obj = _bt_objective(new, wins, alpha)
            bad = new_obj < obj - 1e-12 * (1.0 + np.abs(obj))
            if not np.any(bad):
                break
            t = np.where(bad, t / 2.0, t)
        theta, obj = new, new_obj
        if np.max(np.abs(t[..., None] * step), initial=0.0) < tol:
            break
    return theta - theta.mean(-1, keepdims=True)


def bradley_terry_intervals(pairs: np.ndarray, scores: np.ndarray, n: int, reps: int = 1000, level: float = 0.95,
                            alpha: float = DEFAULT_ALPHA, seed: int = 0
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bradley-Terry strengths and percentile-bootstrap ``level`` intervals: ``(theta, low, high)``.

    The bootstrap is stratified by pairing: each resample draws, for every pair of players, as many
    of that pair's games (with replacement) as it played, so the schedule of the tournament is kept.
    """
    pairs, scores = _check(pairs, scores, n)
    theta = bradley_terry(win_matrix(pairs, scores, n), alpha)
    rng = np.random.default_rng(seed)
    lo_hi = np.sort(pairs, axis=1)
    flip = pairs[:, 0] != lo_hi[:, 0]
    score_lo = np.where(flip, 1.0 - scores, scores)  # score of the lower-indexed player
    keys = lo_hi[:, 0] * n + lo_hi[:, 1]
    boot = np.zeros((reps, n, n))
    for key in np.unique(keys):
        s = score_lo[keys == key]
        i, j = divmod(int(key), n)
        total = s[rng.integers(0, len(s), size=(reps, len(s)))].sum(-1)
        boot[:, i, j] += total
        boot[:, j, i] += len(s) - total
    thetas = bradley_terry(boot, alpha)
    a = (1.0 - level) / 2.0
    low, high = np.percentile(thetas, [100 * a, 100 * (1 - a)], axis=0)
    return theta, low, high


def elo_ratings(pairs: np.ndarray, scores: np.ndarray, n: int, k: float = 16.0, initial: float = 1500.0,
                orders: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Elo ratings after playing the games in ``orders`` random orders: the mean over orders and
    its spread (standard deviation). Expected score ``1 / (1 + 10 ** ((R_j - R_i) / 400))``, update
    ``R_i += k (s - E_i)``, ``R_j -= k (s - E_i)``."""
    pairs, scores = _check(pairs, scores, n)
    rng = np.random.default_rng(seed)
    r = np.full((orders, n), float(initial))
    perm = np.argsort(rng.random((orders, len(scores))), axis=1)
    rows = np.arange(orders)
    for t in range(len(scores)):
        g = perm[:, t]
        i, j, s = pairs[g, 0], pairs[g, 1], scores[g]
        expected = 1.0 / (1.0 + 10.0 ** ((r[rows, j] - r[rows, i]) / 400.0))
        delta = k * (s - expected)
        r[rows, i] += delta
        r[rows, j] -= delta
    return r.mean(0), r.std(0)


def ranks(values: np.ndarray) -> np.ndarray:
    """1 = highest value; values equal to 9 significant digits share the better rank (1, 2, 2, 4)."""
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    x = np.where(finite, np.array([float(f"{v:.9g}") if f else v for v, f in zip(x, finite)]), x)
    return rankdata(-x, method="min").astype(int)


def outcome_score(a: np.ndarray, b: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Score of ``a`` against ``b`` per game from two arrays of returns: 1, 0.5 (equal within tol) or 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.where(np.abs(a - b) <= tol, 0.5, (a > b).astype(np.float64))
