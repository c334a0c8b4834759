"""A Gymnasium single-agent view of any world: one seat is the learner, the others are played by agents.

``single_agent(env_id, seat, opponents)`` returns a :class:`SingleAgentEnv` (a ``gymnasium.Env``
that passes ``gymnasium.utils.env_checker.check_env``), so any single-agent library can train
against evoarena's opponents. Its observation space is the world's own ``Dict(text, features,
action_mask)`` of ``seat``; its action space the seat's ``Discrete``. ``action_masks()`` gives the
legal actions (the sb3-contrib ``MaskablePPO`` convention) and ``action_names()`` their texts.

Steps where the seat has a single legal action (``wait`` in turn-based worlds) are played for it,
as rollouts never query a policy for them: every ``step`` is a real decision, and its reward is the
seat's reward summed over the world steps until its next decision (or the end of the episode).
``terminated`` / ``truncated`` are the seat's own.

An illegal action (a library that does not mask, or Gymnasium's ``check_env``, which samples actions
before a reset) is by default replaced by a uniformly random legal one drawn from the env's seeded
``np_random``, and ``info["illegal_action"]`` is True; ``on_illegal="raise"`` raises the world's
``ValueError`` naming the seat, the action and the legal ones instead.

It lives in ``agents`` because it needs players (DESIGN: worlds know no players): :class:`SingleAgentEnv`
takes agent *objects* (anything with ``act_batch(list_of_obs)`` and optionally ``reset(seed)``);
:func:`single_agent` also accepts agent spec strings, built with :func:`evoarena.agents.specs.make_agent`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import gymnasium
import numpy as np

from evoarena.agents.specs import make_agent
from evoarena.envs.base import TextParallelEnv, forced_actions
from evoarena.envs.registry import make

#: who plays a non-learner seat: an agent object or (in :func:`single_agent`) a spec string
Opponent = Any


class SingleAgentEnv(gymnasium.Env):
    """``seat`` of ``world`` as a Gymnasium env; every other seat is played by its agent in ``opponents``."""

    def __init__(self, world: TextParallelEnv, seat: str, opponents: Mapping[str, Any],
                 on_illegal: Literal["resample", "raise"] = "resample") -> None:
        name = world.metadata.get("name", type(world).__name__)
        if seat not in world.possible_agents:
            raise ValueError(f"{name}: no seat {seat!r}; seats are {', '.join(world.possible_agents)}")
        others = [a for a in world.possible_agents if a != seat]
        missing = [a for a in others if a not in opponents]
        extra = [a for a in opponents if a not in others]
        if missing or extra:
            raise ValueError(f"{name}: opponents must fill exactly the seats {others} (learner seat {seat!r}); "
                             f"missing {missing}, unknown {extra}")
        for a in others:
            if not hasattr(opponents[a], "act_batch"):
                raise TypeError(f"{name}: the opponent in seat {a!r} has no act_batch(list_of_obs) method: "
                                f"{opponents[a]!r}")
        if on_illegal not in ("resample", "raise"):
            raise ValueError(f"{name}: on_illegal={on_illegal!r}; allowed: 'resample', 'raise'")
        self.world, self.seat, self.opponents, self.on_illegal = world, seat, dict(opponents), on_illegal
        self.observation_space = world.observation_space(seat)
        self.action_space = world.action_space(seat)
        self.metadata = {"render_modes": list(world.metadata.get("render_modes", [])),
                         "name": f"{name}/{seat}"}
        self.render_mode = world.render_mode
        self._obs: dict[str, Any] | None = None
        self._all_obs: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ helpers

    def _fresh_obs(self) -> dict[str, Any]:
        """The seat's observation with its own arrays (worlds may share mask arrays between steps)."""
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self._obs.items()}

    def _opponent_obs(self, agent: str, o: dict[str, Any]) -> dict[str, Any]:
        if getattr(self.opponents[agent], "needs_action_names", False):
            return {**o, "action_names": self.world.action_names(agent)}
        return o

    def _opponent_actions(self) -> dict[str, int]:
        actions, choosing = forced_actions([a for a in self.world.agents if a != self.seat], self._all_obs)
        for a in choosing:
            actions[a] = int(self.opponents[a].act_batch([self._opponent_obs(a, self._all_obs[a])])[0])
        return actions

    def _advance(self, seat_action: int | None) -> tuple[float, bool, bool, dict[str, Any]]:
        """Step the world with ``seat_action`` (None: the seat's single legal action) until the seat has
        a real choice or its episode ends; ``(reward, terminated, truncated, info)``."""
        reward, term, trunc, info = 0.0, False, False, {}
        while True:
            actions = self._opponent_actions()
            if self.seat in self.world.agents:
                if seat_action is None:
                    seat_action = int(np.flatnonzero(self._all_obs[self.seat]["action_mask"])[0])
                actions[self.seat] = seat_action
            obs, rew, terms, truncs, infos = self.world.step(actions)
            seat_action = None
            self._all_obs.update(obs)
            reward += float(rew.get(self.seat, 0.0))
            term, trunc = bool(terms.get(self.seat, False)), bool(truncs.get(self.seat, False))
            info = dict(infos.get(self.seat, {}))
            if self.seat in obs:
                self._obs = obs[self.seat]
            if term or trunc or self.seat not in self.world.agents:
                info["metrics"] = self.world.metrics()
                return reward, term, trunc and not term, info
            if int(np.count_nonzero(self._obs["action_mask"])) > 1:
                return reward, False, False, info

    # ------------------------------------------------------------------ gymnasium API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            for i, agent in enumerate(self.opponents.values()):
                if hasattr(agent, "reset"):
                    agent.reset(seed + 1 + i)
        world_seed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
        obs, infos = self.world.reset(seed=world_seed, options=options)
        self._all_obs = dict(obs)
        self._obs = obs[self.seat]
        info = dict(infos.get(self.seat, {}))
        if int(np.count_nonzero(self._obs["action_mask"])) <= 1:  # not on turn at the start
            _, term, trunc, info = self._advance(None)
            if term or trunc:
                raise RuntimeError(f"{self.metadata['name']}: the episode ended before seat {self.seat!r} "
                                   f"had a choice")
        return self._fresh_obs(), info

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        if self._obs is None or self.seat not in self.world.agents:
            raise RuntimeError(f"{self.metadata['name']}: step() called before reset() or after the episode "
                               f"ended; call reset()")
        mask = self._obs["action_mask"]
        illegal = False
        if self.on_illegal == "resample":
            try:
                a = int(action)
            except (TypeError, ValueError):
                a = -1
            if a < 0 or a >= len(mask) or not mask[a]:
                legal = np.flatnonzero(mask)
                a, illegal = int(legal[self.np_random.integers(len(legal))]), True
        else:
            a = self.world.check_action(self.seat, action, mask)
        reward, term, trunc, info = self._advance(a)
        info["illegal_action"] = illegal
        return self._fresh_obs(), reward, term, trunc, info

    def action_masks(self) -> np.ndarray:
        """Bool mask of the seat's legal actions now (sb3-contrib ``MaskablePPO`` reads it)."""
        if self._obs is None:
            raise RuntimeError(f"{self.metadata['name']}: action_masks() called before reset()")
        return np.asarray(self._obs["action_mask"]) != 0

    def action_names(self) -> list[str]:
        """A short text for every action of the seat at the current step."""
        return self.world.action_names(self.seat)

    def render(self) -> str | None:
        return self.world.render()

    def close(self) -> None:
        self.world.close()


