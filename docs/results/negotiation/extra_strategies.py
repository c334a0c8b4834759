"""Negotiation strategies that appear nowhere in evoarena, for a robustness check.

Load with EVOARENA_PLUGINS=docs/results/negotiation/extra_strategies.py (see robustness.py beside it).
"""

from evoarena.agents.scripted import ScriptedAgent, strategy
from evoarena.agents.strategies.negotiation import (
    TimeDependentNegotiator,
    _context,
    bundles,
    closest_bundle,
    offer_value,
)
from evoarena.envs.negotiation import ACCEPT, F_OPP_CONCESSION, F_OPP_NUM_OFFERS, F_TURN, F_TURNS_LEFT

ENV = "negotiation_v0"


@strategy(ENV, "x_linear")
class LinearNegotiator(TimeDependentNegotiator):
    """Linear concession from 10 to 6 (Faratin e=1)."""
    u_min = 6.0
    e = 1.0


@strategy(ENV, "x_mirror")
class MirrorNegotiator(ScriptedAgent):
    """Reciprocates: starts asking 9, lowers its demand by what the opponent conceded (at least 1 every
    third turn), never below 5; accepts offers worth >= its demand or >= 4 on the last turn."""

    def choose(self, features, mask):
        pool, vals = _context(features)
        conc = float(features[F_OPP_CONCESSION]) if features[F_OPP_NUM_OFFERS] > 0 else 0.0
        demand = max(5.0, 9.0 - max(conc, 0.0) - int(features[F_TURN]) // 3)
        got = offer_value(features)
        if got is not None and (got >= demand or (features[F_TURNS_LEFT] <= 1 and got >= 4)):
            return ACCEPT
        return closest_bundle(pool, vals, demand - 1e-9)[0]


@strategy(ENV, "x_noisy")
class NoisyNegotiator(ScriptedAgent):
    """Random demands: proposes a random bundle worth 5..9 to itself, accepts an offer worth >= a random
    threshold in 4..7."""

    def choose(self, features, mask):
        pool, vals = _context(features)
        got = offer_value(features)
        if got is not None and got >= int(self.rng.integers(4, 8)):
            return ACCEPT
        ok = [a for v, _, a in bundles(pool, vals) if 5 <= v <= 9]
        return int(self.rng.choice(ok)) if ok else closest_bundle(pool, vals, 5)[0]


@strategy(ENV, "x_hardline")
class HardlineNegotiator(ScriptedAgent):
    """Asks 7 every turn (fewest items), accepts >= 7, or >= 3 on its last two turns."""

    def choose(self, features, mask):
        pool, vals = _context(features)
        got = offer_value(features)
        if got is not None and (got >= 7 or (features[F_TURNS_LEFT] <= 2 and got >= 3)):
            return ACCEPT
        return min((n, v, a) for v, n, a in bundles(pool, vals) if v >= 7)[2]
