"""Demonstrations for behaviour cloning: fixed experts play a world against opponents, and the expert seats'
decisions with more than one legal action become ``(text, action mask, action, return)`` examples, one
dataset (:class:`Demos`) per cloned role, identical examples stored once with a count; and the in-game
evaluation of clones next to their expert on the same seeds (:func:`evaluate_clones`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from evoarena.agents import make_agent
from evoarena.agents.learned import PolicyAgent
from evoarena.agents.match import play
from evoarena.envs import describe, forced_actions, make


@dataclass
class Demos:
    """Demonstrations of one role: distinct ``(text, mask, action[, action names])`` with their counts and
    mean discounted returns; ``decisions`` counts them with repeats."""

    role: str
    texts: list[str]
    masks: np.ndarray
    actions: np.ndarray
    counts: np.ndarray
    returns: np.ndarray
    names: list[list[str]] | None
    decisions: int
    episodes: int
    aux: np.ndarray | None = None  #: [N, k] the world's features named by ``bc.aux_features``, per example

    def __len__(self) -> int:
        return len(self.texts)

    def obs(self, idx: Any) -> list[dict[str, Any]]:
        """Observation dicts (``text``, ``action_mask``, ``action_names``) of examples ``idx``."""
        out = []
        for i in idx:
            o: dict[str, Any] = {"text": self.texts[i], "action_mask": self.masks[i]}
            if self.names is not None:
                o["action_names"] = self.names[i]
            out.append(o)
        return out


class _DemoBuilder:
    def __init__(self, role: str, need_names: bool, aux_columns: list[int]) -> None:
        self.role = role
        self.need_names = need_names
        self.aux_columns = aux_columns
        self.aux: list[np.ndarray] = []
        self.index: dict[tuple, int] = {}
        self.texts: list[str] = []
        self.masks: list[np.ndarray] = []
        self.actions: list[int] = []
        self.names: list[list[str]] = []
        self.counts: list[int] = []
        self.ret_sums: list[float] = []
        self.decisions = 0

    def add(self, text: str, mask: np.ndarray, action: int, names: list[str] | None, ret: float,
            features: np.ndarray | None = None) -> None:
        key = (text, action, mask.tobytes(), tuple(names) if names is not None else None)
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.texts)
            self.texts.append(text)
            if self.aux_columns:  # the facts of the example's first occurrence (the text shows them)
                self.aux.append(np.asarray(features, dtype=np.float32)[self.aux_columns])
            self.masks.append(np.asarray(mask, dtype=np.int8).copy())
            self.actions.append(int(action))
            if self.need_names:
                self.names.append(list(names or []))
            self.counts.append(0)
            self.ret_sums.append(0.0)
        self.counts[i] += 1
        self.ret_sums[i] += ret
        self.decisions += 1

    def build(self, episodes: int) -> Demos:
        counts = np.asarray(self.counts, dtype=np.float64)
        return Demos(self.role, self.texts, np.stack(self.masks) if self.masks else np.zeros((0, 0), np.int8),
                     np.asarray(self.actions, dtype=np.int64), counts.astype(np.float32),
                     (np.asarray(self.ret_sums) / np.maximum(counts, 1)).astype(np.float32),
                     self.names if self.need_names else None, self.decisions, episodes,
                     np.stack(self.aux) if self.aux else None)


def cloned_roles(bc: Any) -> list[str]:
    """The roles ``bc`` clones: ``bc.clone``, else every role of the world (the expert plays them all)."""
    info = describe(bc.env.id, bc.env.kwargs)
    return list(bc.clone) if bc.clone else list(dict.fromkeys(info.roles[a] for a in info.agents))


def expert_seating(agents: list[str], n_opponents: int, episode: int) -> tuple[str | None, int]:
    """``(expert seat, opponent index)`` of demonstration ``episode``: the opponent cycles fastest, then the
    expert's seat over the agents; ``(None, -1)`` without opponents (the expert fills every seat)."""
    if n_opponents == 0:
        return None, -1
    return agents[(episode // n_opponents) % len(agents)], episode % n_opponents


def generate_demos(bc: Any, episodes: int, seed0: int, roles: list[str], need_names: bool,
                   update: Any = None) -> dict[str, Demos]:
    """Play ``episodes`` episodes (seeds ``seed0 + i``) and collect the expert seats' decisions per role.

    A decision's return is ``R_k + gamma * G_{k+1}`` over that agent's decisions, ``R_k`` being the rewards
    it receives from decision ``k`` up to its next decision (as PPO's per-agent streams count them).
    """
    env = make(bc.env.id, **bc.env.kwargs)
    agents = list(env.possible_agents)
    role_of = {a: env.role(a) for a in agents}
    expert = make_agent(bc.expert, bc.env.id, seed=seed0 + 1)
    opponents = [make_agent(s, bc.env.id, seed=seed0 + 2 + i) for i, s in enumerate(bc.opponents)]
    columns = [list(getattr(env, "feature_names", [])).index(n) for n in getattr(bc, "aux_features", [])]
    builders = {r: _DemoBuilder(r, need_names, columns) for r in roles}
    gamma = bc.gamma
    try:
        for ep in range(episodes):
            ex_seat, oi = expert_seating(agents, len(opponents), ep)
            seats = {a: expert if ex_seat is None or a == ex_seat else opponents[oi] for a in agents}
            recorded = {a for a in agents if seats[a] is expert and role_of[a] in builders}
            obs, _ = env.reset(seed=seed0 + ep)
            traj: dict[str, list[list[Any]]] = {a: [] for a in recorded}  # [text, mask, action, names, r, feats]
            while env.agents:
                actions, choosing = forced_actions(env.agents, obs)
                for a in choosing:
                    o = obs[a]
                    act = int(seats[a].act(o))
                    actions[a] = act
                    if a in recorded:
                        names = env.action_names(a) if need_names else None
                        traj[a].append([o["text"], o["action_mask"], act, names, 0.0, o.get("features")])
                obs, rewards, _, _, _ = env.step(actions)
                for a, r in rewards.items():
                    if a in traj and traj[a]:
                        traj[a][-1][4] += float(r)
            for a, steps in traj.items():
                g = 0.0
                for text, mask, act, names, r, feats in reversed(steps):
                    g = r + gamma * g
                    builders[role_of[a]].add(text, mask, act, names, g, feats)
            if update is not None:
                update(1)
    finally:
        env.close()
    return {r: b.build(episodes) for r, b in builders.items()}


def _clone_agent(policy: Any, role: str) -> Any:
    return PolicyAgent(policy, greedy=True, seed=0, name=f"bc:{role}")


def evaluate_clones(bc: Any, policies: dict[str, Any], episodes: int | None = None,
                    seed: int | None = None) -> list[dict[str, Any]]:
    """In-game evaluation on the fixed evaluation seeds: clone vs expert in the same seats and contexts.

    With opponents: for every opponent and every seat of a cloned role, the greedy clone and then the
    expert play ``episodes`` games in that seat against the opponent. Without: each cloned role's seats
    are taken by its clone (the others by the expert), and all clones together when several roles are
    cloned; the expert fills every seat for the reference. ``score`` is the mean return of the seats in
    question; the world's metrics are averaged over the games.
    """
    episodes = episodes or bc.eval_episodes
    seed = bc.eval_seed if seed is None else seed
    info = describe(bc.env.id, bc.env.kwargs)
    agents, role_of = list(info.agents), info.roles
    clones = {r: _clone_agent(p, r) for r, p in policies.items()}
    rows = []

    def match(seats: dict[str, Any], scored: list[str]) -> dict[str, Any]:
        res = play(bc.env.id, seats, episodes=episodes, seed=seed, env_kwargs=bc.env.kwargs)
        score = float(np.mean([res.returns[a].mean() for a in scored]))
        return {"score": score, "metrics": res.mean_metrics(),
                "returns": {a: float(res.returns[a].mean()) for a in scored}}

    if bc.opponents:
        for opp in bc.opponents:
            for seat in agents:
                if role_of[seat] not in clones:
                    continue
                c = match({a: clones[role_of[seat]] if a == seat else opp for a in agents}, [seat])
                e = match({a: bc.expert if a == seat else opp for a in agents}, [seat])
                rows.append({"opponent": opp, "seat": seat, "games": episodes, "clone_score": c["score"],
                             "expert_score": e["score"], "clone_metrics": c["metrics"],
                             "expert_metrics": e["metrics"]})
        return rows
    configs = [(f"clone {r}", [r]) for r in clones]
    if len(clones) > 1:
        configs.append(("clone " + " + ".join(clones), list(clones)))
    expert = match(dict.fromkeys(agents, bc.expert), agents)
    for label, rs in configs:
        seats = {a: clones[role_of[a]] if role_of[a] in rs else bc.expert for a in agents}
        scored = [a for a in agents if role_of[a] in rs]
        c = match(seats, scored)
        rows.append({"opponent": label, "seat": ",".join(scored), "games": episodes,
                     "clone_score": c["score"],
                     "expert_score": float(np.mean([expert["returns"][a] for a in scored])),
                     "clone_metrics": c["metrics"], "expert_metrics": expert["metrics"]})
    return rows
