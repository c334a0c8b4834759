"""Scripted strategies: hand-written experts and baselines that read ``features`` only, never ``text``.

Strategies register per world with the :func:`strategy` decorator; the first line of a
strategy's docstring is its one-line description. ``list_strategies(env_id)`` lists them and
``make_strategy(env_id, name, seed)`` builds one. The per-world strategies live in
``evoarena/agents/strategies/<world>.py`` and import this module (never the reverse); the package
``evoarena.agents`` imports them, so they are registered whenever any part of it is imported.

This module imports ``evoarena.envs`` only inside functions: a world plugin (``EVOARENA_PLUGINS``), loaded
when ``evoarena.envs`` is first imported, may define strategies, so it must find this module complete.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

_STRATEGIES: dict[str, dict[str, type[ScriptedAgent]]] = {}


class UnknownStrategyError(ValueError):
    """A strategy name that a world does not have."""


class ScriptedAgent:
    """Base of scripted strategies: ``choose(features, mask)`` decides from the feature vector.

    ``self.rng`` is a numpy Generator reseeded by ``reset(seed)``; strategies keep no other
    state between calls, so one object can act for many env copies at once.
    """

    env_id: str = ""
    strategy_name: str = ""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    @property
    def name(self) -> str:
        return f"scripted:{self.strategy_name}"

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        raise NotImplementedError

    def act(self, obs: dict[str, Any]) -> int:
        from evoarena.envs.base import only_legal  # not at the top: see the module doc

        forced = only_legal(obs)
        if forced is not None:
            return forced
        return int(self.choose(obs["features"], obs["action_mask"]))

    def act_batch(self, obs_list: Sequence[dict[str, Any]]) -> list[int]:
        return [self.act(o) for o in obs_list]

    def random_legal(self, mask: np.ndarray) -> int:
        """A uniformly random legal action."""
        return int(self.rng.choice(np.flatnonzero(mask)))


def strategy(env_id: str, name: str) -> Callable[[type[ScriptedAgent]], type[ScriptedAgent]]:
    """Class decorator registering a scripted strategy of world ``env_id`` under ``name``."""

    def deco(cls: type[ScriptedAgent]) -> type[ScriptedAgent]:
        table = _STRATEGIES.setdefault(env_id, {})
        if name in table:
            raise ValueError(f"strategy {name!r} of {env_id} is registered twice")
        cls.env_id, cls.strategy_name = env_id, name
        table[name] = cls
        return cls

    return deco


def list_strategies(env_id: str) -> list[str]:
    """Names of the scripted strategies of ``env_id``, sorted."""
    from evoarena.envs import env_class

    env_class(env_id)  # unknown env ids raise a clear error
    return sorted(_STRATEGIES.get(env_id, {}))


def describe_strategy(env_id: str, name: str) -> str:
    """The one-line description of a strategy (first docstring line)."""
    doc = strategy_class(env_id, name).__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def strategy_class(env_id: str, name: str) -> type[ScriptedAgent]:
    known = list_strategies(env_id)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownStrategyError(f"unknown strategy {name!r} for {env_id}{hint}; known: {', '.join(known)}")
    return _STRATEGIES[env_id][name]


def make_strategy(env_id: str, name: str, seed: int | None = None) -> ScriptedAgent:
    """A new scripted agent of strategy ``name`` in world ``env_id``."""
    return strategy_class(env_id, name)(seed=seed)
