"""Actor-critic policies: ``build_policy(cfg, env_id)`` -> :class:`ActorCritic` or :class:`MLPPolicy`.

An observation is the world's dict ``{"text", "features", "action_mask"}``, plus ``"action_names"``
(one text per action, from ``env.action_names(agent)``) for the scoring head. Both policies share
one interface:

- ``forward_obs(obs_list) -> (masked_logits [B, A], values [B])``: illegal actions get a logit of
  ``finfo(float32).min / 2`` (never NaN, never sampled);
- ``act(obs_list, greedy=False, generator=None) -> ActOutput`` under ``no_grad``;
- ``evaluate(obs_list, actions) -> (logp, entropy, values)`` with gradients, for PPO updates
  (entropy over the legal actions only).

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
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from evoarena.config import PolicyConfig
from evoarena.policies.encoder import TextEncoder, build_encoder, resolve_device

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


def _init_linear(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def head_mlp(inp: int, hidden: int, out: int, out_gain: float) -> nn.Sequential:
    """``Linear`` (or ``Linear-Tanh-Linear`` when ``hidden`` > 0) with orthogonal init."""
    if hidden <= 0:
        return nn.Sequential(_init_linear(nn.Linear(inp, out), out_gain))
    return nn.Sequential(_init_linear(nn.Linear(inp, hidden), math.sqrt(2)), nn.Tanh(),
                         _init_linear(nn.Linear(hidden, out), out_gain))


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
            from evoarena.policies.llm import sync_world

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
                layers += [_init_linear(nn.Linear(width, h), math.sqrt(2)), nn.Tanh()]
                width = h
            return layers, width

        pl, pw = trunk()
        self.policy_net = nn.Sequential(*pl, _init_linear(nn.Linear(pw, self.num_actions), cfg.head_gain))
        vl, vw = trunk()
        self.value_net = nn.Sequential(*vl, _init_linear(nn.Linear(vw, 1), 1.0))
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
        from evoarena.policies.llm import LMPolicy

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
    from evoarena.envs import make

    env = make(env_id, **(env_kwargs or {}))
    try:
        agents = list(env.possible_agents)
        if agent is None:
            agent = agents[0]
        if agent not in agents:
            raise ValueError(f"{env_id}: no agent {agent!r}; agents are {', '.join(agents)}")
        num_actions = int(env.action_space(agent).n)
        num_features = int(env.observation_space(agent)["features"].shape[0])
        role = env.role(agent) if hasattr(env, "role") else agent
    finally:
        env.close()
    return agent, role, num_actions, num_features


def build_policy(cfg: PolicyConfig, env_id: str, agent: str | None = None, tokenizer=None,
                 env_kwargs: dict[str, Any] | None = None) -> ActorCritic | MLPPolicy:
    """The policy of ``cfg`` for ``agent`` (default: the first agent) of world ``env_id``.

    Action count and feature size come from the world's spaces. With ``cfg.init_from`` the weights
    (and, when no ``tokenizer`` is given, the tokenizer) start from that checkpoint or HF folder.
    """
    agent, role, num_actions, num_features = env_spaces(env_id, agent, env_kwargs)
    if cfg.init_from and tokenizer is None and cfg.kind == "transformer":
        from evoarena.policies.io import init_tokenizer

        tokenizer = init_tokenizer(cfg.init_from)
    policy = make_policy(cfg, num_actions, num_features, env_id, agent, role, tokenizer)
    policy.env_kwargs = dict(env_kwargs or {})
    if cfg.init_from:
        from evoarena.policies.io import init_weights_from

        init_weights_from(policy, cfg.init_from)
    return policy
