"""Checks of a config that need a world or an agent, run before any work starts.

:mod:`evoarena.config` holds the schemas and their pure rules (types, ranges, cross-field rules, files
that must exist) and imports nothing of the project. What only a built world or agent can tell is
checked here: the env builds with its kwargs, seat patterns match its agents, the worlds of a corpus
exist, behaviour cloning's expert and opponents are agents of its world and its cloned roles are roles
of it. One function per config kind, ``check_config`` picks by type, and ``load_checked`` is
``load_config`` + ``check_config`` (what the CLI's stage commands use).

Every error is a :class:`~evoarena.config.ConfigError` naming the source (file), the key path (such as
``seats.player_9`` or ``bc.opponents[1]``), the bad value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from evoarena.config import (
    ConfigError,
    EnvConfig,
    EvaluateConfig,
    FinetuneConfig,
    PretrainConfig,
    TrainConfig,
    builder_hint,
    load_config,
)

M = TypeVar("M", bound=BaseModel)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def check_env(env: EnvConfig, source: str = "<config>", key: str = "env") -> dict[str, str]:
    """Build world ``env`` once; ``{agent: role}`` of its possible agents. ``key`` is the env's key path."""
    from evoarena.envs import UnknownEnvError, make

    try:
        world = make(env.id, **env.kwargs)
    except UnknownEnvError as exc:
        raise ConfigError(f"{source}: {_join(key, 'id')} = {env.id!r}: {exc}") from None
    except (ValueError, TypeError) as exc:  # EnvArgumentError, or a keyword the world does not take
        raise ConfigError(f"{source}: {_join(key, 'kwargs')} = {env.kwargs!r}: {exc}") from None
    try:
        return {a: world.role(a) for a in world.possible_agents}
    finally:
        world.close()


def check_train(cfg: TrainConfig, source: str = "<config>") -> None:
    """The env builds and every seat pattern matches some agent; every agent has a seat."""
    agents = list(check_env(cfg.env, source))
    for pattern in cfg.seats:
        if not any(fnmatch(a, pattern) for a in agents):
            raise ConfigError(f"{source}: seats.{pattern}: matches no agent of {cfg.env.id}; "
                              f"agents: {', '.join(agents)} (patterns such as player_* may be used)")
    unseated = [a for a in agents if not any(fnmatch(a, p) for p in cfg.seats)]
    if unseated:
        raise ConfigError(f"{source}: seats: agents {unseated} of {cfg.env.id} have no seat; add them to seats "
                          f"(seats now: {', '.join(cfg.seats)})")
    for name, lc in cfg.policies.items():
        for key, folder in ((f"policies.{name}.policy.init_from", lc.policy.init_from),
                            (f"policies.{name}.reference", lc.reference)):
            if folder is not None and not Path(folder).expanduser().is_dir():
                raise ConfigError(f"{source}: {key} = {folder!r}: checkpoint folder not found{builder_hint(folder)}")
    for pattern, seat in cfg.seats.items():
        specs = [seat.agent] if seat.agent else [o.agent for o in seat.pool or []]
        for i, spec in enumerate(specs):
            if spec not in ("self", "snapshot"):
                key = f"seats.{pattern}.agent" if seat.agent else f"seats.{pattern}.pool[{i}].agent"
                _check_agent(spec, cfg.env.id, source, key)
    for i, spec in enumerate(cfg.eval.opponents):
        _check_agent(spec, cfg.env.id, source, f"eval.opponents[{i}]")


def check_pretrain(cfg: PretrainConfig, source: str = "<config>") -> None:
    """Every world of ``corpus.envs`` is registered."""
    from evoarena.envs import list_envs

    known = list_envs()
    unknown = [e for e in cfg.corpus.envs or [] if e not in known]
    if unknown:
        raise ConfigError(f"{source}: corpus.envs = {cfg.corpus.envs!r}: unknown world(s) {unknown}; "
                          f"known: {', '.join(known)}")


def _check_agent(spec: str, env_id: str, source: str, key: str) -> None:
    from evoarena.agents import make_agent

    try:
        make_agent(spec, env_id)
    except Exception as exc:  # any agent that cannot be built: unknown strategy, bad spec, bad checkpoint
        raise ConfigError(f"{source}: {key} = {spec!r}: {exc}") from None


def check_finetune(cfg: FinetuneConfig, source: str = "<config>") -> None:
    """``task: bc``: the env builds, the expert and every opponent are agents of it, the cloned roles are
    roles of it. (``task: ner`` needs no world: its files are checked by the schema.)"""
    bc = cfg.bc
    if bc is None:
        return
    role_of = check_env(bc.env, source, "bc.env")
    _check_agent(bc.expert, bc.env.id, source, "bc.expert")
    for i, spec in enumerate(bc.opponents):
        _check_agent(spec, bc.env.id, source, f"bc.opponents[{i}]")
    if bc.clone is not None:
        known = sorted(set(role_of.values()))
        bad = [r for r in bc.clone if r not in known]
        if bad or not bc.clone:
            what = f"unknown role(s) {bad}" if bad else "no role given"
            raise ConfigError(f"{source}: bc.clone = {bc.clone!r}: {what}; roles of {bc.env.id}: {', '.join(known)}")


def check_evaluate(cfg: EvaluateConfig, source: str = "<config>") -> None:
    """The env builds and every opponent is an agent of it (self, snapshot and human are not)."""
    check_env(cfg.env, source)
    for key in ("opponents", "unseen"):
        for i, spec in enumerate(getattr(cfg, key)):
            if spec in ("self", "snapshot", "human"):
                raise ConfigError(f"{source}: {key}[{i}] = {spec!r}: give a fixed agent (random | scripted:NAME | "
                                  f"ckpt:PATH)")
            _check_agent(spec, cfg.env.id, source, f"{key}[{i}]")


_CHECKS: dict[type, Callable[[Any, str], None]] = {
    EvaluateConfig: check_evaluate,
    TrainConfig: check_train,
    FinetuneConfig: check_finetune,
    PretrainConfig: check_pretrain,
}


def check_config(cfg: BaseModel, source: str = "<config>") -> BaseModel:
    """Run the check of ``cfg``'s kind (``check_train`` / ``check_finetune`` / ``check_pretrain``); other
    configs get every ``env`` field they have built. Returns ``cfg``; raises :class:`ConfigError`."""
    for kind, check in _CHECKS.items():
        if isinstance(cfg, kind):
            check(cfg, source)
            return cfg
    env = getattr(cfg, "env", None)
    if isinstance(env, EnvConfig):
        check_env(env, source)
    return cfg


def load_checked(path: str | Path, model: type[M], overrides: list[str] | None = None) -> M:
    """:func:`~evoarena.config.load_config` + :func:`check_config`: a config ready to run."""
    cfg = load_config(path, model, overrides)
    check_config(cfg, str(path))
    return cfg
