"""Seat planning for multi-agent PPO: who fills every seat of a world for one episode.

Seats map agents (by name or pattern) to learner policies, fixed agents, or weighted opponent pools (scripted
strategies, ``self``, ``snapshot``: frozen copies of a learner taken every ``snapshot_every`` updates --
fictitious self-play; ``start``: the learner frozen as it started, e.g. its clone). :class:`SeatPlanner` draws
an assignment per episode; its fixed and snapshot agents' random states are part of a training checkpoint. Both
PPO backends use it.
"""

from __future__ import annotations

from collections import defaultdict
from fnmatch import fnmatch
from typing import Any

import numpy as np
import torch

from evoarena.agents import make_agent
from evoarena.agents.learned import PolicyAgent
from evoarena.config import SeatConfig, TrainConfig
from evoarena.training.rl.rollout import Assignment

#: snapshot key of the learners' starting weights (the league's exploiters reset to them; the ``start`` partner);
#: its folder name in checkpoints predates the ``start`` partner
START = "league_start"
#: snapshot key of the league exploiters' fresh weights when they are learners of their own (``league.exploiter``)
EXPLOITER_START = "exploiter_start"
START_AGENT = "start"  #: the pool entry (and the agent's name in episode records) of a learner's starting weights


def seat_of(agent: str, seats: dict[str, SeatConfig]) -> SeatConfig:
    """The seat config of ``agent``: an exact name wins over a pattern; patterns in config order."""
    if agent in seats:
        return seats[agent]
    for pattern, seat in seats.items():
        if fnmatch(agent, pattern):
            return seat
    raise KeyError(f"agent {agent!r} has no seat")


def agent_rng_state(agent: Any) -> Any:
    """The random state of a fixed agent as JSON (numpy ``rng`` or torch ``generator``), or None."""
    if isinstance(getattr(agent, "rng", None), np.random.Generator):
        return {"numpy": agent.rng.bit_generator.state}
    if isinstance(getattr(agent, "generator", None), torch.Generator):
        return {"torch": agent.generator.get_state().tolist()}
    return None


def set_agent_rng_state(agent: Any, state: Any) -> None:
    """Restore what :func:`agent_rng_state` returned."""
    if state and "numpy" in state:
        agent.rng.bit_generator.state = state["numpy"]
    elif state and "torch" in state:
        agent.generator.set_state(torch.tensor(state["torch"], dtype=torch.uint8))


class SeatPlanner:
    """Draws who fills every seat for one episode (a swap happens only between episodes). Its fixed and
    snapshot agents' random states are part of a checkpoint (:meth:`state`), so a resumed run plays on as
    the uninterrupted one would."""

    def __init__(self, cfg: TrainConfig, agents: list[str], roles: dict[str, str], learners: dict[str, Any],
                 snapshots: dict[str, list[tuple[int, Any]]], seed: int) -> None:
        self.cfg, self.agents, self.roles = cfg, agents, roles
        self.learners, self.snapshots = learners, snapshots
        self.fixed: dict[str, Any] = {}
        self.snapshot_agents: dict[tuple[str, int], PolicyAgent] = {}
        self.seed = seed
        self.league: Any = None  #: a :class:`evoarena.training.rl.league.League` draws the pool seats when set

    def _home_learner(self, agent: str) -> str:
        """The learner a ``self``/``snapshot`` entry in ``agent``'s pool refers to (same role first)."""
        for other in self.agents:
            s = seat_of(other, self.cfg.seats)
            if s.policy and self.roles[other] == self.roles[agent]:
                return s.policy
        return next(s.policy for s in (seat_of(a, self.cfg.seats) for a in self.agents) if s.policy)

    def _agent(self, spec: str) -> Any:
        """The fixed agent of ``spec``; ``start:LEARNER``: that learner's starting weights, played greedily."""
        if spec not in self.fixed:
            seed = self.seed + len(self.fixed)
            if spec.startswith(f"{START_AGENT}:"):
                index = list(self.cfg.policies).index(spec.split(":", 1)[1])
                policy = next(p for u, p in self.snapshots[START] if u == index)
                self.fixed[spec] = PolicyAgent(policy, greedy=True, seed=seed, name=START_AGENT)
            else:
                self.fixed[spec] = make_agent(spec, self.cfg.env.id, seed=seed)
        return self.fixed[spec]

    def _fixed_for(self, home: str):
        """The fixed agent of a pool spec drawn for learner ``home`` (``start`` is its own start)."""
        return lambda spec: self._agent(f"{START_AGENT}:{home}" if spec == START_AGENT else spec)

    def _snapshot_agent(self, learner: str, rng: np.random.Generator) -> Assignment:
        pool = self.snapshots.get(learner, [])
        if not pool:
            return ("learner", learner)
        update, policy = pool[int(rng.integers(len(pool)))]
        key = (learner, update)
        if key not in self.snapshot_agents:
            self.snapshot_agents = {k: v for k, v in self.snapshot_agents.items() if any(
                u == k[1] for u, _ in self.snapshots.get(k[0], []))}
            self.snapshot_agents[key] = PolicyAgent(policy, greedy=False, seed=self.seed + update,
                                                    name=f"snapshot:{learner}@{update}")
        return ("agent", self.snapshot_agents[key])

    def state(self) -> dict[str, Any]:
        return {"fixed": [[spec, agent_rng_state(a)] for spec, a in self.fixed.items()],
                "snapshots": [[learner, update, agent_rng_state(a)]
                              for (learner, update), a in self.snapshot_agents.items()]}

    def load_state(self, state: dict[str, Any]) -> None:
        for spec, rng_state in state.get("fixed", []):
            set_agent_rng_state(self._agent(spec), rng_state)
        for learner, update, rng_state in state.get("snapshots", []):
            policy = next((p for u, p in self.snapshots.get(learner, []) if u == update), None)
            if policy is not None:
                self.snapshot_agents[(learner, update)] = agent = PolicyAgent(
                    policy, greedy=False, seed=self.seed + update, name=f"snapshot:{learner}@{update}")
                set_agent_rng_state(agent, rng_state)

    def resolve(self, agent: str, seat: SeatConfig, rng: np.random.Generator) -> Assignment:
        if seat.policy:
            return ("learner", seat.policy)
        if seat.agent:
            return ("agent", self._agent(seat.agent))
        if self.league is not None:
            home = self._home_learner(agent)
            return self.league.draw(home, rng, self._fixed_for(home))
        entries = seat.pool or []
        w = np.array([e.weight for e in entries], dtype=np.float64)
        entry = entries[int(rng.choice(len(entries), p=w / w.sum()))]
        if entry.agent == "self":
            return ("learner", self._home_learner(agent))
        if entry.agent == "snapshot":
            return self._snapshot_agent(self._home_learner(agent), rng)
        return ("agent", self._fixed_for(self._home_learner(agent))(entry.agent))

    def __call__(self, rng: np.random.Generator) -> dict[str, Assignment]:
        configs = {a: seat_of(a, self.cfg.seats) for a in self.agents}
        if self.cfg.shuffle_seats:
            by_role: dict[str, list[str]] = defaultdict(list)
            for a in self.agents:
                by_role[self.roles[a]].append(a)
            for members in by_role.values():
                perm = rng.permutation(len(members))
                shuffled = [configs[members[i]] for i in perm]
                for a, s in zip(members, shuffled):
                    configs[a] = s
        return {a: self.resolve(a, configs[a], rng) for a in self.agents}
