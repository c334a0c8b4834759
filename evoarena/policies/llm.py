"""LLM-backed policies: ``head: lm`` (:class:`LMPolicy`), an instruction-tuned causal language model as the
agent's backbone (``encoder: {preset: smollm2}`` or a causal-LM folder; see :mod:`~evoarena.policies.llm_files`
for the model files, :mod:`~evoarena.policies.prompts` for the prompts, :mod:`~evoarena.policies.llm_encoder`
for the encoder).

The policy acts the way LM agents act in GLAM: the logit of each legal action is the model's log-likelihood of
that action's text (``env.action_names(agent)``) followed by the end-of-turn token, as the assistant's answer to
the prompt. The prompt's forward pass is shared by all its actions (its key/value cache is gathered per action
row). A value head reads the pooled feature. So the agent plays before any training, and behaviour cloning or
PPO can tune it (LoRA on a GPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evoarena.config import PolicyConfig
from evoarena.policies import numerics
from evoarena.policies.base import MASKED_LOGIT, BasePolicy, head_mlp
from evoarena.policies.encoder import build_encoder
from evoarena.policies.hf_models import EncoderLoadError
from evoarena.policies.llm_encoder import LLMEncoder, expand_cache
from evoarena.policies.prompts import end_of_turn_ids
from evoarena.policies.text_encoder import TextEncoder


class LMPolicy(BasePolicy):
    """``head: lm``: the language model scores each legal action's text; a value head on the pooled feature."""

    kind = "transformer"

    def __init__(self, cfg: PolicyConfig, num_actions: int, num_features: int, env_id: str = "",
                 agent: str = "", role: str | None = None, tokenizer=None, encoder: TextEncoder | None = None,
                 hf_config: dict[str, Any] | None = None) -> None:
        super().__init__(cfg, num_actions, num_features, env_id, agent, role)
        enc = encoder if encoder is not None else build_encoder(cfg.encoder, tokenizer, hf_config)
        if not isinstance(enc, LLMEncoder):
            raise EncoderLoadError("head lm needs a causal language model: encoder preset smollm2 or a path to "
                                   "a causal-LM folder (config.json architectures ...ForCausalLM)")
        self.encoder = enc
        self.encoder.disable_dropout()
        self.tokenizer = enc.tokenizer
        self.head = "lm"
        self.value_head = head_mlp(enc.hidden_size, cfg.head_hidden, 1, 1.0)
        self.register_buffer("logit_scale", torch.ones(()))  # soften() divides it
        self._end = end_of_turn_ids(enc.tokenizer)
        self._action_ids: dict[str, list[int]] = {}
        self._scores: dict[tuple[str, tuple[str, ...]], tuple[torch.Tensor, torch.Tensor]] = {}
        self._scores_key: Any = None
        self.to(enc.device)

    @staticmethod
    def optional_state_keys() -> tuple[str, ...]:
        return ("logit_scale",)

    def last_policy_layer(self) -> nn.Linear:
        raise NotImplementedError("head lm: the logits are log-likelihoods; soften() scales them instead")

    @torch.no_grad()
    def soften(self, temperature: float) -> None:
        self.logit_scale.div_(temperature)

    def action_token_ids(self, name: str) -> list[int]:
        """The answer's tokens: the action text and the end-of-turn token."""
        ids = self._action_ids.get(name)
        if ids is None:
            ids = list(self.tokenizer(name, add_special_tokens=False)["input_ids"]) + self._end
            self._action_ids[name] = ids
        return ids

    def score(self, texts: Sequence[str], candidates: Sequence[Sequence[str]]
              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(pooled [B, H], [log p(candidate | prompt) for each candidate of row b])``: one forward of the
        distinct observations (after the shared prefix), then one of every (observation, candidate) answer
        reading the observation's key/value cache."""
        enc = self.encoder
        dev = enc.device
        ids = enc.token_ids(texts)
        lens = torch.tensor([len(x) for x in ids], device=dev)
        arr = torch.full((len(ids), int(lens.max())), enc.pad_id, dtype=torch.long)
        for i, x in enumerate(ids):
            arr[i, : len(x)] = torch.tensor(x)
        mask = (torch.arange(arr.shape[1])[None, :] < lens.cpu()[:, None]).long().to(dev)
        hidden, cache = enc.run_prompts(arr.to(dev), mask, use_cache=True)
        pooled = enc.pool(hidden, mask, lens).float()
        last = hidden[torch.arange(len(ids), device=dev), lens - 1].float()
        weight = enc.output_weight().float()
        first_logp = torch.log_softmax(last @ weight.T, -1)  # [B, V]: the answer's first token
        rows = [(b, self.action_token_ids(c)) for b, cs in enumerate(candidates) for c in cs]
        out: list[torch.Tensor] = []
        if not rows:
            return pooled, [torch.zeros(0, device=dev) for _ in candidates]
        row_b = torch.tensor([b for b, _ in rows], device=dev)
        first_tok = torch.tensor([a[0] for _, a in rows], device=dev)
        total = first_logp[row_b, first_tok]
        rest = [a[1:] for _, a in rows]
        width = max(len(a) for _, a in rows)
        if width > 1:  # the answer's tokens (but the last) as inputs after prompt + observation
            inp = torch.full((len(rows), width - 1), enc.pad_id, dtype=torch.long)
            tgt = torch.zeros((len(rows), width - 1), dtype=torch.long)
            amask = torch.zeros((len(rows), width - 1), dtype=torch.long)
            for r, (_, a) in enumerate(rows):
                inp[r, : len(a) - 1] = torch.tensor(a[:-1])
                tgt[r, : len(a) - 1] = torch.tensor(rest[r])
                amask[r, : len(a) - 1] = 1
            inp, tgt, amask = inp.to(dev), tgt.to(dev), amask.to(dev)
            P = len(enc.prefix_ids)
            full = torch.cat([torch.ones(len(rows), P, dtype=torch.long, device=dev), mask[row_b], amask], 1)
            pos = P + lens[row_b][:, None] + torch.arange(width - 1, device=dev)[None, :]
            with torch.autocast(dev.type, dtype=enc.autocast_dtype or torch.bfloat16,
                                enabled=enc.autocast_dtype is not None):
                h = enc.model(input_ids=inp, attention_mask=full, position_ids=pos,
                              cache=expand_cache(cache, row_b, len(rows)), use_cache=True).last_hidden_state
            logp = torch.log_softmax(h.float() @ weight.T, -1)
            total = total + (logp.gather(2, tgt[..., None]).squeeze(-1) * amask).sum(1)
        start = 0
        for cs in candidates:
            out.append(total[start:start + len(cs)])
            start += len(cs)
        return pooled, out

    def _cached_scores(self, obs_list: Sequence[dict[str, Any]], legal: list[list[int]]
                       ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """:meth:`score` of each distinct (text, legal actions) once; while nothing trains, results are kept
        per (text, legal action names) for as long as the weights do not change."""
        keys = [(o["text"], tuple(o["action_names"][j] for j in lg)) for o, lg in zip(obs_list, legal)]
        caching = not any(p.requires_grad for p in self.encoder.model.parameters()) or not torch.is_grad_enabled()
        wkey = numerics.weights_key(self.encoder.model.parameters())
        if wkey != self._scores_key:
            self._scores.clear()
            self._scores_key = wkey
        uniq = list(dict.fromkeys(keys))
        todo = [k for k in uniq if k not in self._scores] if caching else uniq
        fresh: dict[tuple[str, tuple[str, ...]], tuple[torch.Tensor, torch.Tensor]] = {}
        if todo:
            pooled, scores = self.score([k[0] for k in todo], [list(k[1]) for k in todo])
            fresh = {k: (pooled[i], scores[i]) for i, k in enumerate(todo)}
            if caching:
                if len(self._scores) > 200_000:
                    self._scores.clear()
                self._scores.update({k: (p.detach(), s.detach()) for k, (p, s) in fresh.items()})
        got = [fresh.get(k) or self._scores[k] for k in keys]
        return torch.stack([g[0] for g in got]), [g[1] for g in got]

    def _forward(self, obs_list):
        mask = self.action_masks(obs_list)
        for i, o in enumerate(obs_list):
            names = o.get("action_names")
            if names is None or len(names) != self.num_actions:
                raise ValueError(f"{self.where()}: the lm head needs obs['action_names'] with {self.num_actions} "
                                 f"names (env.action_names(agent)); observation {i} of the batch has "
                                 f"{'none' if names is None else len(names)}")
        legal = [np.flatnonzero(m).tolist() for m in mask.cpu().numpy()]
        pooled, scores = self._cached_scores(obs_list, legal)
        logits = torch.full(mask.shape, MASKED_LOGIT, device=mask.device)
        rows = torch.tensor([b for b, lg in enumerate(legal) for _ in lg], device=mask.device)
        cols = torch.tensor([j for lg in legal for j in lg], device=mask.device)
        logits = logits.index_put((rows, cols), torch.cat(scores).float() * self.logit_scale)
        values = self.value_head(pooled).squeeze(-1).float()
        return logits, values, mask


def model_title(cfg: PolicyConfig) -> str:
    """A short name of a policy config's model, e.g. ``SmolLM2-135M-Instruct (lm head)``."""
    enc = cfg.encoder
    model = {"smollm2": "SmolLM2-135M-Instruct", "minilm": "all-MiniLM-L6-v2", "tiny": "tiny BERT"}.get(
        str(enc.preset), Path(str(enc.path)).name)
    return f"{model} ({cfg.head} head)"
