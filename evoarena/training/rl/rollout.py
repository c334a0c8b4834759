"""Rollouts for multi-agent PPO over ``num_envs`` copies of a world.

Each step gathers the observations of every agent that has a real choice (more than one legal
action), groups them by who acts (a learner policy or a fixed agent object) and runs one
batched forward per group. Agents with a single legal action are never sent to a policy.
Per-agent streams: the reward an agent gets between two of its decisions is credited to the
earlier one; at the end of an episode a stream is closed with bootstrap 0 (termination) or
the value of its last observation (truncation).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from evoarena.agents import spec_tag
from evoarena.envs import forced_actions, make
from evoarena.training.rl.ppo_math import discounted_returns, gae

#: who fills a seat for one episode: ("learner", policy name) or ("agent", agent object)
Assignment = tuple[str, Any]


def needs_action_names(actor: Any) -> bool:
    """Whether ``actor`` (a policy or an agent) reads ``obs["action_names"]``."""
    if getattr(actor, "needs_action_names", False):
        return True
    cfg = getattr(actor, "cfg", None)
    return bool(cfg is not None and getattr(cfg, "kind", "") == "transformer"
                and getattr(cfg, "head", "") in ("scoring", "lm"))


@dataclass
class LearnerBatch:
    """Decisions one learner made in a rollout, with advantages once :meth:`finish` ran."""

    obs: list[dict[str, Any]] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    logp: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    streams: list[tuple[list[int], float]] = field(default_factory=list)  #: (decision indices, bootstrap)
    advantages: np.ndarray | None = None
    returns: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.actions)

    def add(self, obs: dict[str, Any], action: int, logp: float, value: float) -> int:
        self.obs.append(obs)
        self.actions.append(int(action))
        self.logp.append(float(logp))
        self.values.append(float(value))
        self.rewards.append(0.0)
        return len(self.actions) - 1

    @torch.no_grad()
    def refresh(self, policy: Any, chunk: int = 2048) -> None:
        """Recompute the log-probs and values of the recorded decisions under ``policy`` as it is now
        (after new standardisation statistics were stored, so that PPO ratios start at exactly 1)."""
        logp, values = [], []
        for s in range(0, len(self), chunk):
            lp, _, v = policy.evaluate(self.obs[s:s + chunk], torch.as_tensor(self.actions[s:s + chunk]))
            logp.extend(lp.float().cpu().tolist())
            values.extend(v.float().cpu().tolist())
        self.logp, self.values = logp, values

    def finish(self, gamma: float, lam: float, mode: str = "gae", baseline: float = 0.0) -> None:
        """Advantages and returns per stream: GAE, or (mode ``baseline``) return minus ``baseline``."""
        n = len(self)
        adv, ret = np.zeros(n), np.zeros(n)
        rewards, values = np.asarray(self.rewards), np.asarray(self.values)
        for idx, boot in self.streams:
            ix = np.asarray(idx)
            if mode == "gae":
                a, r = gae(rewards[ix], values[ix], boot, gamma, lam)
            else:
                r = discounted_returns(rewards[ix], boot, gamma)
                a = r - baseline
            adv[ix], ret[ix] = a, r
        self.advantages, self.returns = adv, ret


@dataclass
class EpisodeRecord:
    """One finished episode: returns per agent, who sat where, the world's metrics."""

    returns: dict[str, float]
    seats: dict[str, str]  #: agent -> "learner:NAME" or the agent's name
    metrics: dict[str, float]
    length: int
    transcript: str | None = None


@dataclass
class RolloutResult:
    batches: dict[str, LearnerBatch]
    episodes: list[EpisodeRecord]
    env_seconds: float
    forward_seconds: float
    decisions: int
    queried: int  #: observations sent to policies or agents (each with more than one legal action)
    tokenize_seconds: float = 0.0  #: the learners' tokenisation time (part of forward_seconds)


@dataclass
class _Tally:
    """What one :meth:`Rollout.collect` gathers as it goes."""

    batches: dict[str, LearnerBatch]
    records: list[EpisodeRecord] = field(default_factory=list)
    env_s: float = 0.0
    fwd_s: float = 0.0
    decisions: int = 0
    queried: int = 0


