"""``policy.init_from`` (transfer): the weights of matching name and shape, and the tokenizer, of an evoarena
checkpoint or a Hugging Face model folder copied into a fresh policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from evoarena.policies.base import BasePolicy
from evoarena.policies.checkpoint_format import (
    POLICY_JSON,
    WEIGHTS,
    CheckpointError,
    _load_state,
    _missing_folder_error,
    read_policy_json,
)
from evoarena.policies.hf_models import EncoderLoadError, load_tokenizer


def _norm_key(name: str) -> str:
    """A parameter name without peft wrapping, so full / lora / top_k models match by name."""
    return name.replace("base_model.model.", "").replace(".base_layer", "")


def init_tokenizer(folder: str | Path):
    """The tokenizer saved in ``folder`` (a checkpoint or HF folder), or None if it has none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise _missing_folder_error(folder)
    if not any((folder / n).is_file() for n in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        return None
    try:
        return load_tokenizer(folder)
    except EncoderLoadError as exc:
        raise CheckpointError(str(exc)) from None


def init_weights_from(policy: BasePolicy, folder: str | Path) -> dict[str, Any]:
    """Copy weights of matching name and shape from ``folder`` into ``policy`` (transfer).

    ``folder`` is an evoarena checkpoint (all matching weights: encoder, and heads of the same shape)
    or a Hugging Face model folder with ``model.safetensors`` (encoder weights only, e.g. the MLM
    model of the pretrain stage). Returns ``{"loaded": [...], "skipped": [...]}``; raises
    :class:`CheckpointError` when nothing matches.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    if not folder.is_dir():
        raise _missing_folder_error(folder)
    if (folder / POLICY_JSON).is_file():
        source = _load_state(folder, read_policy_json(folder))
        target = {_norm_key(k): v for k, v in policy.state_dict().items()}
    else:
        weights = folder / WEIGHTS
        if policy.encoder is None or not weights.is_file():
            what = ("an evoarena checkpoint" if policy.encoder is None
                    else f"a checkpoint or an HF folder with {WEIGHTS}")
            raise CheckpointError(f"{folder}: init_from needs {what} (pickled .bin weights are never loaded)")
        try:
            source = load_file(str(weights))
        except Exception as exc:
            raise CheckpointError(f"{weights}: cannot be read as safetensors ({exc})") from None
        base = policy.encoder.base_model()
        prefix = getattr(base, "base_model_prefix", "") or ""
        cut = len(prefix) + 1
        source = {(k[cut:] if prefix and k.startswith(prefix + ".") else k): v for k, v in source.items()}
        target = {_norm_key(k): v for k, v in base.state_dict().items()}
    loaded, skipped = [], []
    with torch.no_grad():
        for key, value in source.items():
            k = _norm_key(key)
            if k in target and target[k].shape == value.shape:
                target[k].copy_(value.to(target[k].device, target[k].dtype))
                loaded.append(k)
            else:
                skipped.append(k)
    if not loaded:
        raise CheckpointError(f"{folder}: init_from matched no weights of this policy "
                              f"(source keys such as {sorted(source)[:3]})")
    if policy.encoder is not None:
        policy.encoder.clear_cache()
    return {"loaded": loaded, "skipped": skipped}
