"""Common base of every evoarena world: a PettingZoo ParallelEnv with text observations.

Every observation is ``{"text": str, "features": float32[F], "action_mask": int8[A]}``.
Spaces are built once in ``__init__`` and returned by identity. Turn-based worlds give an
agent whose turn it is not exactly one legal action (``wait``). ``action_names(agent)`` gives
a short text for every action at the current step; ``metrics()`` the world's metrics of the
current (or just finished) episode. ``render()`` returns (``ansi``) or prints (``human``) the
transcript of the episode so far.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

TEXT_CHARSET = string.ascii_letters + string.digits + " .,:;!?'\"()[]{}<>=+-*/_|#%&@^~\n"
MAX_TEXT_CHARS = 512
RENDER_MODES = ("ansi", "human")


class EnvArgumentError(ValueError):
    """A bad keyword argument to a world: names the argument, the value and what is allowed."""


def check_arg(env_name: str, key: str, value: Any, allowed: str, ok: bool) -> None:
    """Raise :class:`EnvArgumentError` unless ``ok``; the message names key, value and the allowed range."""
    if not ok:
        raise EnvArgumentError(f"{env_name}: bad {key}={value!r}; allowed: {allowed}")


def obs_space(num_features: int, num_actions: int) -> spaces.Dict:
    """The observation space shared by all worlds (one instance per agent, built once)."""
    return spaces.Dict(
        {
            "text": spaces.Text(max_length=MAX_TEXT_CHARS, min_length=0, charset=TEXT_CHARSET),
            "features": spaces.Box(-np.inf, np.inf, shape=(num_features,), dtype=np.float32),
            "action_mask": spaces.Box(0, 1, shape=(num_actions,), dtype=np.int8),
        }
    )


def one_hot_mask(num_actions: int, legal: int) -> np.ndarray:
    """An int8 mask with a single legal action."""
    mask = np.zeros(num_actions, dtype=np.int8)
    mask[legal] = 1
    return mask


def only_legal(obs: dict[str, Any]) -> int | None:
    """The one legal action of an observation whose mask allows exactly one, else None."""
    legal = np.flatnonzero(obs["action_mask"])
    return int(legal[0]) if len(legal) == 1 else None


def forced_actions(agents: Iterable[str], obs: dict[str, dict[str, Any]]) -> tuple[dict[str, int], list[str]]:
    """Split the acting ``agents`` into those with a single legal action (played here: agent -> action) and
    those with a real choice (in order). Every loop that steps a world asks only the latter."""
    forced: dict[str, int] = {}
    choosing: list[str] = []
    for agent in agents:
        action = only_legal(obs[agent])
        if action is None:
            choosing.append(agent)
        else:
            forced[agent] = action
    return forced, choosing


class LegalDiscrete(spaces.Discrete):
    """A ``Discrete`` action space whose mask-less ``sample()`` draws among the agent's currently legal
    actions, read from the env's dict of current masks (kept as one dict object, updated in place), so
    code that samples without a mask (PettingZoo's ``parallel_seed_test``) never plays an illegal action.
    With an explicit ``mask`` or ``probability`` it is a plain ``Discrete``; it pickles as one."""

    def __init__(self, n: int, masks: dict[str, np.ndarray], agent: str) -> None:
        super().__init__(n)
        self._masks = masks
        self._agent = agent

    def sample(self, mask: np.ndarray | None = None, probability: np.ndarray | None = None) -> Any:
        if mask is None and probability is None:
            mask = self._masks.get(self._agent)
        return super().sample(mask=mask, probability=probability)

    def __reduce__(self):  # the link to the env's masks is not portable
        return (spaces.Discrete, (int(self.n),))


class TextParallelEnv(ParallelEnv):
    """Base class of the worlds. Subclasses fill ``possible_agents``, ``_obs_spaces`` and
    ``_act_spaces`` in ``__init__`` and implement ``reset``, ``step``, ``action_names`` and
    ``metrics``; they append readable lines to ``self._transcript``."""

    metadata: dict[str, Any] = {"render_modes": list(RENDER_MODES), "name": "base", "is_parallelizable": True}

    def __init__(self, render_mode: str | None = None) -> None:
        check_arg(self.metadata["name"], "render_mode", render_mode, "None, 'ansi' or 'human'",
                  render_mode is None or render_mode in RENDER_MODES)
        self.render_mode = render_mode
        self._obs_spaces: dict[str, spaces.Space] = {}
        self._act_spaces: dict[str, spaces.Discrete] = {}
        self._transcript: list[str] = []
        self._masks: dict[str, np.ndarray] = {}  #: current action masks, updated in place (see LegalDiscrete)
        self.agents: list[str] = []

    def observation_space(self, agent: str) -> spaces.Space:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._act_spaces[agent]

    def action_names(self, agent: str) -> list[str]:
        """A short text for every action of ``agent`` at the current step."""
        raise NotImplementedError

    def metrics(self) -> dict[str, float]:
        """The world's metrics for the current or just finished episode."""
        raise NotImplementedError

    def role(self, agent: str) -> str:
        """The role of ``agent`` (its name without a trailing ``_N``), used by per-role policy mapping."""
        head, _, tail = agent.rpartition("_")
        return head if head and tail.isdigit() else agent

    def check_action(self, agent: str, action: Any, mask: np.ndarray) -> int:
        """Return ``action`` as int, or raise ValueError naming the agent, the action and the legal ones."""
        try:
            a = int(action)
        except (TypeError, ValueError):
            a = -1
        if a < 0 or a >= len(mask) or not mask[a]:
            names = self.action_names(agent)
            legal = [f"{i}={names[i]}" for i in np.flatnonzero(mask)]
            shown = ", ".join(legal[:12]) + (f", ... ({len(legal)} in all)" if len(legal) > 12 else "")
            raise ValueError(f"{self.metadata['name']}: illegal action {action!r} for agent {agent!r}; legal: {shown}")
        return a

    def transcript(self) -> str:
        """The readable transcript of the episode so far."""
        return "\n".join(self._transcript)

    def render(self) -> str | None:
        text = self.transcript()
        if self.render_mode == "human":
            print(text)
            return None
        return text

    def close(self) -> None:
        pass
