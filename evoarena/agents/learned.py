"""Learned agents: ``PolicyAgent`` wraps a policy; ``load_policy_agent(path, env_id)`` is ``ckpt:PATH``.

The agent never queries its policy for an observation with a single legal action; a batch of
observations is one forward pass. ``greedy`` picks the most likely action, otherwise actions are
sampled with a generator seeded by ``reset(seed)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from evoarena.envs.base import only_legal


class PolicyAgent:
    """An agent acting with ``policy`` (an ActorCritic or MLPPolicy)."""

    def __init__(self, policy, greedy: bool = True, seed: int | None = None, name: str | None = None) -> None:
        self.policy = policy
        self.greedy = greedy
        self.name = name or f"policy:{policy.env_id or '?'}/{policy.role or policy.agent or '?'}"
        self.generator = torch.Generator()
        cfg = getattr(policy, "cfg", None)
        #: matches and rollouts add ``obs["action_names"]`` for agents that read them (scoring heads)
        self.needs_action_names = bool(cfg is not None and cfg.kind == "transformer" and cfg.head in ("scoring", "lm"))
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

    def act(self, obs: dict[str, Any]) -> int:
        return self.act_batch([obs])[0]

    def act_batch(self, obs_list: Sequence[dict[str, Any]]) -> list[int]:
        actions = [-1] * len(obs_list)
        ask = []
        for i, o in enumerate(obs_list):
            forced = only_legal(o)
            if forced is None:
                ask.append(i)
            else:
                actions[i] = forced
        if ask:
            was_training = self.policy.training
            self.policy.eval()
            try:
                out = self.policy.act([obs_list[i] for i in ask], greedy=self.greedy,
                                      generator=self.generator)
            finally:
                self.policy.train(was_training)
            for i, a in zip(ask, out.actions, strict=True):
                actions[i] = int(a)
        return actions


def resolve_policy_folder(path: str | Path) -> Path:
    """The policy checkpoint that ``path`` names: ``path`` itself when it holds ``policy.json``; a training
    checkpoint folder (``stages/NN_train/checkpoint``, ``.../best``) that holds exactly one policy under
    ``policies/NAME`` resolves to it; one holding several is an error naming each of them."""
    from evoarena.policies.io import POLICY_JSON, CheckpointError

    folder = Path(path)
    if (folder / POLICY_JSON).is_file() or not (folder / "policies").is_dir():
        return folder
    found = sorted(p for p in (folder / "policies").iterdir() if (p / POLICY_JSON).is_file())
    if len(found) == 1:
        return found[0]
    if not found:
        raise CheckpointError(f"{folder}: a training checkpoint with no policy under {folder / 'policies'}")
    names = ", ".join(f"ckpt:{p}" for p in found)
    raise CheckpointError(f"{folder}: a training checkpoint holding {len(found)} policies; name one: {names}")


def load_policy_agent(path: str | Path, env_id: str, greedy: bool = True, seed: int | None = None,
                      device: str = "auto") -> PolicyAgent:
    """The agent of checkpoint ``path`` (spec ``ckpt:PATH``; a training checkpoint with one policy resolves
    to it, see :func:`resolve_policy_folder`); an error if it was made for another world."""
    from evoarena.policies.io import CheckpointError, load_policy

    path = resolve_policy_folder(path)
    policy = load_policy(path, device=device)
    if policy.env_id != env_id:
        raise CheckpointError(f"{path}: checkpoint was trained for env {policy.env_id!r}, not {env_id!r}")
    return PolicyAgent(policy, greedy=greedy, seed=seed, name=f"ckpt:{path}")
