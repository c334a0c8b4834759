"""Matches (``evoarena.bench.play``): seats filled by agents play a world for N episodes, in lockstep.

``play(env_id, seats, episodes, seed)`` returns every seat's return per episode and the
world's metrics per episode. Episode ``i`` is reset with seed ``seed + i``, so two matches
with the same seed see the same contexts (common random numbers). Each agent object gets one
batched ``act_batch`` call per step across all env copies; agents with a single legal action
are never asked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evoarena.agents.specs import Agent, make_agent
from evoarena.envs import forced_actions, make


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t confidence interval (0 for fewer than 2 values)."""
    from scipy import stats as sps

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, 0.0
    sem = float(x.std(ddof=1)) / math.sqrt(x.size)
    return mean, float(sps.t.ppf(0.5 + level / 2, df=x.size - 1)) * sem


@dataclass
class MatchResult:
    """Returns per seat per episode, metrics per episode, and the seats' names."""

    env_id: str
    agents: list[str]
    seat_names: dict[str, str]
    returns: dict[str, np.ndarray]
    metrics: list[dict[str, float]]
    transcripts: list[str] = field(default_factory=list)

    def mean_metrics(self) -> dict[str, float]:
        keys = sorted({k for m in self.metrics for k in m})
        return {k: float(np.mean([m[k] for m in self.metrics if k in m])) for k in keys}


def resolve_seats(env_id: str, agents: Sequence[str], seats: Sequence[Any] | Mapping[str, Any],
                  seed: int) -> dict[str, Agent]:
    """Map every agent name of the world to an agent object (specs are built with ``make_agent``)."""
    if isinstance(seats, Mapping):
        missing = [a for a in agents if a not in seats]
        unknown = [a for a in seats if a not in agents]
        if missing or unknown:
            raise ValueError(f"{env_id}: seats must name every agent {list(agents)}; "
                             f"missing {missing}, unknown {unknown}")
        chosen = [seats[a] for a in agents]
    else:
        if len(seats) != len(agents):
            raise ValueError(f"{env_id} has {len(agents)} agents {list(agents)}; got {len(seats)} seat(s): "
                             f"{[getattr(s, 'name', s) for s in seats]}")
        chosen = list(seats)
    built: dict[str, Agent] = {}
    for i, (name, s) in enumerate(zip(agents, chosen)):
        built[name] = make_agent(s, env_id, seed=seed + 7919 * (i + 1)) if isinstance(s, str) else s
    return built


def decide(slots: Sequence[tuple[Any, int, dict, dict]], seat_agents: Mapping[str, Agent]) -> list[dict[str, int]]:
    """Every running episode's joint action: forced moves filled in, each agent asked once for all its seats'
    decisions (one ``act_batch`` over every episode in ``slots``)."""
    actions: list[dict[str, int]] = [{} for _ in slots]
    asks: dict[int, list[tuple[int, str, dict]]] = {}
    for k, (env, _, obs, _) in enumerate(slots):
        actions[k], choosing = forced_actions(env.agents, obs)
        for a in choosing:
            o = obs[a]
            agent = seat_agents[a]
            if getattr(agent, "needs_action_names", False):
                o = {**o, "action_names": env.action_names(a)}
            asks.setdefault(id(agent), []).append((k, a, o))
    for reqs in asks.values():
        agent = seat_agents[reqs[0][1]]
        chosen = agent.act_batch([o for _, _, o in reqs])
        for (k, a, _), act in zip(reqs, chosen):
            actions[k][a] = int(act)
    return actions


def play(env_id: str, seats: Sequence[Any] | Mapping[str, Any], episodes: int, seed: int = 0,
         env_kwargs: dict[str, Any] | None = None, num_envs: int = 64, record: int = 0) -> MatchResult:
    """Play ``episodes`` episodes of ``env_id`` with ``seats`` (specs or agent objects, one per agent).

    ``record`` > 0 keeps the transcripts of the first ``record`` episodes.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env_kwargs = dict(env_kwargs or {})
    n_par = max(1, min(episodes, num_envs))
    envs = [make(env_id, render_mode="ansi" if record else None, **env_kwargs) for _ in range(n_par)]
    names = list(envs[0].possible_agents)
    seat_agents = resolve_seats(env_id, names, seats, seed)
    for i, ag in enumerate({id(a): a for a in seat_agents.values()}.values()):
        ag.reset(seed + 104729 * (i + 1))

    returns = {a: np.zeros(episodes) for a in names}
    metrics: list[dict[str, float] | None] = [None] * episodes
    transcripts: dict[int, str] = {}
    slots: list[tuple[Any, int, dict, dict]] = []  # env, episode, obs, running returns
    next_ep = 0

    def start(env: Any) -> None:
        nonlocal next_ep
        obs, _ = env.reset(seed=seed + next_ep)
        slots.append((env, next_ep, obs, dict.fromkeys(names, 0.0)))
        next_ep += 1

    for env in envs:
        start(env)
    while slots:
        actions = decide(slots, seat_agents)
        still: list[tuple[Any, int, dict, dict]] = []
        for k, (env, ep, _, ret) in enumerate(slots):
            obs, rew, _, _, _ = env.step(actions[k])
            for a, r in rew.items():
                ret[a] += float(r)
            if env.agents:
                still.append((env, ep, obs, ret))
                continue
            for a in names:
                returns[a][ep] = ret[a]
            metrics[ep] = env.metrics()
            if ep < record:
                transcripts[ep] = env.transcript()
        slots[:] = still
        for env in [s for s in envs if not any(s is t[0] for t in slots)]:
            if next_ep < episodes:
                start(env)
    seat_names = {a: getattr(seat_agents[a], "name", str(seat_agents[a])) for a in names}
    return MatchResult(env_id, names, seat_names, returns, [m or {} for m in metrics],
                       [transcripts[i] for i in sorted(transcripts)])