def _resolve_opponents(env_id: str, world: TextParallelEnv, seat: str, opponents: Any, seed: int | None
                       ) -> dict[str, Any]:
    others = [a for a in world.possible_agents if a != seat]
    if isinstance(opponents, Mapping):
        given = dict(opponents)
    elif isinstance(opponents, Sequence) and not isinstance(opponents, str):
        if len(opponents) != len(others):
            raise ValueError(f"{env_id}: {len(opponents)} opponents given for the {len(others)} other seats "
                             f"{others}")
        given = dict(zip(others, opponents))
    else:
        given = dict.fromkeys(others, opponents)  # one spec or agent for every other seat
    out = {}
    for i, (a, who) in enumerate(given.items()):
        if isinstance(who, str):
            who = make_agent(who, env_id, seed=None if seed is None else seed + i)
        out[a] = who
    return out


def single_agent(env_id: str, seat: str, opponents: Opponent | Sequence[Opponent] | Mapping[str, Opponent],
                 env_kwargs: dict[str, Any] | None = None, render_mode: str | None = None,
                 seed: int | None = None, on_illegal: Literal["resample", "raise"] = "resample"
                 ) -> SingleAgentEnv:
    """The Gymnasium view of ``seat`` in world ``env_id`` (built with ``env_kwargs``).

    ``opponents`` fills the other seats: one agent (object or spec string such as
    ``"scripted:conceder"``) for all of them, a list in seat order, or a dict seat -> agent.
    Spec strings become agents through ``evoarena.agents.make_agent`` (seeded from ``seed``).
    """
    world = make(env_id, render_mode=render_mode, **(env_kwargs or {}))
    return SingleAgentEnv(world, seat, _resolve_opponents(env_id, world, seat, opponents, seed), on_illegal)
