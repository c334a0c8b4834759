"""The text encoder of BERT-family models: :class:`TextEncoder` maps texts to pooled float32 vectors.

``TextEncoder.encode(texts)`` encodes each distinct text once (sorted by length, padded to the
longest text of each chunk) and scatters the pooled vectors back; token ids are cached per text
(:class:`TokenCache`). Training modes: ``full``, ``lora`` (peft adapters on the attention query/value
projections), ``frozen`` (no gradients; pooled outputs cached per text) and ``top_k`` (the top k layers and
anything after them, e.g. the pooler or a final norm, are trained). In ``top_k`` mode a BERT-family
encoder caches the output of its frozen lower layers per text, so a text seen before (a PPO update
re-reads its rollout's texts every epoch) runs only the top k layers; the result is the same function.
Both caches are keyed on :meth:`TextEncoder.weights_key` (identity and version counter of the weights they
depend on), so a cached output is never served after those weights changed (optimizer step, load, mode switch).
``autocast: auto`` on a CPU follows :func:`cpu_bf16_faster`. Encoders are built by
:func:`evoarena.policies.encoder.build_encoder`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask

from evoarena.config import EncoderConfig
from evoarena.policies import numerics
from evoarena.policies.hf_models import EncoderLoadError, ensure_pad_token, layer_list, lora_target_modules

TRAIN_MODE_KEYS = ("train_mode", "top_k", "lora_r", "lora_alpha", "lora_dropout")  #: how an encoder is trained
MAX_CACHE_ENTRIES = 200_000  #: token-id and frozen-output caches are cleared when they grow past this
DEFAULT_CHUNK = 1024  #: at most this many texts per forward pass inside one ``encode`` call
ACT_CACHE_BYTES = 1 << 29  #: top_k: cached frozen-layer activations are cleared past this many bytes
CPU_CHUNK_TOKENS = 2048  #: and at most this many (padded) tokens: small chunks are faster on CPU
GPU_CHUNK_TOKENS = 65536


def cpu_bf16_faster(model: nn.Module, vocab_size: int, reps: int = 3) -> bool:
    """``autocast: auto`` on a CPU: True only if a short probe (a forward pass of 16 texts x 32 tokens, fp32
    and bf16 alternately, median of ``reps`` after a warm-up) measures bf16 at least 10% faster. Decided once
    per architecture and thread count in a run, and recorded (:mod:`evoarena.policies.numerics`). (Measured
    on this project's AVX2 machine with torch 2.13: bf16 is faster for ``tiny``, 1.5x in rollout forwards and
    1.2x in PPO learn steps.)"""
    config = getattr(model, "config", None)
    key = (f"{type(model).__name__}/h{getattr(config, 'hidden_size', 0)}/l{getattr(config, 'num_hidden_layers', 0)}"
           f"/i{getattr(config, 'intermediate_size', 0)}/t{torch.get_num_threads()}")

    def probe() -> bool:
        gen = torch.Generator().manual_seed(0)
        ids = torch.randint(5, max(vocab_size, 6), (16, 32), generator=gen)
        mask = torch.ones_like(ids)
        times: dict[bool, list[float]] = {False: [], True: []}
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for _ in range(reps + 1):
                for use in (False, True):
                    t0 = time.perf_counter()
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use):
                        model(input_ids=ids, attention_mask=mask)
                    times[use].append(time.perf_counter() - t0)
        model.train(was_training)
        fp32, bf16 = (float(np.median(times[u][1:])) for u in (False, True))  # first pass: warm-up
        return bf16 < 0.9 * fp32

    return numerics.bf16_verdict(key, probe)


class TokenCache:
    """Token ids of texts (special tokens added, cut to ``max_length``), cached per distinct text.

    Holds only the tokenizer, so it can be copied into env wrappers (the SB3 path) cheaply."""

    def __init__(self, tokenizer, max_length: int, empty_id: int) -> None:
        self.tokenizer, self.max_length, self.empty_id = tokenizer, int(max_length), int(empty_id)
        self._ids: dict[str, list[int]] = {}
        self.seconds = 0.0  #: time spent tokenising (cache misses and look-ups), for perf/tokenize_seconds

    def __call__(self, texts: Sequence[str]) -> list[list[int]]:
        t0 = time.perf_counter()
        cache = self._ids
        missing = [t for t in dict.fromkeys(texts) if t not in cache]
        if missing:
            if len(cache) + len(missing) > MAX_CACHE_ENTRIES:  # full: start over, keeping this call's texts
                kept = {t: cache[t] for t in texts if t in cache}
                cache.clear()
                cache.update(kept)
            enc = self.tokenizer(list(missing), truncation=True, max_length=self.max_length,
                                 add_special_tokens=True)["input_ids"]
            for t, ids in zip(missing, enc, strict=True):
                cache[t] = list(ids) if ids else [self.empty_id]
        out = [cache[t] for t in texts]
        self.seconds += time.perf_counter() - t0
        return out

    def clear(self) -> None:
        self._ids.clear()


class TextEncoder(nn.Module):
    """A Hugging Face model + tokenizer that maps texts to pooled float32 vectors ``[N, hidden_size]``."""

    def __init__(self, model: nn.Module, tokenizer, cfg: EncoderConfig, device: torch.device) -> None:
        super().__init__()
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.pooling = cfg.pooling
        self.train_mode = cfg.train_mode
        config = model.config
        self.hidden_size = int(getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0)
                               or config.d_model)
        limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        self.max_length = min(cfg.max_length, int(limit)) if limit else cfg.max_length
        self.chunk_size = DEFAULT_CHUNK
        self.chunk_tokens: int | None = None  #: padded-token budget of a chunk (None: by device)
        ensure_pad_token(tokenizer)
        self.pad_id = int(tokenizer.pad_token_id)
        self._empty_id = next(
            int(i) for i in (tokenizer.bos_token_id, tokenizer.eos_token_id, self.pad_id) if i is not None
        )
        self._tokens = TokenCache(tokenizer, self.max_length, self._empty_id)
        self._frozen: dict[str, torch.Tensor] = {}
        self._acts: dict[str, torch.Tensor] = {}  #: top_k: frozen lower layers' output per text
        self._acts_bytes = 0
        self._cache_key: tuple[tuple[int, int], ...] = ()  #: weights the cached outputs were computed with
        self.model = self._apply_train_mode(model, cfg).to(device)
        self._device = device
        self._split = self._split_point()
        bf16 = cfg.autocast == "bf16" or (cfg.autocast == "auto" and (
            device.type == "cuda" or (device.type == "cpu" and cpu_bf16_faster(self.model, len(tokenizer)))))
        self._autocast_dtype: torch.dtype | None = torch.bfloat16 if bf16 else None
        if self.train_mode == "frozen":
            self.model.eval()

    # ------------------------------------------------------------------ set-up

    def _apply_train_mode(self, model: nn.Module, cfg: EncoderConfig) -> nn.Module:
        mode = cfg.train_mode
        if mode == "full":
            return model
        if mode == "frozen":
            model.requires_grad_(False)
            return model
        if mode == "top_k":
            model.requires_grad_(False)
            stack_name, stack = layer_list(model)
            if cfg.top_k > len(stack):
                raise EncoderLoadError(f"train_mode top_k: top_k={cfg.top_k} but the encoder has "
                                       f"{len(stack)} layers")
            for layer in stack[len(stack) - cfg.top_k:]:
                layer.requires_grad_(True)
            # everything registered after the layer stack (pooler, final norm) is trained too
            names = [n for n, _ in model.named_parameters()]
            prefix = stack_name + "."
            last = max(i for i, n in enumerate(names) if n.startswith(prefix))
            params = dict(model.named_parameters())
            for n in names[last + 1:]:
                params[n].requires_grad_(True)
            return model
        # lora
        from peft import LoraConfig, get_peft_model

        targets = lora_target_modules(model)
        lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=targets, bias="none",
                          fan_in_fan_out="c_attn" in targets)  # GPT-2 Conv1D stores W transposed
        with warnings.catch_warnings():  # peft calls a deprecated transformers property
            warnings.simplefilter("ignore", FutureWarning)
            return get_peft_model(model, lcfg)

    def set_train_mode(self, cfg: EncoderConfig) -> None:
        """Switch a fully trained encoder (e.g. one loaded from a checkpoint) to ``cfg.train_mode``
        (frozen, top_k, lora; with their knobs from ``cfg``)."""
        if self.train_mode != "full":
            raise EncoderLoadError(f"train_mode {cfg.train_mode!r}: only an encoder trained in full can "
                                   f"switch mode; this one is {self.train_mode!r}")
        if cfg.train_mode == "full":
            return
        self.cfg = self.cfg.model_copy(update={k: getattr(cfg, k) for k in TRAIN_MODE_KEYS})
        self.model = self._apply_train_mode(self.model, self.cfg).to(self._device)
        self.train_mode = self.cfg.train_mode
        self._frozen.clear()
        self._clear_acts()
        self._split = self._split_point()
        if self.train_mode == "frozen":
            self.model.eval()

    @property
    def device(self) -> torch.device:
        return self._device

    def base_model(self) -> nn.Module:
        """The underlying Hugging Face model (unwrapped from peft in lora mode)."""
        return self.model.get_base_model() if self.train_mode == "lora" else self.model

    def hf_config_dict(self) -> dict[str, Any]:
        """The encoder's Hugging Face config as a JSON-able dict (rebuilds the architecture offline)."""
        return self.base_model().config.to_dict()

    def disable_dropout(self) -> None:
        """Set every dropout probability to 0 (RL: rollout and update must see the same network)."""
        for m in self.model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
        config = self.base_model().config
        for key in ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop"):
            if hasattr(config, key):
                setattr(config, key, 0.0)

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode)
        if self.train_mode == "frozen":
            self.model.eval()
        return self

    def clear_cache(self) -> None:
        """Forget cached token ids and frozen outputs (e.g. after loading new weights)."""
        self._tokens.clear()
        self.drop_cached_outputs()

    def drop_cached_outputs(self) -> None:
        """Forget the cached frozen outputs and lower-layer activations (token ids are kept). A cached output
        carries the last bits of the batch it was first computed in, so PPO drops them at every checkpoint:
        a run resumed from it then re-fills them exactly as the uninterrupted run does."""
        self._frozen.clear()
        self._clear_acts()

    # ------------------------------------------------------------------ encoding

    def __getstate__(self) -> dict[str, Any]:  # copies (snapshots, references) start without cached activations
        state = self.__dict__.copy()
        state["_acts"], state["_acts_bytes"] = {}, 0
        return state

    def _clear_acts(self) -> None:
        self._acts.clear()
        self._acts_bytes = 0

    def weights_key(self) -> tuple[tuple[int, int], ...]:
        """Identity and in-place version counter of every parameter the cached outputs depend on (all of
        them when frozen, the frozen lower ones in top_k): an optimizer step, ``load_state_dict`` or any other
        in-place change bumps a version, a replaced parameter changes identity."""
        params = self.model.parameters()
        if self.train_mode != "frozen":
            params = (p for p in params if not p.requires_grad)
        return numerics.weights_key(params)

    def _drop_stale(self) -> None:
        """Clear the cached frozen outputs and activations if the weights changed since they were computed."""
        key = self.weights_key()
        if key != self._cache_key:
            self._frozen.clear()
            self._clear_acts()
            self._cache_key = key

    def _split_point(self) -> int | None:
        """top_k on a BERT-family model (embeddings + ``encoder.layer`` stack, bidirectional): how many
        lower layers are frozen and cached; None when there is nothing to cache or no such structure."""
        if self.train_mode != "top_k":
            return None
        m = self.model
        layers = getattr(getattr(m, "encoder", None), "layer", None)
        if (not isinstance(layers, nn.ModuleList) or not hasattr(m, "embeddings")
                or getattr(m.config, "is_decoder", False)):
            return None
        frozen = len(layers) - int(self.cfg.top_k)
        return frozen if frozen > 0 else None

    def _layers(self, hidden: torch.Tensor, mask: torch.Tensor, start: int, stop: int | None) -> torch.Tensor:
        m = self.model
        attn = create_bidirectional_mask(config=m.config, inputs_embeds=hidden, attention_mask=mask)
        for layer in m.encoder.layer[start:stop]:
            out = layer(hidden, attn)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def _forward_split(self, texts: Sequence[str], ids_list: list[list[int]]) -> torch.Tensor:
        """Pooled outputs via the cached frozen lower layers and the trained top layers (top_k mode)."""
        dev, split = self._device, int(self._split or 0)
        lengths = torch.tensor([len(x) for x in ids_list], dtype=torch.long)
        width = int(lengths.max())
        mask = (torch.arange(width)[None, :] < lengths[:, None]).long().to(dev)
        amp = {"device_type": dev.type, "dtype": self._autocast_dtype or torch.bfloat16,
               "enabled": self._autocast_dtype is not None}
        self._drop_stale()
        missing = [j for j, t in enumerate(texts) if t not in self._acts]
        if missing:
            arr = torch.full((len(missing), width), self.pad_id, dtype=torch.long)
            for r, j in enumerate(missing):
                arr[r, : len(ids_list[j])] = torch.tensor(ids_list[j])
            with torch.no_grad(), torch.autocast(**amp):
                ids_m, mask_m = arr.to(dev), mask[missing]
                low = self._layers(self.model.embeddings(input_ids=ids_m), mask_m, 0, split).float()
            size = low[0].numel() * 4
            if self._acts_bytes + size * len(missing) > ACT_CACHE_BYTES:
                self._clear_acts()
            for r, j in enumerate(missing):
                self._acts[texts[j]] = low[r, : len(ids_list[j])].clone()
            self._acts_bytes += size * len(missing)
        hidden = nn.utils.rnn.pad_sequence([self._acts[t] for t in texts], batch_first=True)
        with torch.autocast(**amp):
            top = self._layers(hidden, mask, split, None)
            pooled = self.pool(top, mask, lengths.to(dev))
        return pooled.float()

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (with special tokens, cut to ``max_length``), cached per text."""
        return self._tokens(texts)

    @property
    def tokenize_seconds(self) -> float:
        """Seconds this encoder spent tokenising so far."""
        return self._tokens.seconds

    def token_cache(self) -> TokenCache:
        """A fresh :class:`TokenCache` with this encoder's tokenizer and limits (no model inside)."""
        return TokenCache(self.tokenizer, self.max_length, self._empty_id)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype forward passes autocast to (bf16), or None for fp32."""
        return self._autocast_dtype

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "last":
            idx = (lengths - 1).clamp(min=0)
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)

    def _forward_ids(self, ids_list: list[list[int]]) -> torch.Tensor:
        """Pooled float32 outputs of token-id lists, padded (right) to the longest of the list."""
        lengths = np.fromiter((len(x) for x in ids_list), dtype=np.int64, count=len(ids_list))
        width = int(lengths.max())
        arr = np.full((len(ids_list), width), self.pad_id, dtype=np.int64)
        for i, ids in enumerate(ids_list):
            arr[i, : len(ids)] = ids
        mask_np = np.arange(width)[None, :] < lengths[:, None]
        dev = self._device
        input_ids = torch.from_numpy(arr).to(dev, non_blocking=True)
        mask = torch.from_numpy(mask_np.astype(np.int64)).to(dev, non_blocking=True)
        return self.forward_padded(input_ids, mask)

    def forward_padded(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled float32 outputs ``[B, H]`` of right-padded ``input_ids`` / ``attention_mask`` ``[B, L]``
        (cut to the longest row first, so fixed-width inputs such as SB3 observations cost no more)."""
        lens = attention_mask.sum(1).long()
        width = max(int(lens.max()), 1) if lens.numel() else 1
        input_ids, attention_mask = input_ids[:, :width].long(), attention_mask[:, :width].long()
        dev = input_ids.device
        with torch.autocast(dev.type, dtype=self._autocast_dtype or torch.bfloat16,
                            enabled=self._autocast_dtype is not None):
            out = self.model(input_ids=input_ids, attention_mask=attention_mask)
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            pooled = self.pool(hidden, attention_mask, lens)
        return pooled.float()

    def forward_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Pooled outputs of ``texts`` in order, no dedupe (sorted by length and chunked inside)."""
        if not texts:
            return torch.zeros(0, self.hidden_size, device=self._device)
        ids = self.token_ids(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        parts, start = [], 0
        budget = self.chunk_tokens or (GPU_CHUNK_TOKENS if self._device.type == "cuda" else CPU_CHUNK_TOKENS)
        for end in range(1, len(order) + 1):  # sorted by length: a chunk is padded to its last text
            full = end == len(order) or (end + 1 - start) * len(ids[order[end]]) > budget
            if full or end - start >= self.chunk_size:
                chunk = order[start:end]
                if self._split:
                    parts.append(self._forward_split([texts[i] for i in chunk], [ids[i] for i in chunk]))
                else:
                    parts.append(self._forward_ids([ids[i] for i in chunk]))
                start = end
        out = torch.cat(parts) if len(parts) > 1 else parts[0]
        inv = torch.empty(len(order), dtype=torch.long)
        inv[torch.tensor(order)] = torch.arange(len(order))
        return out[inv.to(out.device)]

    def encode_unique(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features[U, H], inverse[N])``: each distinct text encoded once; ``features[inverse]``
        is one row per text."""
        index: dict[str, int] = {}
        inverse = [index.setdefault(t, len(index)) for t in texts]
        uniq = list(index)
        inv = torch.tensor(inverse, dtype=torch.long, device=self._device)
        if self.train_mode != "frozen":
            return self.forward_texts(uniq), inv
        self._drop_stale()
        found = {t: self._frozen[t] for t in uniq if t in self._frozen}
        missing = [t for t in uniq if t not in found]
        if missing:
            with torch.no_grad():
                fresh = dict(zip(missing, self.forward_texts(missing), strict=True))
            if len(self._frozen) + len(missing) > MAX_CACHE_ENTRIES:  # full: start over (this batch's kept above)
                self._frozen.clear()
            self._frozen.update(fresh)
            found.update(fresh)
        if not uniq:
            return torch.zeros(0, self.hidden_size, device=self._device), inv
        return torch.stack([found[t] for t in uniq]), inv

    def encode(self, texts: Sequence[str], dedupe: bool = True) -> torch.Tensor:
        """Pooled float32 vectors ``[len(texts), hidden_size]``; each distinct text encoded once."""
        if not dedupe:
            if self.train_mode == "frozen":
                with torch.no_grad():
                    return self.forward_texts(texts)
            return self.forward_texts(texts)
        feats, inv = self.encode_unique(texts)
        return feats[inv]

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        return self.encode(texts)
