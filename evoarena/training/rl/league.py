"""The self-play league of the train stage (a ``league:`` block; AlphaStar's league, small).

Members: the main learner(s) of the stage; ``exploiters`` live exploiters per main, learners that play only
against their main and are reset to the main's starting weights every ``exploiter_reset_every`` updates; frozen
copies of mains and exploiters added every ``add_every`` updates (at most ``max_frozen``, oldest dropped); and the
scripted strategies of the seat's ``pool`` kept as anchors. Each episode a main's opponent seat is drawn: a live
exploiter with probability ``exploiter_share``, otherwise an anchor or frozen member by prioritised fictitious
self-play (:func:`pfsp_weights`: the opponents the main does worst against are drawn most, never below a uniform
floor). Results are kept per opponent over the last ``window`` episodes and logged under ``league/``.

Frozen members and the exploiters' starting weights are snapshots of the training checkpoint (``league_NAME``
and ``league_start``); the results windows and the frozen members' random states are in the trainer state, so a
resumed run draws the same opponents as the uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evoarena.agents import spec_tag
from evoarena.agents.learned import PolicyAgent
from evoarena.config import LeagueConfig
from evoarena.training.rl.learners import frozen_copy
from evoarena.training.rl.rollout import Assignment, EpisodeRecord
from evoarena.training.rl.seats import EXPLOITER_START, START


def pfsp_weights(scores: Sequence[float | None], power: float = 1.0, floor: float = 0.2) -> np.ndarray:
    """Probabilities of drawing each opponent from the learner's normalised result against it (``scores`` in
    [0, 1], 1 = its best result; None = not played yet, drawn as the hardest). Weight ``(1 - s) ** power``
    (AlphaStar's "hard" weighting), mixed with the uniform distribution: ``(1 - floor) * w / sum(w) + floor / n``;
    uniform when every weight is 0 or ``power`` is 0."""
    n = len(scores)
    if n == 0:
        return np.zeros(0)
    s = np.array([0.0 if x is None else min(max(float(x), 0.0), 1.0) for x in scores])
    w = (1.0 - s) ** power
    total = float(w.sum())
    base = w / total if total > 0 else np.full(n, 1.0 / n)
    return (1.0 - floor) * base + floor / n


def normalised_scores(means: Sequence[float | None]) -> list[float | None]:
    """Mean returns against each opponent mapped to [0, 1] by the range over the opponents played (a world's
    return scale does not matter); all equal -> 0.5 each; None stays None."""
    known = [m for m in means if m is not None]
    if not known:
        return list(means)
    lo, hi = min(known), max(known)
    return [None if m is None else (0.5 if hi - lo < 1e-12 else (m - lo) / (hi - lo)) for m in means]


def exploiter_names(mains: Sequence[str], per_main: int) -> dict[str, str]:
    """exploiter name -> its main (``exploiter_MAIN_I``)."""
    return {f"exploiter_{m}_{i}": m for m in mains for i in range(per_main)}


class League:
    """Opponents for the mains' pool seats; members, results and PFSP weights (see the module docstring)."""

    def __init__(self, lc: LeagueConfig, mains: Sequence[str], anchors: Sequence[str],
                 snapshots: dict[str, list[tuple[int, Any]]], seed: int) -> None:
        self.lc, self.mains, self.anchors = lc, list(mains), list(anchors)
        self.exploiters = exploiter_names(self.mains, lc.exploiters)
        self.snapshots = snapshots  #: the trainer's snapshot pools: frozen members are ``league_NAME`` entries
        self.seed = seed
        self.results: dict[str, list[float]] = {}  #: opponent label -> the main's recent returns against it
        self.frozen_agents: dict[str, PolicyAgent] = {}

    # ------------------------------------------------------------------ members
    def frozen(self) -> list[tuple[str, int, Any]]:
        """(member name, update, policy) of every frozen member, oldest first."""
        out = [(key[len("league_"):], u, p) for key, pool in self.snapshots.items()
               if key.startswith("league_") and key != START for u, p in pool]
        return sorted(out, key=lambda x: (x[1], x[0]))

    def add_frozen(self, update: int, learners: dict[str, Any]) -> None:
        """Frozen copies of every main and exploiter join the league; the oldest beyond ``max_frozen`` leave."""
        for name in [*self.mains, *self.exploiters]:
            self.snapshots.setdefault(f"league_{name}", []).append((update, frozen_copy(learners[name])))
        members = self.frozen()
        for name, u, _ in members[: max(0, len(members) - self.lc.max_frozen)]:
            pool = self.snapshots[f"league_{name}"]
            pool[:] = [(v, p) for v, p in pool if v != u]
        live = {self.label_of_frozen(n, u) for n, u, _ in self.frozen()}
        self.frozen_agents = {k: a for k, a in self.frozen_agents.items() if k in live}

    @staticmethod
    def label_of_frozen(name: str, update: int) -> str:
        return f"league:{name}@{update}"

    def start_weights(self, main: str) -> Any:
        return next(p for u, p in self.snapshots[START] if u == self.mains.index(main))

    def reset_weights(self, exploiter: str) -> Any:
        """What a live exploiter is reset to: its own fresh weights (``league.exploiter``) or its main's start."""
        if EXPLOITER_START in self.snapshots:
            index = list(self.exploiters).index(exploiter)
            return next(p for u, p in self.snapshots[EXPLOITER_START] if u == index)
        return self.start_weights(self.exploiters[exploiter])

    # ------------------------------------------------------------------ drawing opponents
    def candidates(self) -> list[str]:
        """The labels PFSP draws from: anchors, then frozen members."""
        return [*self.anchors, *(self.label_of_frozen(n, u) for n, u, _ in self.frozen())]

    def weights(self) -> tuple[list[str], np.ndarray]:
        labels = self.candidates()
        means = [float(np.mean(self.results[lb])) if self.results.get(lb) else None for lb in labels]
        return labels, pfsp_weights(normalised_scores(means), self.lc.pfsp_power, self.lc.pfsp_floor)

    def draw(self, main: str, rng: np.random.Generator, make_agent: Any) -> Assignment:
        """Who fills a pool seat of ``main`` for one episode."""
        mine = [e for e, m in self.exploiters.items() if m == main]
        if mine and rng.random() < self.lc.exploiter_share:
            return ("learner", mine[int(rng.integers(len(mine)))])
        labels, p = self.weights()
        label = labels[int(rng.choice(len(labels), p=p))]
        if label in self.anchors:
            return ("agent", make_agent(label))
        return ("agent", self.frozen_agent(label))

    def frozen_agent(self, label: str) -> PolicyAgent:
        if label not in self.frozen_agents:
            name, update = label[len("league:"):].rsplit("@", 1)
            policy = next(p for u, p in self.snapshots[f"league_{name}"] if u == int(update))
            self.frozen_agents[label] = PolicyAgent(policy, greedy=False, seed=self.seed + int(update), name=label)
        return self.frozen_agents[label]

    # ------------------------------------------------------------------ results
    def record(self, episodes: Sequence[EpisodeRecord]) -> None:
        """Each main's return against the opponent of each episode (only the mains' episodes against pool
        members; the live exploiters' results are their own learning curves)."""
        for ep in episodes:
            for main in self.mains:
                seats = [a for a, s in ep.seats.items() if s == f"learner:{main}"]
                if not seats:
                    continue
                ret = float(np.mean([ep.returns[a] for a in seats]))
                for a, s in ep.seats.items():
                    if a not in seats and not s.startswith("learner:"):
                        window = self.results.setdefault(s, [])
                        window.append(ret)
                        del window[: -self.lc.window]

    def log(self, writer: Any, update: int) -> None:
        """``league/<opponent>/return`` (the main's mean over the window) and ``league/<opponent>/weight``."""
        labels, p = self.weights()
        for label, w in zip(labels, p):
            tag = spec_tag(label)
            writer.add_scalar(f"league/{tag}/weight", float(w), update)
            if self.results.get(label):
                writer.add_scalar(f"league/{tag}/return", float(np.mean(self.results[label])), update)
        writer.add_scalar("league/frozen_members", float(len(self.frozen())), update)

    def describe(self) -> dict[str, Any]:
        """What the report needs: the mains, exploiters, anchors and frozen members (their snapshot folders are
        ``checkpoint/snapshots/league_NAME/UPDATE``)."""
        return {"mains": self.mains, "exploiters": list(self.exploiters), "anchors": self.anchors,
                "frozen": [[name, update] for name, update, _ in self.frozen()]}

    # ------------------------------------------------------------------ checkpoint
    def state(self) -> dict[str, Any]:
        from evoarena.training.rl.seats import agent_rng_state

        return {"results": self.results,
                "frozen_agents": [[k, agent_rng_state(a)] for k, a in self.frozen_agents.items()]}

    def load_state(self, state: dict[str, Any]) -> None:
        from evoarena.training.rl.seats import set_agent_rng_state

        self.results = {k: list(v) for k, v in state.get("results", {}).items()}
        for label, rng_state in state.get("frozen_agents", []):
            set_agent_rng_state(self.frozen_agent(label), rng_state)
