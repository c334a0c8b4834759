"""`tit_for_tat` and `grim_trigger` that defect in the last round: the endgame bound of docs/results/league.md.

Not part of the project: load with EVOARENA_PLUGINS=docs/results/league/endgame_strategies.py.
"""
from evoarena.agents.scripted import ScriptedAgent, strategy
from evoarena.envs.dilemma import (
    ANY_OPPONENT_EVER_DEFECTED,
    COOPERATE,
    DEFECT,
    FIRST_ROUND,
    LAST_OTHERS_DEFECT_FRAC,
    LAST_ROUND,
)


@strategy("dilemma_v0", "x_tft_endgame")
class TftEndgame(ScriptedAgent):
    def choose(self, features, mask):
        if features[LAST_ROUND]:
            return DEFECT
        if features[FIRST_ROUND]:
            return COOPERATE
        return DEFECT if features[LAST_OTHERS_DEFECT_FRAC] > 0.5 else COOPERATE


@strategy("dilemma_v0", "x_grim_endgame")
class GrimEndgame(ScriptedAgent):
    def choose(self, features, mask):
        return DEFECT if features[LAST_ROUND] or features[ANY_OPPONENT_EVER_DEFECTED] else COOPERATE
