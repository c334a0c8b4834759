"""The interface every policy implements (:class:`BasePolicy`) and the pieces its heads are made of.

An observation is the world's dict ``{"text", "features", "action_mask"}``, plus ``"action_names"``
(one text per action, from ``env.action_names(agent)``) for heads that read them. Every policy has:

- ``forward_obs(obs_list) -> (masked_logits [B, A], values [B])``: illegal actions get a logit of
  ``finfo(float32).min / 2`` (never NaN, never sampled);
- ``act(obs_list, greedy=False, generator=None) -> ActOutput`` under ``no_grad``;
- ``evaluate(obs_list, actions) -> (logp, entropy, values)`` with gradients, for PPO updates
  (entropy over the legal actions only).

Subclasses implement ``_forward``: :mod:`~evoarena.policies.actor_critic` (MLP, linear and scoring heads) and
:mod:`~evoarena.policies.llm` (the lm head).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from evoarena.config import PolicyConfig
from evoarena.policies.llm_encoder import sync_world
from evoarena.policies.text_encoder import TextEncoder

MASKED_LOGIT = torch.finfo(torch.float32).min / 2  #: the logit of an illegal action
STD_EPS = 1e-5


@dataclass
class ActOutput:
    """What ``act`` returns: chosen actions, their log-probabilities and the value estimates (numpy)."""

    actions: np.ndarray
    logp: np.ndarray
    values: np.ndarray


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Per feature ``(x - mean) / (std + 1e-5)`` over the rows of ``x``; a single row is returned as is."""
    if x.shape[0] < 2:
        return x
    mean = x.mean(0, keepdim=True)
    std = x.std(0, unbiased=False, keepdim=True)
    return (x - mean) / (std + STD_EPS)


def init_linear(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def head_mlp(inp: int, hidden: int, out: int, out_gain: float) -> nn.Sequential:
    """``Linear`` (or ``Linear-Tanh-Linear`` when ``hidden`` > 0) with orthogonal init."""
    if hidden <= 0:
        return nn.Sequential(init_linear(nn.Linear(inp, out), out_gain))
    return nn.Sequential(init_linear(nn.Linear(inp, hidden), math.sqrt(2)), nn.Tanh(),
                         init_linear(nn.Linear(hidden, out), out_gain))


class BasePolicy(nn.Module):
    """Shared interface of the policies: masks, ``act``, ``evaluate``; subclasses implement ``_forward``."""

    kind = "base"

    def __init__(self, cfg: PolicyConfig, num_actions: int, num_features: int, env_id: str = "",
                 agent: str = "", role: str | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_actions = int(num_actions)
        self.num_features = int(num_features)
        self.env_id = env_id
        self.agent = agent
        self.role = role if role is not None else agent
        self.env_kwargs = {}
        self.tokenizer = None
        self.encoder: TextEncoder | None = None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def env_kwargs(self) -> dict[str, Any]:
        """The world's keyword arguments (recorded in checkpoints)."""
        return self.__dict__.get("_env_kwargs", {})

    @env_kwargs.setter
    def env_kwargs(self, value: dict[str, Any]) -> None:
        self.__dict__["_env_kwargs"] = dict(value)
        if getattr(self, "encoder", None) is not None:  # an LLM's prompt states the world's rules (their kwargs)
            sync_world(self)

    def where(self) -> str:
        return f"policy for {self.env_id or '?'} agent {self.agent or '?'}"

    def action_masks(self, obs_list: Sequence[dict[str, Any]]) -> torch.Tensor:
        """Bool ``[B, A]`` legal-action masks; an error for a wrong-sized mask or one without legal action."""
        masks = np.stack([np.asarray(o["action_mask"]) for o in obs_list])
        if masks.ndim != 2 or masks.shape[1] != self.num_actions:
            raise ValueError(f"{self.where()}: action_mask has shape {masks.shape[1:]}, "
                             f"expected ({self.num_actions},)")
        mask = torch.from_numpy(masks != 0).to(self.device)
        if not bool(mask.any(1).all()):
            bad = int((~mask.any(1)).nonzero()[0, 0])
            raise ValueError(f"{self.where()}: observation {bad} of the batch has no legal action")
        return mask

    def features_tensor(self, obs_list: Sequence[dict[str, Any]]) -> torch.Tensor:
        feats = np.stack([np.asarray(o["features"], dtype=np.float32) for o in obs_list])
        if feats.shape[1] != self.num_features:
            raise ValueError(f"{self.where()}: features have size {feats.shape[1]}, "
                             f"expected {self.num_features}")
        return torch.from_numpy(feats).to(self.device)

    def _forward(self, obs_list: Sequence[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(masked_logits [B, A], values [B], mask [B, A])``."""
        raise NotImplementedError

    def forward_obs(self, obs_list: Sequence[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(masked_logits [B, A], values [B])`` for a list of observations."""
        logits, values, _ = self._forward(obs_list)
        return logits, values

    def forward(self, obs_list: Sequence[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_obs(obs_list)

    @torch.no_grad()
    def act(self, obs_list: Sequence[dict[str, Any]], greedy: bool = False,
            generator: torch.Generator | None = None) -> ActOutput:
        """Actions sampled from the masked policy (``greedy``: argmax), their log-probs and values."""
        if len(obs_list) == 0:
            empty = np.zeros(0)
            return ActOutput(empty.astype(np.int64), empty.astype(np.float32), empty.astype(np.float32))
        logits, values, _ = self._forward(obs_list)
        logp_all = torch.log_softmax(logits, dim=-1)
        if greedy:
            actions = logits.argmax(-1)
        else:
            probs = logp_all.exp()
            dev = generator.device if generator is not None else probs.device
            actions = torch.multinomial(probs.to(dev), 1, generator=generator).squeeze(1).to(logits.device)
        logp = logp_all.gather(1, actions[:, None]).squeeze(1)
        return ActOutput(actions.cpu().numpy().astype(np.int64), logp.float().cpu().numpy(),
                         values.float().cpu().numpy())

    def evaluate(self, obs_list: Sequence[dict[str, Any]], actions: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logp [B], entropy [B], values [B])`` of ``actions`` with gradients (PPO update)."""
        logits, values, mask = self._forward(obs_list)
        logp_all = torch.log_softmax(logits, dim=-1)
        actions = torch.as_tensor(actions, device=logits.device).long()
        logp = logp_all.gather(1, actions[:, None]).squeeze(1)
        entropy = -(logp_all.exp() * logp_all).masked_fill(~mask, 0.0).sum(-1)
        return logp, entropy, values

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def last_policy_layer(self) -> nn.Linear:
        """The layer whose outputs are the logits (or scale the scores)."""
        raise NotImplementedError

    @torch.no_grad()
    def soften(self, temperature: float) -> None:
        """Divide every logit by ``temperature`` (scales the last policy layer; argmax unchanged)."""
        layer = self.last_policy_layer()
        layer.weight.div_(temperature)
        if layer.bias is not None:
            layer.bias.div_(temperature)

    @property
    def standardizes(self) -> bool:
        """Whether the policy standardises features (and so has statistics to :meth:`calibrate`)."""
        return False

    def calibrate(self, obs_list: Sequence[dict[str, Any]], max_texts: int = 8192, seed: int = 0) -> None:
        """Store standardisation statistics from ``obs_list`` (no-op for policies that do not standardise)."""

    @staticmethod
    def optional_state_keys() -> tuple[str, ...]:
        """State-dict keys a checkpoint may lack (written by later versions; defaults are kept)."""
        return ()
