"""Scripted strategies of ``negotiation_v0`` (Deal or No Deal); they read ``features`` only.

Every strategy except ``random`` is a deterministic function of the features, and all of them
ignore the opponent's offer history on purpose (only the standing offer matters to them), so a
learner that reads the history can do better against them.

Values: every agent's whole pool is worth 10. "Offer value" is the value to me of what I would
receive by accepting the standing offer; a "bundle" is what I propose to take.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from evoarena.agents.scripted import ScriptedAgent, strategy
from evoarena.envs.negotiation import (
    ACCEPT,
    F_HAS_OFFER,
    F_MAX_TURNS,
    F_OFFER_VALUE,
    F_POOL,
    F_TURN,
    F_TURNS_LEFT,
    F_VALUES,
    TOTAL_VALUE,
    propose_action,
)

ENV_ID = "negotiation_v0"

Triple = tuple[int, int, int]


def _context(features: np.ndarray) -> tuple[Triple, Triple]:
    p, v = F_POOL, F_VALUES
    pool = (int(features[p]), int(features[p + 1]), int(features[p + 2]))
    vals = (int(features[v]), int(features[v + 1]), int(features[v + 2]))
    return pool, vals


@lru_cache(maxsize=8192)
def bundles(pool: Triple, vals: Triple) -> tuple[tuple[int, int, int], ...]:
    """Every bundle I could take as ``(value to me, number of items, action id)``, sorted by that key."""
    out = []
    for b in range(pool[0] + 1):
        for h in range(pool[1] + 1):
            for k in range(pool[2] + 1):
                out.append((vals[0] * b + vals[1] * h + vals[2] * k, b + h + k, propose_action((b, h, k))))
    return tuple(sorted(out))


def closest_bundle(pool: Triple, vals: Triple, target: float) -> tuple[int, int]:
    """``(action, value)`` of the bundle worth at least ``target`` and closest to it; ties go to the
    fewest items taken (leaving the opponent more), then to the lowest action id."""
    for value, _, action in bundles(pool, vals):
        if value >= target:
            return action, value
    value, _, action = bundles(pool, vals)[-1]  # unreachable: taking everything is worth 10
    return action, value


def offer_value(features: np.ndarray) -> int | None:
    """The value to me of the standing offer, or None when there is none."""
    return int(features[F_OFFER_VALUE]) if features[F_HAS_OFFER] > 0 else None


@strategy(ENV_ID, "random")
class RandomNegotiator(ScriptedAgent):
    """Uniformly random legal action (a random proposal, or now and then an acceptance)."""

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        return self.random_legal(mask)


@strategy(ENV_ID, "greedy")
class GreedyNegotiator(ScriptedAgent):
    """Demands every item it values, accepts only offers worth >= 8 (>= 5 on the very last turn).

    Proposal: take all items with value > 0 to me (worth 10), give away the zero-valued ones.
    Acceptance: the standing offer is worth >= 8, or it is the final turn (declining means 0 for
    both) and the offer is worth >= 5, a fair share.
    """

    accept_at = 8
    accept_last = 5

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        pool, vals = _context(features)
        got = offer_value(features)
        if got is not None:
            last_turn = features[F_TURNS_LEFT] <= 1
            if got >= self.accept_at or (last_turn and got >= self.accept_last):
                return ACCEPT
        return propose_action(tuple(c if v > 0 else 0 for c, v in zip(pool, vals, strict=True)))


@strategy(ENV_ID, "fair")
class FairNegotiator(ScriptedAgent):
    """Proposes the fewest items worth >= 5 to itself, accepts any offer worth >= 5.

    Proposal: among bundles worth >= 5 to me, the one with the fewest items (leaving the most to
    the opponent), then the lowest value, then the lowest action id; always the same proposal.
    Acceptance: the standing offer is worth >= 5.
    """

    fair_share = TOTAL_VALUE / 2

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        got = offer_value(features)
        if got is not None and got >= self.fair_share:
            return ACCEPT
        pool, vals = _context(features)
        return _fair_bundle(pool, vals, self.fair_share)


@lru_cache(maxsize=8192)
def _fair_bundle(pool: Triple, vals: Triple, share: float) -> int:
    return min((n, value, action) for value, n, action in bundles(pool, vals) if value >= share)[2]


class TimeDependentNegotiator(ScriptedAgent):
    """Time-dependent concession (Faratin, Sierra & Jennings 1998) with target utility
    ``u(t) = u_max - (u_max - u_min) * (t / T) ** (1 / e)``, where ``t`` is the turn index (0 on
    the first turn) and ``T = max_turns - 1`` (the last turn, where the target reaches ``u_min``).

    Acceptance: the standing offer is worth >= u(t) (hence >= its own next proposal's value
    whenever that equals the target). Proposal: the bundle worth >= u(t) and closest to it, ties
    to the fewest items taken (leaving the opponent more), then the lowest action id.
    """

    u_max: float = 10.0
    u_min: float = 4.0
    e: float = 1.0

    def target(self, features: np.ndarray) -> float:
        t, last = float(features[F_TURN]), max(float(features[F_MAX_TURNS]) - 1.0, 1.0)
        frac = min(max(t / last, 0.0), 1.0)
        return self.u_max - (self.u_max - self.u_min) * frac ** (1.0 / self.e)

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        pool, vals = _context(features)
        target = self.target(features)
        action, value = closest_bundle(pool, vals, target - 1e-9)
        got = offer_value(features)
        if got is not None and (got >= target - 1e-9 or got >= value):
            return ACCEPT
        return action


@strategy(ENV_ID, "conceder")
class ConcederNegotiator(TimeDependentNegotiator):
    """Concedes fast: Faratin target u(t) = 10 - 6 (t/T)^(1/3), from 10 down to 4 at the last turn.

    Accepts an offer worth >= the target; proposes the bundle worth >= the target closest to it,
    ties to the fewest items taken. (e = 3 > 1: most of the concession happens early.)
    """

    u_min = 4.0
    e = 3.0


@strategy(ENV_ID, "boulware")
class BoulwareNegotiator(TimeDependentNegotiator):
    """Holds out: Faratin target u(t) = 10 - 5 (t/T)^(1/0.3), near 10 until the deadline, 5 at the end.

    Accepts an offer worth >= the target; proposes the bundle worth >= the target closest to it,
    ties to the fewest items taken. (e = 0.3 < 1: concedes only close to the deadline.)
    """

    u_min = 5.0
    e = 0.3
