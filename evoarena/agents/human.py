"""A human in a seat: the terminal shows the observation and the legal actions by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class HumanAgent:
    """Asks a person at the terminal for each decision (by number or by action name)."""

    name = "human"

    def __init__(self, input_fn: Callable[[str], str] = input, print_fn: Callable[[str], None] = print) -> None:
        self._input, self._print = input_fn, print_fn

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, obs: dict[str, Any]) -> int:
        legal = [int(i) for i in np.flatnonzero(obs["action_mask"])]
        if len(legal) == 1:
            return legal[0]
        names = obs.get("action_names") or [str(i) for i in range(len(obs["action_mask"]))]
        self._print("\n" + obs["text"])
        self._print("legal actions: " + "  ".join(f"[{i}] {names[i]}" for i in legal))
        while True:
            answer = self._input("your action> ").strip()
            if answer.lstrip("-").isdigit() and int(answer) in legal:
                return int(answer)
            by_name = [i for i in legal if names[i] == answer]
            if by_name:
                return by_name[0]
            self._print(f"{answer!r} is not a legal action; type one of the numbers in brackets")

    def act_batch(self, obs_list: Sequence[dict[str, Any]]) -> list[int]:
        return [self.act(o) for o in obs_list]