class Rollout:
    """Steps ``num_envs`` copies of a world in lockstep and collects whole episodes."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any], num_envs: int, learners: dict[str, Any],
                 assign: Callable[[np.random.Generator], dict[str, Assignment]], seed: int,
                 record_transcripts: bool = True) -> None:
        self.envs = [make(env_id, render_mode="ansi" if (i == 0 and record_transcripts) else None, **env_kwargs)
                     for i in range(num_envs)]
        self.learners = learners
        self.assign = assign
        self.next_seed = seed
        self.rng = np.random.default_rng(seed)
        self.torch_gen = torch.Generator().manual_seed(seed)

    def state(self) -> dict[str, Any]:
        """Everything needed to continue the same sequence of episodes after a resume."""
        return {"next_seed": self.next_seed, "rng": self.rng.bit_generator.state,
                "torch_gen": self.torch_gen.get_state().tolist()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.next_seed = int(state["next_seed"])
        self.rng.bit_generator.state = state["rng"]
        self.torch_gen.set_state(torch.tensor(state["torch_gen"], dtype=torch.uint8))

    def collect(self, episodes: int) -> RolloutResult:
        """Play ``episodes`` whole episodes; learners sample their actions."""
        tally = _Tally({name: LearnerBatch() for name in self.learners})
        tok0 = self.tokenize_seconds()
        slots: list[dict[str, Any]] = []
        started = 0

        def start(env: Any) -> None:
            nonlocal started
            t0 = time.perf_counter()
            obs, _ = env.reset(seed=self.next_seed)
            tally.env_s += time.perf_counter() - t0
            self.next_seed += 1
            started += 1
            slots.append({"env": env, "obs": obs, "who": self.assign(self.rng), "last": {},
                          "streams": defaultdict(list), "steps": 0, "ret": dict.fromkeys(env.possible_agents, 0.0)})

        for env in self.envs[:episodes]:
            start(env)
        while slots:
            actions = self._choose(slots, tally)
            t0 = time.perf_counter()
            truncated: dict[str, list[tuple[int, dict]]] = defaultdict(list)
            free = [slot["env"] for k, slot in enumerate(slots) if self._step(slot, actions[k], tally, truncated)]
            tally.env_s += time.perf_counter() - t0
            self._bootstrap(truncated, tally)
            slots[:] = [slot for slot in slots if slot["env"].agents]
            for env in free:
                if started < episodes:
                    start(env)
        return RolloutResult(tally.batches, tally.records, tally.env_s, tally.fwd_s, tally.decisions, tally.queried,
                             self.tokenize_seconds() - tok0)

    def _choose(self, slots: list[dict[str, Any]], tally: _Tally) -> list[dict[str, int]]:
        """Every seat's action of this step: single legal actions played here, the rest asked in one batch per
        learner (recorded in its batch) and per fixed agent."""
        actions: list[dict[str, int]] = []
        learner_reqs: dict[str, list[tuple[int, str, dict]]] = defaultdict(list)
        agent_reqs: dict[int, list[tuple[int, str, dict]]] = defaultdict(list)
        agent_objs: dict[int, Any] = {}
        for k, slot in enumerate(slots):
            env = slot["env"]
            forced, choosing = forced_actions(env.agents, slot["obs"])
            actions.append(forced)
            for a in choosing:
                o = slot["obs"][a]
                kind, target = slot["who"][a]
                actor = self.learners[target] if kind == "learner" else target
                if needs_action_names(actor):
                    o = {**o, "action_names": env.action_names(a)}
                if kind == "learner":
                    learner_reqs[target].append((k, a, o))
                else:
                    agent_reqs[id(target)].append((k, a, o))
                    agent_objs[id(target)] = target
        t0 = time.perf_counter()
        for name, reqs in learner_reqs.items():
            out = self.learners[name].act([o for _, _, o in reqs], generator=self.torch_gen)
            batch = tally.batches[name]
            for j, (k, a, o) in enumerate(reqs):
                act = int(out.actions[j])
                actions[k][a] = act
                idx = batch.add(o, act, out.logp[j], out.values[j])
                slots[k]["streams"][a].append(idx)
                slots[k]["last"][a] = (name, idx)
            tally.decisions += len(reqs)
            tally.queried += len(reqs)
        for key, reqs in agent_reqs.items():
            chosen = agent_objs[key].act_batch([o for _, _, o in reqs])
            for (k, a, _), act in zip(reqs, chosen):
                actions[k][a] = int(act)
            tally.queried += len(reqs)
        tally.fwd_s += time.perf_counter() - t0
        return actions

    def _step(self, slot: dict[str, Any], actions: dict[str, int], tally: _Tally,
              truncated: dict[str, list[tuple[int, dict]]]) -> bool:
        """Step one env; rewards go to each agent's last decision, ended streams are closed (a truncated one
        queued for its bootstrap value); True when its episode ended (recorded in ``tally``)."""
        env, batches = slot["env"], tally.batches
        obs, rew, term, trunc, _ = env.step(actions)
        slot["steps"] += 1
        for a, r in rew.items():
            slot["ret"][a] += float(r)
            if a in slot["last"]:
                name, idx = slot["last"][a]
                batches[name].rewards[idx] += float(r)
        for a in list(slot["last"]):
            if term.get(a) or trunc.get(a):
                name, idx = slot["last"].pop(a)
                stream = slot["streams"].pop(a)
                if trunc.get(a) and not term.get(a):
                    o = obs[a]
                    if needs_action_names(self.learners[name]):
                        o = {**o, "action_names": env.action_names(a)} if env.agents else o
                    truncated[name].append((len(batches[name].streams), o))
                batches[name].streams.append((stream, 0.0))
        slot["obs"] = obs
        if env.agents:
            return False
        seats = {a: (f"learner:{t}" if kind == "learner" else getattr(t, "name", str(t)))
                 for a, (kind, t) in slot["who"].items()}
        tally.records.append(EpisodeRecord(dict(slot["ret"]), seats, env.metrics(), slot["steps"],
                                           env.transcript() if env.render_mode else None))
        return True

    def _bootstrap(self, truncated: dict[str, list[tuple[int, dict]]], tally: _Tally) -> None:
        """Truncated streams end on the value of their last observation."""
        for name, reqs in truncated.items():
            t1 = time.perf_counter()
            with torch.no_grad():
                _, values = self.learners[name].forward_obs([o for _, o in reqs])
            for (si, _), v in zip(reqs, values.float().cpu().numpy()):
                idx, _ = tally.batches[name].streams[si]
                tally.batches[name].streams[si] = (idx, float(v))
            tally.fwd_s += time.perf_counter() - t1

    def tokenize_seconds(self) -> float:
        """Seconds the learners' encoders have spent tokenising so far."""
        return sum(float(getattr(getattr(p, "encoder", None), "tokenize_seconds", 0.0)) for p in self.learners.values())


