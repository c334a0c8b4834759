"""A human in a seat: the terminal shows a board (who you are, the running score, what the others did, in
words), the observation and the legal actions by name; ``play_human`` plays one game that way."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evoarena.envs.base import forced_actions, only_legal

QUIT = ("q", "quit", "exit")


class HumanQuit(Exception):
    """The person typed ``q`` (or the input ended) before the game was over."""


class HumanAgent:
    """Asks a person at the terminal for each decision (by number or by action name)."""

    name = "human"
    needs_action_names = True

    def __init__(self, input_fn: Callable[[str], str] = input, print_fn: Callable[[str], None] = print) -> None:
        self._input, self._print = input_fn, print_fn

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, obs: dict[str, Any]) -> int:
        forced = only_legal(obs)
        if forced is not None:
            return forced
        legal = [int(i) for i in np.flatnonzero(obs["action_mask"])]
        names = obs.get("action_names") or [str(i) for i in range(len(obs["action_mask"]))]
        self._print("what you see: " + obs["text"])
        self._print("legal actions: " + "  ".join(f"[{i}] {names[i]}" for i in legal) + "   (q: quit)")
        while True:
            try:
                answer = self._input("your action> ").strip()
            except EOFError:
                raise HumanQuit("the input ended before the game did") from None
            if answer.lower() in QUIT:
                raise HumanQuit("you quit")
            if answer.lstrip("-").isdigit() and int(answer) in legal:
                return int(answer)
            by_name = [i for i in legal if names[i] == answer]
            if by_name:
                return by_name[0]
            self._print(f"{answer!r} is not a legal action; type one of the numbers in brackets")

    def act_batch(self, obs_list: Sequence[dict[str, Any]]) -> list[int]:
        return [self.act(o) for o in obs_list]


def _points(x: float) -> str:
    return f"{x:g}"


@dataclass
class Board:
    """What the person at ``seat`` is told before each decision."""

    seat: str
    agents: list[str]
    who: dict[str, str]  #: agent -> the spec or name playing it
    score: dict[str, float] = field(default_factory=dict)
    last: list[str] = field(default_factory=list)  #: the last step's moves and payoffs, in words
    step: int = 0

    def __post_init__(self) -> None:
        self.score = dict.fromkeys(self.agents, 0.0)

    def label(self, agent: str) -> str:
        return "you" if agent == self.seat else f"{agent} ({self.who[agent]})"

    def header(self) -> str:
        others = ", ".join(f"{a} = {self.who[a]}" for a in self.agents if a != self.seat)
        i = self.agents.index(self.seat) + 1
        return f"you are {self.seat} (seat {i} of {len(self.agents)}) against {others}"

    def score_line(self) -> str:
        return "score: " + ", ".join(f"{self.label(a)} {_points(self.score[a])}" for a in self.agents)

    def render(self) -> str:
        lines = [f"── step {self.step + 1} ── {self.header()}", self.score_line()]
        if self.last:
            lines.append("last step: " + "; ".join(self.last))
        return "\n".join(lines)

    def record(self, moves: Mapping[str, str], rewards: Mapping[str, float]) -> None:
        """One step done: ``moves`` (agent -> action in words, agents with a choice only) and the rewards."""
        self.step += 1
        for a, r in rewards.items():
            self.score[a] += float(r)
        self.last = [f"{self.label(a)}: {m}" for a, m in moves.items()]
        if any(rewards.values()):
            self.last.append("payoffs " + ", ".join(f"{self.label(a)} {float(r):+g}" for a, r in rewards.items()))


@dataclass
class HumanGame:
    """One game played by a person: returns per agent, the world's metrics, its transcript."""

    returns: dict[str, float]
    metrics: dict[str, float]
    transcript: str


def play_human(env_id: str, seats: Mapping[str, Any], human_seat: str, seed: int,
               env_kwargs: dict[str, Any] | None = None, print_fn: Callable[[str], None] = print) -> HumanGame:
    """Play one game of ``env_id``: ``seats`` maps every agent to an agent object, ``human_seat``'s being a
    :class:`HumanAgent`. Before each of the person's decisions the board is printed; others' moves of the
    same step are chosen after the person's and shown at the next decision."""
    from evoarena.envs import make

    env = make(env_id, render_mode="ansi", **(env_kwargs or {}))
    agents = list(env.possible_agents)
    for i, a in enumerate(agents):
        seats[a].reset(seed + 104729 * (i + 1))
    board = Board(human_seat, agents, {a: getattr(seats[a], "name", str(seats[a])) for a in agents})
    obs, _ = env.reset(seed=seed)
    try:
        while env.agents:
            order = sorted(env.agents, key=lambda a: a != human_seat)  # the person decides first
            actions, choosing = forced_actions(order, obs)
            moves = {}
            for a in choosing:
                names = env.action_names(a)
                o = {**obs[a], "action_names": names} if getattr(seats[a], "needs_action_names", False) else obs[a]
                if a == human_seat:
                    print_fn(board.render())
                actions[a] = int(seats[a].act(o))
                moves[a] = names[actions[a]]
            obs, rewards, _, _, _ = env.step(actions)
            board.record({a: moves[a] for a in agents if a in moves}, rewards)
        print_fn(f"── game over ── {board.header()}\nlast step: " + "; ".join(board.last))
        print_fn("final " + board.score_line())
        return HumanGame(dict(board.score), env.metrics(), env.transcript())
    finally:
        env.close()
