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
    LEARNER_ENTRIES,
    BCFinetuneConfig,
    ConfigError,
    EnvConfig,
    EvaluateConfig,
    NERFinetuneConfig,
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
    from evoarena.envs import UnknownEnvError, describe

    try:
        return dict(describe(env.id, env.kwargs).roles)
    except UnknownEnvError as exc:
        raise ConfigError(f"{source}: {_join(key, 'id')} = {env.id!r}: {exc}") from None
    except (ValueError, TypeError) as exc:  # EnvArgumentError, or a keyword the world does not take
        raise ConfigError(f"{source}: {_join(key, 'kwargs')} = {env.kwargs!r}: {exc}") from None


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
            if folder is not None:
                check_init_from(folder, cfg.env.id, source, key, encoder_ok=key.endswith("init_from"))
    for pattern, seat in cfg.seats.items():
        specs = [seat.agent] if seat.agent else [o.agent for o in seat.pool or []]
        for i, spec in enumerate(specs):
            if seat.agent or spec not in LEARNER_ENTRIES:  # self / snapshot / start name a learner in a pool only
                key = f"seats.{pattern}.agent" if seat.agent else f"seats.{pattern}.pool[{i}].agent"
                _check_agent(spec, cfg.env.id, source, key)
    for i, spec in enumerate(cfg.eval.opponents):
        _check_agent(spec, cfg.env.id, source, f"eval.opponents[{i}]")
    check_memory(cfg.env, cfg.episodes_per_update, source, "episodes_per_update")


def check_init_from(folder: str, env_id: str | None, source: str, key: str, encoder_ok: bool = True) -> None:
    """``folder`` is an evoarena checkpoint of ``env_id`` with a readable policy.json, or (``encoder_ok``)
    a Hugging Face model folder (an encoder for any world)."""
    from evoarena.policies.io import POLICY_JSON, CheckpointError, read_policy_json

    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{source}: {key} = {folder!r}: checkpoint folder not found{builder_hint(folder)}")
    if (path / POLICY_JSON).is_file():
        try:
            meta = read_policy_json(path)
        except CheckpointError as exc:
            raise ConfigError(f"{source}: {key} = {folder!r}: {exc}") from None
        if env_id is not None and meta["env_id"] != env_id:
            raise ConfigError(f"{source}: {key} = {folder!r}: a policy for {meta['env_id']}, this config plays "
                              f"{env_id}")
        return
    if not encoder_ok or not (path / "config.json").is_file():
        what = "an evoarena checkpoint (policy.json)" + (" or a Hugging Face model folder (config.json)"
                                                         if encoder_ok else "")
        raise ConfigError(f"{source}: {key} = {folder!r}: not {what}")


MEMORY_FRACTION = 0.8  #: a config whose estimated memory exceeds this share of the available memory is refused
MAX_PROBE_STEPS = 20_000  #: an episode of random play must end within this many steps (rollouts keep whole episodes)
BYTES_PER_DECISION_OVERHEAD = 1500  #: python objects of one stored decision (obs dict, arrays, floats): a rough bound


def available_memory() -> int:
    """Bytes of memory available to new allocations (``MemAvailable``; total physical memory elsewhere)."""
    import os

    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def decision_footprint(env: EnvConfig, episodes: int = 3, source: str = "<config>",
                       key: str = "env") -> tuple[float, float]:
    """(decisions per episode, bytes per stored decision) of world ``env``, measured in random play; an
    episode that does not end within ``MAX_PROBE_STEPS`` steps is an error (it could not be stored)."""
    import numpy as np

    from evoarena.envs import make

    world = make(env.id, **env.kwargs)
    rng = np.random.default_rng(0)
    decisions, size = 0, 0
    try:
        for ep in range(episodes):
            obs, _ = world.reset(seed=ep)
            for _ in range(MAX_PROBE_STEPS):
                if not world.agents:
                    break
                for agent in world.agents:
                    o = obs[agent]
                    if int(o["action_mask"].sum()) > 1:
                        decisions += 1
                        size += len(o["text"]) + o["features"].nbytes + o["action_mask"].nbytes
                obs, *_ = world.step({a: int(rng.choice(np.flatnonzero(obs[a]["action_mask"]))) for a in world.agents})
            if world.agents:
                raise ConfigError(f"{source}: {key}.kwargs = {env.kwargs!r}: an episode of {env.id} did not end "
                                  f"within {MAX_PROBE_STEPS:,} steps of random play; rollouts keep whole episodes in "
                                  "memory, so give the world shorter episodes")
    finally:
        world.close()
    per_episode = max(decisions / episodes, 1.0)
    return per_episode, size / max(decisions, 1) + BYTES_PER_DECISION_OVERHEAD


