"""Stable-Baselines3 adapter: evoarena's text encoder as an SB3 features extractor.

SB3 needs tensors, the worlds give text. :class:`TokenizedObs` turns a world observation into
fixed-width token tensors (``input_ids``, ``attention_mask``, plus the ``action_mask``), using the
policy's own tokenizer (:class:`~evoarena.policies.encoder.TokenCache`, cached per text).
:class:`EncoderExtractor` runs evoarena's :class:`~evoarena.policies.encoder.TextEncoder` on them
(cut to the batch's longest text, same transformer, same pooling), so an SB3 policy reads the same
texts with the same network. :func:`share_heads` makes an SB3 actor-critic policy use an evoarena
:class:`~evoarena.policies.actor_critic.ActorCritic`'s own heads, so what SB3 trains *is* the
evoarena policy (evaluation, checkpoints and ``ckpt:PATH`` agents work unchanged).

Needs the optional extra ``sb3`` (``pip install evoarena[sb3]``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from evoarena.policies.text_encoder import TextEncoder, TokenCache


def check_sb3_policy(policy: Any, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` unless ``policy`` can be trained through SB3 (a transformer
    policy with a ``linear`` head and no standardisation)."""
    cfg = getattr(policy, "cfg", None)
    if cfg is None or cfg.kind != "transformer" or policy.encoder is None:
        raise ValueError(f"{where}: the SB3 path needs kind: transformer (its encoder is the SB3 features "
                         f"extractor); got kind {getattr(cfg, 'kind', '?')!r}")
    if cfg.head != "linear":
        raise ValueError(f"{where}: the SB3 path needs head: linear (SB3 policies have one logit per action); "
                         f"got head {cfg.head!r}")
    if cfg.standardize:
        raise ValueError(f"{where}: the SB3 path does not support standardize: true (SB3 has no per-rollout "
                         "statistics); set standardize: false or use ppo.backend: evoarena")


class TokenizedObs:
    """World observation dict -> ``{"input_ids": int64[L], "attention_mask": int8[L], "action_mask": int8[A]}``.

    Picklable (holds a tokenizer, no model), so SuperSuit can copy it into every env."""

    def __init__(self, tokens: TokenCache, pad_id: int, num_actions: int, vocab_size: int) -> None:
        self.tokens, self.pad_id, self.num_actions = tokens, int(pad_id), int(num_actions)
        self.width = tokens.max_length
        self.space = spaces.Dict({
            "input_ids": spaces.Box(0, max(int(vocab_size) - 1, 1), shape=(self.width,), dtype=np.int64),
            "attention_mask": spaces.Box(0, 1, shape=(self.width,), dtype=np.int8),
            "action_mask": spaces.Box(0, 1, shape=(self.num_actions,), dtype=np.int8),
        })
        self._rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def for_encoder(cls, encoder: TextEncoder, num_actions: int) -> TokenizedObs:
        return cls(encoder.token_cache(), encoder.pad_id, num_actions, len(encoder.tokenizer))

    def __call__(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        text = obs["text"]
        row = self._rows.get(text)
        if row is None:
            ids = self.tokens([text])[0]
            arr = np.full(self.width, self.pad_id, dtype=np.int64)
            arr[: len(ids)] = ids
            mask = np.zeros(self.width, dtype=np.int8)
            mask[: len(ids)] = 1
            if len(self._rows) > 200_000:
                self._rows.clear()
            row = self._rows[text] = (arr, mask)
        return {"input_ids": row[0].copy(), "attention_mask": row[1].copy(),
                "action_mask": np.asarray(obs["action_mask"], dtype=np.int8).copy()}


class EncoderExtractor(BaseFeaturesExtractor):
    """SB3 features extractor: evoarena's text encoder on ``input_ids`` / ``attention_mask``."""

    def __init__(self, observation_space: spaces.Dict, encoder: TextEncoder) -> None:
        super().__init__(observation_space, features_dim=encoder.hidden_size)
        self.encoder = encoder

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.encoder.forward_padded(observations["input_ids"], observations["attention_mask"])


def sb3_policy_kwargs(policy: Any, adam_eps: float = 1e-5) -> dict[str, Any]:
    """``policy_kwargs`` of an SB3 ``MultiInputPolicy`` whose features extractor is ``policy``'s encoder
    (no extra MLP, no re-initialisation of the encoder's weights)."""
    return {"features_extractor_class": EncoderExtractor, "features_extractor_kwargs": {"encoder": policy.encoder},
            "net_arch": [], "ortho_init": False, "share_features_extractor": True, "normalize_images": False,
            "optimizer_kwargs": {"eps": adam_eps}}


def share_heads(sb3_policy: Any, policy: Any, lr: float) -> None:
    """Make ``sb3_policy`` (built with :func:`sb3_policy_kwargs`) use ``policy``'s policy and value heads and
    rebuild its optimizer over the shared parameters."""
    sb3_policy.action_net = policy.policy_head
    sb3_policy.value_net = policy.value_head
    params = [p for p in sb3_policy.parameters() if p.requires_grad]
    sb3_policy.optimizer = sb3_policy.optimizer_class(params, lr=lr, **sb3_policy.optimizer_kwargs)
