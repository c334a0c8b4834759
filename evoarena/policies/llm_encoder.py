"""A decoder-only language model as a text encoder (:class:`LLMEncoder`): ``encoder: {preset: smollm2}`` or
``encoder: {path: DIR}`` with a causal-LM folder (``architectures: [...ForCausalLM]``).

Every text is an observation inside a chat prompt (:mod:`evoarena.policies.prompts`). The shared part before
the observation (system message and the user header) runs once and its key/value cache is reused for every
observation; the pooled feature is the hidden state of the prompt's last token (``pooling: last``) or the mean
over the observation's tokens (``mean``). With ``train_mode: frozen`` features are cached per text in the
encoder and, across policies of one process whose weights are identical (same fingerprint), in a shared table:
the BC, PPO and evaluate stages of a chain encode each observation once. :func:`sync_world` gives a policy's
encoder the system message of its world and role.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evoarena.config import EncoderConfig
from evoarena.policies import numerics
from evoarena.policies.hf_models import ensure_pad_token, load_tokenizer, model_from_config, resolve_device
from evoarena.policies.llm_files import load_causal_lm, smollm2_folder
from evoarena.policies.prompts import chat_parts, llm_system_prompt
from evoarena.policies.text_encoder import CPU_CHUNK_TOKENS, GPU_CHUNK_TOKENS, TextEncoder

SHARED_FEATURES_MAX = 400_000  #: the process-wide frozen-feature table is cleared past this many entries
CANON_WIDTH = 8  #: frozen fills pad each observation to a multiple of this many tokens (see forward_canonical)

_SHARED_FEATURES: dict[tuple[str, str], torch.Tensor] = {}


def expand_cache(cache: Any, rows: torch.Tensor | None, batch: int) -> Any:
    """A new ``DynamicCache`` whose row ``i`` is ``cache``'s row ``rows[i]`` (``rows`` None: row 0 repeated
    ``batch`` times, as views)."""
    from transformers import DynamicCache

    data = []
    for layer in cache.layers:
        k, v = layer.keys, layer.values
        if rows is None:
            data.append((k.expand(batch, *k.shape[1:]), v.expand(batch, *v.shape[1:])))
        else:
            data.append((k.index_select(0, rows), v.index_select(0, rows)))
    return DynamicCache(ddp_cache_data=data)


class LLMEncoder(TextEncoder):
    """A decoder-only LM as a text encoder: every text is an observation inside a chat prompt whose shared
    prefix is run once (see the module doc). ``max_length`` bounds the observation's tokens."""

    def __init__(self, model: nn.Module, tokenizer, cfg: EncoderConfig, device: torch.device,
                 lm_head: nn.Linear | None = None) -> None:
        super().__init__(model, tokenizer, cfg, device)
        config = self.base_model().config
        if lm_head is None and not getattr(config, "tie_word_embeddings", False):
            lm_head = nn.Linear(self.hidden_size, int(config.vocab_size), bias=False)  # filled by a checkpoint
        self.lm_head = lm_head.requires_grad_(False).to(device) if lm_head is not None else None
        self.system = ""
        self._body: dict[str, list[int]] = {}
        self._prefix: list[int] = []
        self._suffix: list[int] = []
        self._prefix_kv: tuple[Any, Any] | None = None  #: (weights key, cache) of the shared prefix
        self._fingerprint: tuple[Any, str] | None = None
        self.set_system("")

    def set_system(self, system: str) -> None:
        """Use ``system`` as the system message (the world's rules); forgets what was cached for another."""
        if system == self.system and self._prefix:
            return
        before, after = chat_parts(self.tokenizer, system)
        tok = self.tokenizer
        self.system = system
        self._prefix = list(tok(before, add_special_tokens=False)["input_ids"])
        self._suffix = list(tok(after, add_special_tokens=False)["input_ids"])
        self._prefix_kv = None
        self._frozen.clear()

    @property
    def prefix_ids(self) -> list[int]:
        return list(self._prefix)

    def output_weight(self) -> torch.Tensor:
        """The LM head's weight ``[vocab, hidden]`` (the input embeddings when tied)."""
        if self.lm_head is not None:
            return self.lm_head.weight
        return self.base_model().get_input_embeddings().weight

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The observation part of each prompt: the text's tokens (cut to fit ``max_length``) and the chat
        template's tail (end of the user turn, start of the assistant turn)."""
        cache, keep = self._body, max(1, self.max_length - len(self._suffix))
        missing = [t for t in dict.fromkeys(texts) if t not in cache]
        if missing:
            if len(cache) + len(missing) > 200_000:
                cache.clear()
            enc = self.tokenizer(missing, add_special_tokens=False)["input_ids"]
            for t, ids in zip(missing, enc, strict=True):
                cache[t] = list(ids[:keep]) + self._suffix
        return [cache[t] for t in texts]

    def _trainable(self) -> bool:
        return torch.is_grad_enabled() and any(p.requires_grad for p in self.model.parameters())

    def prefix_cache(self, batch: int) -> Any:
        """The shared prefix's key/value cache for ``batch`` rows (computed once per weights while nothing
        trains; recomputed inside the graph when gradients flow into the model)."""
        ids = torch.tensor([self._prefix], dtype=torch.long, device=self._device)
        amp = {"device_type": self._device.type, "dtype": self._autocast_dtype or torch.bfloat16,
               "enabled": self._autocast_dtype is not None}
        if self._trainable():
            with torch.autocast(**amp):
                cache = self.model(input_ids=ids, use_cache=True).cache
            return expand_cache(cache, None, batch)
        key = numerics.weights_key(self.model.parameters())
        if self._prefix_kv is None or self._prefix_kv[0] != key:
            with torch.no_grad(), torch.autocast(**amp):
                self._prefix_kv = (key, self.model(input_ids=ids, use_cache=True).cache)
        return expand_cache(self._prefix_kv[1], None, batch)

    def run_prompts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, use_cache: bool = False
                    ) -> tuple[torch.Tensor, Any]:
        """Hidden states ``[B, L, H]`` of right-padded observation parts after the shared prefix (and the
        key/value cache of prefix + observation when ``use_cache``)."""
        B, L = input_ids.shape
        P = len(self._prefix)
        dev = input_ids.device
        full_mask = torch.cat([torch.ones(B, P, dtype=attention_mask.dtype, device=dev), attention_mask], 1)
        pos = (P + torch.arange(L, device=dev)).expand(B, L)
        with torch.autocast(dev.type, dtype=self._autocast_dtype or torch.bfloat16,
                            enabled=self._autocast_dtype is not None):
            out = self.model(input_ids=input_ids, attention_mask=full_mask, position_ids=pos,
                             cache=self.prefix_cache(B), use_cache=True)
        return out.last_hidden_state, (out.cache if use_cache else None)

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":  # a decoder has no CLS token: its first observation token
            return hidden[:, 0]
        return super().pool(hidden, mask, lengths)

    def forward_padded(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, cut: bool = True) -> torch.Tensor:
        lens = attention_mask.sum(1).long()
        width = max(int(lens.max()), 1) if lens.numel() and cut else input_ids.shape[1]
        input_ids, attention_mask = input_ids[:, :width].long(), attention_mask[:, :width].long()
        hidden, _ = self.run_prompts(input_ids, attention_mask)
        return self.pool(hidden, attention_mask, lens).float()

    # ------------------------------------------------------------ frozen features shared across policies

    def fingerprint(self) -> str:
        """SHA-256 of every weight and of the prompt set-up (recomputed only when a weight changed)."""
        key = self.weights_key() if self.train_mode == "frozen" else None
        if self._fingerprint is None or self._fingerprint[0] != key or key is None:
            h = hashlib.sha256()
            for name, p in sorted(self.model.state_dict().items()):
                t = p.detach().cpu().contiguous().reshape(-1)
                h.update(f"{name}|{t.dtype}|{tuple(p.shape)}|".encode())
                h.update(t.view(torch.uint8).numpy().tobytes())
            self._fingerprint = (key, h.hexdigest())
        setup = json.dumps([self.system, self.pooling, self.max_length, str(self._autocast_dtype),
                            self._device.type])
        return self._fingerprint[1] + hashlib.sha256(setup.encode()).hexdigest()

    def forward_canonical(self, texts: Sequence[str]) -> torch.Tensor:
        """Pooled outputs of ``texts``, each a function of its text alone (frozen fills, which policies of a
        process share and a resumed run re-computes): texts are grouped by their length rounded up to
        :data:`CANON_WIDTH` tokens, padded to it, and a group of one runs with a copy of itself."""
        ids = self.token_ids(texts)
        groups: dict[int, list[int]] = {}
        for i, x in enumerate(ids):
            groups.setdefault(-(-len(x) // CANON_WIDTH) * CANON_WIDTH, []).append(i)
        out = torch.empty(len(texts), self.hidden_size, device=self._device)
        budget = self.chunk_tokens or (GPU_CHUNK_TOKENS if self._device.type == "cuda" else CPU_CHUNK_TOKENS)
        for width, members in sorted(groups.items()):
            per = max(2, min(self.chunk_size, budget // width))
            for s in range(0, len(members), per):
                chunk = members[s:s + per]
                rows = [ids[i] for i in chunk] * (2 if len(chunk) == 1 else 1)
                arr = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, x in enumerate(rows):
                    arr[r, : len(x)] = torch.tensor(x)
                    mask[r, : len(x)] = 1
                feats = self.forward_padded(arr.to(self._device), mask.to(self._device), cut=False)
                out[torch.tensor(chunk, device=self._device)] = feats[: len(chunk)]
        return out

    def encode_unique(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`TextEncoder.encode_unique`; frozen: texts not cached here come from the process-wide table
        of policies with the same fingerprint, or are computed by :meth:`forward_canonical` and put in both."""
        if self.train_mode != "frozen":
            return super().encode_unique(texts)
        self._drop_stale()
        missing = [t for t in dict.fromkeys(texts) if t not in self._frozen]
        if missing:
            fp = self.fingerprint()
            got = {t: _SHARED_FEATURES[(fp, t)] for t in missing if (fp, t) in _SHARED_FEATURES}
            new = [t for t in missing if t not in got]
            if new:
                with torch.no_grad():
                    got.update(zip(new, self.forward_canonical(new), strict=True))
                if len(_SHARED_FEATURES) + len(new) > SHARED_FEATURES_MAX:
                    _SHARED_FEATURES.clear()
                _SHARED_FEATURES.update({(fp, t): got[t] for t in new})
            self._frozen.update({t: got[t].to(self._device) for t in missing})
        return super().encode_unique(texts)

    def clear_cache(self) -> None:
        super().clear_cache()
        self._body.clear()
        self._prefix_kv = None
        self._fingerprint = None

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_prefix_kv"] = None
        return state


def build_llm_encoder(cfg: EncoderConfig, tokenizer=None, hf_config: dict[str, Any] | None = None) -> LLMEncoder:
    """The :class:`LLMEncoder` of ``preset: smollm2`` or of a causal-LM folder (``hf_config``: rebuild the
    architecture with fresh weights; a checkpoint sets them)."""
    device = resolve_device(cfg.device)
    folder = smollm2_folder() if cfg.preset == "smollm2" else Path(str(cfg.path)).expanduser()
    if tokenizer is None:
        tokenizer = load_tokenizer(folder)
    ensure_pad_token(tokenizer)
    if hf_config is not None:
        model, lm_head = model_from_config(hf_config, tiny=False), None
    else:
        model, lm_head = load_causal_lm(folder)
    return LLMEncoder(model, tokenizer, cfg, device, lm_head)


def sync_world(policy: nn.Module) -> None:
    """Give an LLM encoder of ``policy`` its system message (call after env id/role/kwargs are known)."""
    enc = getattr(policy, "encoder", None)
    if isinstance(enc, LLMEncoder):
        system = llm_system_prompt(policy)
        if system is not None:
            enc.set_system(system)
