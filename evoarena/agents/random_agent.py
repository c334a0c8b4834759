"""The ``random`` agent spec: a uniformly random legal action, in every world."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class RandomAgent:
    """Picks a uniformly random legal action."""

    name = "random"

    def __init__(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, obs: dict[str, Any]) -> int:
        return int(self.rng.choice(np.flatnonzero(obs["action_mask"])))

    def act_batch(self, obs_list: Sequence[dict[str, Any]]) -> list[int]:
        return [self.act(o) for o in obs_list]
