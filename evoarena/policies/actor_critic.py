"""Actor-critic policies: ``build_policy(cfg, env_id)`` -> :class:`ActorCritic`, :class:`MLPPolicy` or (``head: lm``)
:class:`~evoarena.policies.llm.LMPolicy`; all share the interface of :class:`~evoarena.policies.base.BasePolicy`.

Heads of :class:`ActorCritic`: ``linear`` (one logit per action) or ``scoring`` (each action text is
encoded by the same encoder and scored against the observation: ``<W_o h_obs, W_a h_act> / sqrt(d)``).
Observation and action texts of a batch go through the encoder in one call, each distinct text once.

Standardisation (``standardize: true``): pooled features are standardised per feature. While
``batch_stats`` is on (supervised training sets it), or before statistics were stored, the mean and
std come from the batch's distinct texts. :meth:`ActorCritic.calibrate` stores them from a set of
observations (saved with the weights), and from then on every batch uses the stored ones, so an
observation's output does not depend on the rest of its batch (a single ``evoarena play`` move, a
rollout step and a PPO minibatch all see the same function).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from evoarena.config import PolicyConfig
from evoarena.policies.base import MASKED_LOGIT, STD_EPS, BasePolicy, head_mlp, init_linear, standardize
from evoarena.policies.encoder import build_encoder, resolve_device
from evoarena.policies.llm import LMPolicy
from evoarena.policies.text_encoder import TextEncoder
from evoarena.policies.transfer import init_tokenizer, init_weights_from


class MLPPolicy(BasePolicy):
    """``kind: mlp``: separate Tanh MLPs for policy and value, reading ``features`` only (CleanRL style)."""

    kind = "mlp"

    def __init__(self, cfg: PolicyConfig, num_actions: int, num_features: int, env_id: str = "",
                 agent: str = "", role: str | None = None) -> None:
        super().__init__(cfg, num_actions, num_features, env_id, agent, role)

        def trunk() -> tuple[list[nn.Module], int]:
            layers: list[nn.Module] = []
            width = self.num_features
            for h in cfg.mlp_hidden:
                layers += [init_linear(nn.Linear(width, h), math.sqrt(2)), nn.Tanh()]
                width = h
            return layers, width

        pl, pw = trunk()
        self.policy_net = nn.Sequential(*pl, init_linear(nn.Linear(pw, self.num_actions), cfg.head_gain))
        vl, vw = trunk()
        self.value_net = nn.Sequential(*vl, init_linear(nn.Linear(vw, 1), 1.0))
        self.to(resolve_device(cfg.encoder.device))

    def last_policy_layer(self) -> nn.Linear:
        return self.policy_net[-1]

    def _forward(self, obs_list):
        x = self.features_tensor(obs_list)
        mask = self.action_masks(obs_list)
        logits = self.policy_net(x).float().masked_fill(~mask, MASKED_LOGIT)
        return logits, self.value_net(x).squeeze(-1).float(), mask


class ActorCritic(BasePolicy):
    """``kind: transformer``: text encoder + pooling + (standardise) + policy head + value head."""

    kind = "transformer"

    def __init__(self, cfg: PolicyConfig, num_actions: int, num_features: int, env_id: str = "",
                 agent: str = "", role: str | None = None, tokenizer=None, encoder: TextEncoder | None = None,
                 hf_config: dict[str, Any] | None = None) -> None:
        super().__init__(cfg, num_actions, num_features, env_id, agent, role)
        self.encoder = encoder if encoder is not None else build_encoder(cfg.encoder, tokenizer, hf_config)
        self.encoder.disable_dropout()  # rollout and update must see the same network
        self.tokenizer = self.encoder.tokenizer
        hsize, hh = self.encoder.hidden_size, cfg.head_hidden
        self.head = cfg.head
        if cfg.head == "linear":
            self.policy_head = head_mlp(hsize, hh, self.num_actions, cfg.head_gain)
        else:
            self.score_dim = hh if hh > 0 else hsize
            self.obs_proj = head_mlp(hsize, hh, self.score_dim, cfg.head_gain)
            self.act_proj = head_mlp(hsize, hh, self.score_dim, 1.0)
        self.value_head = head_mlp(hsize, hh, 1, 1.0)
        #: use the batch's own statistics even when stored ones exist (supervised training)
        self.batch_stats = False
        if cfg.standardize:
            self.register_buffer("std_ready", torch.zeros(()))  # 1 once calibrate() stored statistics
            self.register_buffer("obs_stats", torch.zeros(2, hsize))  # rows: mean, std
            if cfg.head == "scoring":
                self.register_buffer("act_stats", torch.zeros(2, hsize))
        self.to(self.encoder.device)

    @property
    def standardizes(self) -> bool:
        return bool(self.cfg.standardize)

    def last_policy_layer(self) -> nn.Linear:
        return (self.policy_head if self.head == "linear" else self.obs_proj)[-1]

    @staticmethod
    def optional_state_keys() -> tuple[str, ...]:
        return ("std_ready", "obs_stats", "act_stats")

    def _standardize(self, x: torch.Tensor, which: str) -> torch.Tensor:
        """``x`` standardised with the stored statistics ``which``, or over its own rows (see module doc)."""
        if self.batch_stats or not bool(self.std_ready):
            return standardize(x)
        stats = getattr(self, which)
        return (x - stats[0]) / (stats[1] + STD_EPS)

    @torch.no_grad()
    def calibrate(self, obs_list: Sequence[dict[str, Any]], max_texts: int = 8192, seed: int = 0) -> None:
        """Store the mean and std of the pooled features of ``obs_list``'s distinct texts (a random sample
        of at most ``max_texts``; for the scoring head also of the distinct action texts)."""
        if not self.cfg.standardize:
            return

        def stats(texts: list[str]) -> torch.Tensor:
            if len(texts) > max_texts:
                pick = np.random.default_rng(seed).choice(len(texts), max_texts, replace=False)
                texts = [texts[i] for i in sorted(pick)]
            feats = self.encoder.encode(texts).float()
            if feats.shape[0] < 2:
                raise ValueError(f"{self.where()}: calibrate needs at least 2 distinct texts, got {feats.shape[0]}")
            return torch.stack([feats.mean(0), feats.std(0, unbiased=False)])

        self.obs_stats.copy_(stats(list(dict.fromkeys(o["text"] for o in obs_list))))
        if self.head == "scoring":
            names = dict.fromkeys(n for o in obs_list for n in o.get("action_names") or ())
            self.act_stats.copy_(stats(list(names)))
        self.std_ready.fill_(1.0)

    def _split_standardize(self, feats: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
        """Per-row features of the texts indexed by ``inv``, standardised over their distinct texts."""
        if not self.cfg.standardize:
            return feats[inv]
        uniq, local = torch.unique(inv, return_inverse=True)
        return self._standardize(feats[uniq], "obs_stats")[local]

    def encode_obs(self, obs_list: Sequence[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(features [U, H], obs_rows [B], action_rows [B, A] or None)``: the distinct texts of the batch
        (observations, and for the scoring head every observation's action names) encoded in one encoder call,
        and which row of ``features`` each observation (and action name) reads."""
        B = len(obs_list)
        texts = [o["text"] for o in obs_list]
        if self.head == "scoring":
            names: list[str] = []
            for i, o in enumerate(obs_list):
                an = o.get("action_names")
                if an is None:
                    raise ValueError(f"{self.where()}: the scoring head needs obs['action_names'] "
                                     f"(env.action_names(agent)); observation {i} of the batch has none")
                if len(an) != self.num_actions:
                    raise ValueError(f"{self.where()}: observation {i} has {len(an)} action names, "
                                     f"expected {self.num_actions}")
                names.extend(an)
            texts = texts + names
        feats, inv = self.encoder.encode_unique(texts)  # one encoder call, each distinct text once
        act_rows = inv[B:].view(B, self.num_actions) if self.head == "scoring" else None
        return feats, inv[:B], act_rows

    def heads(self, feats: torch.Tensor, obs_rows: torch.Tensor, act_rows: torch.Tensor | None,
              mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(masked_logits [B, A], values [B])`` from encoded features (:meth:`encode_obs`; a PPO update of a
        frozen encoder passes the rollout's features with the rows of a minibatch)."""
        B = obs_rows.shape[0]
        h_obs = self._split_standardize(feats, obs_rows)
        values = self.value_head(h_obs).squeeze(-1)
        if act_rows is None:
            logits = self.policy_head(h_obs)
        else:
            uniq, local = torch.unique(act_rows.reshape(-1), return_inverse=True)  # each distinct action text once
            h_act = feats[uniq]
            if self.cfg.standardize:
                h_act = self._standardize(h_act, "act_stats")
            scores = self.obs_proj(h_obs) @ self.act_proj(h_act).T / math.sqrt(self.score_dim)  # [B, U]
            logits = scores.gather(1, local.view(B, self.num_actions))
        return logits.float().masked_fill(~mask, MASKED_LOGIT), values.float()

    def _forward(self, obs_list):
        mask = self.action_masks(obs_list)
        logits, values = self.heads(*self.encode_obs(obs_list), mask)
        return logits, values, mask


def make_policy(cfg: PolicyConfig, num_actions: int, num_features: int, env_id: str = "", agent: str = "",
                role: str | None = None, tokenizer=None, hf_config: dict[str, Any] | None = None
                ) -> ActorCritic | MLPPolicy:
    """A fresh policy of ``cfg`` for an action count and feature size (no env needed; ignores init_from)."""
    if cfg.kind == "mlp":
        return MLPPolicy(cfg, num_actions, num_features, env_id, agent, role)
    if cfg.head == "lm":
        policy: BasePolicy = LMPolicy(cfg, num_actions, num_features, env_id, agent, role, tokenizer=tokenizer,
                                      hf_config=hf_config)
    else:
        policy = ActorCritic(cfg, num_actions, num_features, env_id, agent, role, tokenizer=tokenizer,
                             hf_config=hf_config)
    policy.env_kwargs = {}  # an LLM encoder's prompt: the world's rules
    return policy


def env_spaces(env_id: str, agent: str | None = None, env_kwargs: dict[str, Any] | None = None
               ) -> tuple[str, str, int, int]:
    """``(agent, role, num_actions, num_features)`` of ``agent`` (default: the first) in world ``env_id``
    built with ``env_kwargs`` (action counts and feature sizes depend on them)."""
    from evoarena.envs import describe  # at call time: importing policies loads no world plugins

    info = describe(env_id, env_kwargs)
    if agent is None:
        agent = info.agents[0]
    if agent not in info.agents:
        raise ValueError(f"{env_id}: no agent {agent!r}; agents are {', '.join(info.agents)}")
    role = info.roles[agent]
    return agent, role, info.num_actions[role], info.num_features[role]


def build_policy(cfg: PolicyConfig, env_id: str, agent: str | None = None, tokenizer=None,
                 env_kwargs: dict[str, Any] | None = None) -> ActorCritic | MLPPolicy:
    """The policy of ``cfg`` for ``agent`` (default: the first agent) of world ``env_id``.

    Action count and feature size come from the world's spaces. With ``cfg.init_from`` the weights
    (and, when no ``tokenizer`` is given, the tokenizer) start from that checkpoint or HF folder.
    """
    agent, role, num_actions, num_features = env_spaces(env_id, agent, env_kwargs)
    if cfg.init_from and tokenizer is None and cfg.kind == "transformer":
        tokenizer = init_tokenizer(cfg.init_from)
    policy = make_policy(cfg, num_actions, num_features, env_id, agent, role, tokenizer)
    policy.env_kwargs = dict(env_kwargs or {})
    if cfg.init_from:
        init_weights_from(policy, cfg.init_from)
    return policy


#: ``BasePolicy`` is re-exported: code that checks ``isinstance(p, BasePolicy)`` imports it from here
__all__ = ["ActorCritic", "BasePolicy", "MLPPolicy", "build_policy", "env_spaces", "make_policy"]