def check_memory(env: EnvConfig, episodes: int, source: str, key: str, env_key: str = "env") -> None:
    """Refuse ``episodes`` stored episodes of ``env`` at once when they cannot fit in memory (with the estimate)."""
    per_episode, per_decision = decision_footprint(env, source=source, key=env_key)
    need = episodes * per_episode * per_decision
    have = available_memory()
    if need > MEMORY_FRACTION * have:
        raise ConfigError(f"{source}: {key} = {episodes}: about {need / 2**30:.1f} GiB would be held at once "
                          f"({per_episode:.0f} decisions per episode x {per_decision:.0f} bytes), but only "
                          f"{have / 2**30:.1f} GiB is available; lower {key} to at most "
                          f"{int(MEMORY_FRACTION * have / (per_episode * per_decision)):,}")


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


def check_ner(cfg: NERFinetuneConfig, source: str = "<config>") -> None:
    """``task: ner`` needs no world (its files are checked by the schema): ``init_from`` is an encoder."""
    if cfg.ner.init_from is not None:
        check_init_from(cfg.ner.init_from, None, source, "ner.init_from")


def check_bc(cfg: BCFinetuneConfig, source: str = "<config>") -> None:
    """``task: bc``: the env builds, the expert and every opponent are agents of it, the cloned roles are
    roles of it."""
    bc = cfg.bc
    role_of = check_env(bc.env, source, "bc.env")
    if bc.policy.init_from is not None:
        check_init_from(bc.policy.init_from, bc.env.id, source, "bc.policy.init_from")
    check_memory(bc.env, bc.train_episodes + bc.heldout_episodes, source, "bc.train_episodes", "bc.env")
    _check_agent(bc.expert, bc.env.id, source, "bc.expert")
    for i, spec in enumerate(bc.opponents):
        _check_agent(spec, bc.env.id, source, f"bc.opponents[{i}]")
    if bc.clone is not None:
        known = sorted(set(role_of.values()))
        bad = [r for r in bc.clone if r not in known]
        if bad or not bc.clone:
            what = f"unknown role(s) {bad}" if bad else "no role given"
            raise ConfigError(f"{source}: bc.clone = {bc.clone!r}: {what}; roles of {bc.env.id}: {', '.join(known)}")
    if bc.aux_features:
        check_aux_features(bc.aux_features, world_feature_names(bc.env), source, bc.env.id)


def world_feature_names(env: EnvConfig) -> list[str]:
    """The names of ``env``'s numeric observation features (empty when the world names none)."""
    from evoarena.envs import make

    world = make(env.id, **env.kwargs)
    try:
        return list(getattr(world, "feature_names", []))
    finally:
        world.close()


def check_aux_features(names: list[str], known: list[str], source: str, env_id: str) -> None:
    """Every auxiliary target is one of the world's feature names, each named once."""
    bad = [n for n in names if n not in known]
    if bad or len(set(names)) != len(names):
        what = f"unknown feature(s) {bad}" if bad else "a feature named twice"
        allowed = ", ".join(known) if known else f"none: {env_id} names no features"
        raise ConfigError(f"{source}: bc.aux_features = {names!r}: {what}; features of {env_id}: {allowed}")


def check_evaluate(cfg: EvaluateConfig, source: str = "<config>") -> None:
    """The env builds and every opponent is an agent of it (self, snapshot and human are not)."""
    check_env(cfg.env, source)
    for key in ("opponents", "unseen"):
        for i, spec in enumerate(getattr(cfg, key)):
            if spec in (*LEARNER_ENTRIES, "human"):
                raise ConfigError(f"{source}: {key}[{i}] = {spec!r}: give a fixed agent (random | scripted:NAME | "
                                  f"ckpt:PATH)")
            _check_agent(spec, cfg.env.id, source, f"{key}[{i}]")


_CHECKS: dict[type, Callable[[Any, str], None]] = {
    EvaluateConfig: check_evaluate,
    TrainConfig: check_train,
    NERFinetuneConfig: check_ner,
    BCFinetuneConfig: check_bc,
    PretrainConfig: check_pretrain,
}


def check_config(cfg: BaseModel, source: str = "<config>") -> BaseModel:
    """Run the check of ``cfg``'s kind (``check_train`` / ``check_ner`` / ``check_bc`` / ``check_pretrain``); other
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