def partner_label(seat: str) -> str:
    """The partner a seat label stands for over training: a snapshot's or league member's update dropped
    (``snapshot:main@40`` -> ``snapshot:main``), any other label as it is."""
    return seat.rsplit("@", 1)[0] if seat.startswith(("snapshot:", "league:")) else seat


def log_rollout(writer: Any, step: int, learners: dict[str, Any], episodes: list[Any]) -> dict[str, float]:
    """rollout/<policy>/... : mean episode return of the policy's seats, length, the world's metrics, and
    ``rollout/<policy>/vs/<partner>/episode_return`` per partner it met (:func:`partner_label`, spelt by
    ``spec_tag``)."""
    summary = {}
    for name in learners:
        tag = f"learner:{name}"
        eps = [r for r in episodes if tag in r.seats.values()]
        rets = [float(np.mean([r.returns[a] for a, s in r.seats.items() if s == tag])) for r in eps]
        if not rets:
            continue
        writer.add_scalar(f"rollout/{name}/episode_return", float(np.mean(rets)), step)
        by_partner: dict[str, list[float]] = {}
        for r, ret in zip(eps, rets, strict=True):
            for partner in {partner_label(s) for s in r.seats.values() if s != tag}:
                by_partner.setdefault(partner, []).append(ret)
        for partner, vals in sorted(by_partner.items()):
            writer.add_scalar(f"rollout/{name}/vs/{spec_tag(partner)}/episode_return", float(np.mean(vals)), step)
        writer.add_scalar(f"rollout/{name}/episode_length", float(np.mean([r.length for r in eps])), step)
        summary[name] = float(np.mean(rets))
        for key in sorted({k for r in eps for k in r.metrics}):
            vals = [r.metrics[key] for r in eps if key in r.metrics]
            writer.add_scalar(f"rollout/{name}/{key}", float(np.mean(vals)), step)
    return summary
