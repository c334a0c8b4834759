"""The one registry of worlds: ``make(env_id, **kwargs)``, ``make_aec``, ``list_envs``, and ``describe``: what a
world is made of (agents, roles, action and feature counts), probed once per ``(env_id, kwargs)``."""

from __future__ import annotations

import difflib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pettingzoo.utils.conversions import parallel_to_aec

from evoarena.envs.base import EnvArgumentError, TextParallelEnv

_REGISTRY: dict[str, Callable[..., TextParallelEnv]] = {}


class UnknownEnvError(ValueError):
    """An env id that is not registered."""


def register(env_id: str, factory: Callable[..., TextParallelEnv]) -> None:
    """Register a world under ``env_id`` (e.g. ``negotiation_v0``)."""
    if env_id in _REGISTRY:
        raise ValueError(f"env id {env_id!r} is already registered")
    _REGISTRY[env_id] = factory


def list_envs() -> list[str]:
    """The registered env ids, sorted."""
    return sorted(_REGISTRY)


def env_class(env_id: str) -> Callable[..., TextParallelEnv]:
    """The class (factory) registered under ``env_id``; a clear error for unknown ids."""
    if env_id not in _REGISTRY:
        close = difflib.get_close_matches(env_id, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownEnvError(f"unknown env id {env_id!r}{hint}; known: {', '.join(list_envs())}")
    return _REGISTRY[env_id]


def make(env_id: str, **kwargs) -> TextParallelEnv:
    """A new ParallelEnv of world ``env_id`` built with ``kwargs``; an argument the world does not take is an
    :class:`EnvArgumentError` naming it and the world's arguments."""
    factory = env_class(env_id)
    params = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = [k for k in kwargs if k not in params]
        if unknown:
            known = ", ".join(k for k in params if k != "render_mode")
            raise EnvArgumentError(f"{env_id}: unknown argument(s) {', '.join(map(repr, unknown))}; its arguments: "
                                   f"{known}")
    return factory(**kwargs)


def make_aec(env_id: str, **kwargs):
    """The AEC form of ``make(env_id, **kwargs)``."""
    return parallel_to_aec(make(env_id, **kwargs))


@dataclass(frozen=True)
class WorldInfo:
    """The shape of a world built with given kwargs: its agents in order, each agent's role, and per role
    the number of actions and of features."""

    env_id: str
    agents: tuple[str, ...]
    roles: dict[str, str]  #: agent -> role
    num_actions: dict[str, int]  #: role -> size of its action space
    num_features: dict[str, int]  #: role -> length of its feature vector

    def agent_of(self, role: str) -> str:
        """The first agent that plays ``role`` (an error naming the roles when none does)."""
        for agent in self.agents:
            if self.roles[agent] == role:
                return agent
        raise ValueError(f"{self.env_id} has no role {role!r}; roles: {', '.join(sorted(set(self.roles.values())))}")


def describe(env_id: str, kwargs: dict[str, Any] | None = None) -> WorldInfo:
    """:class:`WorldInfo` of ``make(env_id, **kwargs)``, built once per distinct ``(env_id, kwargs)``."""
    return _describe(env_id, json.dumps(kwargs or {}, sort_keys=True))


@lru_cache(maxsize=64)
def _describe(env_id: str, kwargs_json: str) -> WorldInfo:
    world = make(env_id, **json.loads(kwargs_json))
    try:
        agents = tuple(world.possible_agents)
        roles = {a: world.role(a) for a in agents}
        first = {role: next(a for a in agents if roles[a] == role) for role in dict.fromkeys(roles.values())}
        return WorldInfo(env_id, agents, roles,
                         {r: int(world.action_space(a).n) for r, a in first.items()},
                         {r: int(world.observation_space(a)["features"].shape[0]) for r, a in first.items()})
    finally:
        world.close()
