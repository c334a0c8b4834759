"""Scripted strategies of ``dilemma_v0`` (0 = cooperate, 1 = defect).

Rule for more than two players: "the others cooperated last round" means that at most half of
the others defected last round (``last_others_defect_frac <= 0.5``); with two players that is
exactly "the opponent cooperated". Pavlov's "win" is a last payoff of at least ``(R + P) / 2``,
which with two players is exactly the outcomes CC and DC.
"""

from __future__ import annotations

import numpy as np

from evoarena.agents.scripted import ScriptedAgent, strategy
from evoarena.envs.dilemma import (
    ANY_OPPONENT_EVER_DEFECTED,
    COOPERATE,
    DEFECT,
    FIRST_ROUND,
    GAME_P,
    GAME_R,
    LAST_MY_ACTION,
    LAST_MY_PAYOFF,
    LAST_OTHERS_DEFECT_FRAC,
    OTHERS_DEFECT_RATE,
)
from evoarena.envs.dilemma import HEADER_SIZE as HISTORY_START

ENV_ID = "dilemma_v0"
GENEROSITY = 1 / 3


def others_cooperated(features: np.ndarray) -> bool:
    """At most half of the others defected last round (for two players: the opponent cooperated)."""
    return bool(features[LAST_OTHERS_DEFECT_FRAC] <= 0.5)


def others_defected_ago(features: np.ndarray, k: int) -> bool | None:
    """Whether more than half of the others defected ``k`` rounds ago (None: no such round in the
    observation's history window)."""
    row = HISTORY_START + 3 * (k - 1)
    if row + 2 >= len(features) or not features[row]:
        return None
    return bool(features[row + 2] > 0.5)


def tit_for_tat_move(features: np.ndarray, first: int = COOPERATE) -> int:
    if features[FIRST_ROUND]:
        return first
    return COOPERATE if others_cooperated(features) else DEFECT


@strategy(ENV_ID, "random")
class RandomDilemma(ScriptedAgent):
    """Cooperates or defects uniformly at random."""

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        return self.random_legal(mask)


@strategy(ENV_ID, "always_cooperate")
class AlwaysCooperate(ScriptedAgent):
    """Always cooperates."""

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        return COOPERATE


@strategy(ENV_ID, "always_defect")
class AlwaysDefect(ScriptedAgent):
    """Always defects."""

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        return DEFECT


@strategy(ENV_ID, "tit_for_tat")
class TitForTat(ScriptedAgent):
    """Cooperates first, then cooperates iff at most half of the others defected last round."""

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        return tit_for_tat_move(features)


@strategy(ENV_ID, "grim_trigger")
class GrimTrigger(ScriptedAgent):
    """Cooperates until any opponent has ever defected, then defects forever."""

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        return DEFECT if features[ANY_OPPONENT_EVER_DEFECTED] else COOPERATE


@strategy(ENV_ID, "pavlov")
class Pavlov(ScriptedAgent):
    """Win-stay lose-shift: cooperates first, repeats its move iff last payoff >= (R + P) / 2, else switches."""

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        if features[FIRST_ROUND]:
            return COOPERATE
        mine = int(features[LAST_MY_ACTION])
        won = features[LAST_MY_PAYOFF] >= (features[GAME_R] + features[GAME_P]) / 2
        return mine if won else 1 - mine


@strategy(ENV_ID, "generous_tit_for_tat")
class GenerousTitForTat(ScriptedAgent):
    """Tit for tat that forgives (cooperates instead of retaliating) with probability 1/3."""

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        move = tit_for_tat_move(features)
        if move == DEFECT and self.rng.random() < GENEROSITY:
            return COOPERATE
        return move


@strategy(ENV_ID, "suspicious_tit_for_tat")
class SuspiciousTitForTat(ScriptedAgent):
    """Tit for tat that defects in the first round."""

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        return tit_for_tat_move(features, first=DEFECT)


@strategy(ENV_ID, "tit_for_two_tats")
class TitForTwoTats(ScriptedAgent):
    """Defects only after the others defected in each of the last two rounds."""

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        return DEFECT if others_defected_ago(features, 1) and others_defected_ago(features, 2) else COOPERATE


@strategy(ENV_ID, "two_tits_for_tat")
class TwoTitsForTat(ScriptedAgent):
    """Defects if the others defected in either of the last two rounds."""

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        return DEFECT if others_defected_ago(features, 1) or others_defected_ago(features, 2) else COOPERATE


@strategy(ENV_ID, "alternator")
class Alternator(ScriptedAgent):
    """Cooperates first, then plays the opposite of its own last move (C, D, C, D, ...)."""

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        return COOPERATE if features[FIRST_ROUND] else 1 - int(features[LAST_MY_ACTION])


@strategy(ENV_ID, "soft_majority")
class SoftMajority(ScriptedAgent):
    """Cooperates while the others have defected in at most half of their moves so far."""

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        return COOPERATE if features[FIRST_ROUND] or features[OTHERS_DEFECT_RATE] <= 0.5 else DEFECT


@strategy(ENV_ID, "hard_majority")
class HardMajority(ScriptedAgent):
    """Defects first, then defects while the others have defected in at least half of their moves."""

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        return DEFECT if features[FIRST_ROUND] or features[OTHERS_DEFECT_RATE] >= 0.5 else COOPERATE


@strategy(ENV_ID, "joss")
class Joss(ScriptedAgent):
    """Tit for tat that defects instead of cooperating with probability 1/10 (a sneaky reciprocator)."""

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        move = tit_for_tat_move(features)
        if move == COOPERATE and self.rng.random() < 0.1:
            return DEFECT
        return move


@strategy(ENV_ID, "tester")
class Tester(ScriptedAgent):
    """Probes in two early rounds: cooperates first, defects in rounds 2 and 3, then plays tit for tat (cooperates
    unless the others defected last round). Needs the history window to reach 2 rounds back (``history`` >= 2)."""

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        if features[FIRST_ROUND]:
            return COOPERATE
        if others_defected_ago(features, 2) is None or others_defected_ago(features, 3) is None:
            return DEFECT  # rounds 2 and 3: one or two rounds played
        return tit_for_tat_move(features)
