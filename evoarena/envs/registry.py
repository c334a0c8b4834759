"""The one registry of worlds: ``make(env_id, **kwargs)``, ``make_aec``, ``list_envs``."""

from __future__ import annotations

import difflib
from collections.abc import Callable

from pettingzoo.utils.conversions import parallel_to_aec

from evoarena.envs.base import TextParallelEnv

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
    """A new ParallelEnv of world ``env_id`` built with ``kwargs``."""
    return env_class(env_id)(**kwargs)


def make_aec(env_id: str, **kwargs):
    """The AEC form of ``make(env_id, **kwargs)``."""
    return parallel_to_aec(make(env_id, **kwargs))
