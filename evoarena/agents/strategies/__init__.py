"""The built-in scripted strategies, one module per world; importing this package registers them all
(each module registers its strategies in :mod:`evoarena.agents.scripted` with the ``strategy`` decorator)."""

from evoarena.agents.strategies import dilemma, negotiation, signaling

__all__ = ["dilemma", "negotiation", "signaling"]
