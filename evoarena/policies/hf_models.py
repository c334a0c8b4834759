"""Local Hugging Face models and tokenizers, opened offline: tokenizers (and the WordPiece one of ``preset: tiny``),
the ``BertConfig`` of ``preset: tiny``, architectures rebuilt from a saved config, what a model is made of (its
layer stack, its attention projections, whether it is a causal LM) and :class:`EncoderLoadError`, which names
the folder or setting that is wrong. Nothing is downloaded."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evoarena.config import EncoderConfig
from evoarena.policies import numerics
from evoarena.policies.corpus import world_corpus
from evoarena.policies.wordpiece import train_wordpiece

# (query, value) projection names of common architectures, tried in order by ``lora_target_modules``;
# single names are fused qkv projections.
_QV_NAMES: list[tuple[str, ...]] = [
    ("query", "value"), ("q_proj", "v_proj"), ("q_lin", "v_lin"), ("q", "v"),
    ("query_key_value",), ("c_attn",), ("Wqkv",), ("qkv_proj",), ("qkv",),
]


class EncoderLoadError(ValueError):
    """An encoder that cannot be built: names the folder or setting and what would be right."""


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU raises a clear error."""
    if device == "auto":
        return numerics.auto_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EncoderLoadError(f"device {device!r} requested but torch sees no CUDA GPU; "
                               "use device: auto or cpu")
    return torch.device(device)


@lru_cache(maxsize=4)
def default_tiny_tokenizer(vocab_size: int):
    """The WordPiece tokenizer of ``preset: tiny`` when none is given: trained on :func:`world_corpus`
    (cached per process; the same corpus and size always give the same vocabulary)."""
    return train_wordpiece(world_corpus(), vocab_size)


def ensure_pad_token(tokenizer) -> None:
    """Give a tokenizer without a pad token (decoders) one: eos if it has one, else a new ``[PAD]``."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:
            tokenizer.add_special_tokens({"pad_token": "[PAD]"})


def tiny_bert_config(cfg: EncoderConfig, vocab_size: int, pad_token_id: int = 0):
    """The ``BertConfig`` of ``preset: tiny`` (no dropout: RL updates must see the rollout's network)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_length, type_vocab_size=2, pad_token_id=pad_token_id,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )


def is_hf_model_folder(path: str | Path) -> bool:
    """True if ``path`` looks like a Hugging Face model folder (has a ``config.json``)."""
    return (Path(path) / "config.json").is_file()


def load_tokenizer(folder: str | Path):
    """The tokenizer saved in local ``folder`` (no network); a clear error if there is none."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise EncoderLoadError(f"{folder}: no usable tokenizer files (tokenizer.json / vocab): {exc}") \
            from None


def model_from_config(config_dict: dict[str, Any], tiny: bool):
    """An un-initialised-weights model rebuilt from a saved HF config dict (checkpoint loading)."""
    from transformers import AutoConfig, AutoModel, BertConfig, BertModel

    d = dict(config_dict)
    if tiny:
        return BertModel(BertConfig.from_dict(d), add_pooling_layer=False)
    model_type = d.pop("model_type", None)
    if not model_type:
        raise EncoderLoadError("saved encoder config has no model_type; cannot rebuild it offline")
    try:
        config = AutoConfig.for_model(model_type, **d)
    except Exception as exc:
        raise EncoderLoadError(f"cannot rebuild encoder of model_type {model_type!r}: {exc}") from None
    return AutoModel.from_config(config)


def is_causal_lm_config(config: dict[str, Any]) -> bool:
    """True for a Hugging Face config of a causal (decoder-only) language model."""
    return any(str(a).endswith("ForCausalLM") for a in config.get("architectures") or ())


def is_causal_lm_folder(folder: str | Path) -> bool:
    path = Path(folder) / "config.json"
    try:
        return path.is_file() and is_causal_lm_config(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError):
        return False


def lora_target_modules(model: nn.Module) -> list[str]:
    """Names (leaf suffixes) of the attention query/value projections of ``model``, found generically."""
    leaves: set[str] = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
            leaves.add(name.rsplit(".", 1)[-1])
    for cand in _QV_NAMES:
        if all(c in leaves for c in cand):
            return list(cand)
    raise EncoderLoadError(
        f"train_mode lora: found no attention query/value projections in {type(model).__name__}; "
        f"linear layers are named: {', '.join(sorted(leaves))}"
    )


def layer_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The longest ``nn.ModuleList`` of ``model``: its stack of transformer layers."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and (best is None or len(module) > len(best[1])):
            best = (name, module)
    if best is None:
        raise EncoderLoadError(f"train_mode top_k: no layer stack (ModuleList) in {type(model).__name__}")
    return best
