"""The checkpoint folder format (see :mod:`~evoarena.policies.io`): its file names, :class:`CheckpointError`,
checksums, and reading ``policy.json`` and the weights with every check (no policy is built here)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

FORMAT = "evoarena-policy"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
POLICY_JSON = "policy.json"
TRAINER_STATE = "trainer_state.json"
OPTIMIZER = "optimizer.pt"
RESERVED = {WEIGHTS, POLICY_JSON, TRAINER_STATE, OPTIMIZER}


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be used: names the folder and the missing or bad file."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """A hash of named tensors that is equal exactly when names, dtypes, shapes and values are equal
    (unlike a hash of the safetensors file, whose header order may differ for equal weights)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(tensors[name].shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _missing_folder_error(folder: Path) -> CheckpointError:
    aside = sorted(folder.parent.glob(f".{folder.name}.old-*")) if folder.parent.is_dir() else []
    hint = f"; an interrupted save left the previous checkpoint at {aside[-1]}" if aside else ""
    return CheckpointError(f"{folder}: checkpoint folder not found{hint}")


def read_policy_json(folder: str | Path) -> dict[str, Any]:
    """The validated ``policy.json`` of checkpoint ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise _missing_folder_error(folder)
    path = folder / POLICY_JSON
    if not path.is_file():
        if (folder / "config.json").is_file():
            raise CheckpointError(f"{folder}: not an evoarena checkpoint (no {POLICY_JSON}); it looks like a "
                                  "Hugging Face model folder: use it as encoder.path or policy.init_from")
        raise CheckpointError(f"{folder}: not an evoarena checkpoint (missing {POLICY_JSON})")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an evoarena policy file (format is not {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {meta.get('format_version')!r} is not supported "
                              f"(this evoarena reads {FORMAT_VERSION})")
    for key in ("policy_config", "env_id", "num_actions", "num_features"):
        if key not in meta:
            raise CheckpointError(f"{path}: missing key {key!r}")
    for key, low in (("num_actions", 1), ("num_features", 0)):
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise CheckpointError(f"{path}: {key} = {value!r}; must be a whole number >= {low}")
    if not isinstance(meta["env_id"], str) or not isinstance(meta["policy_config"], dict):
        raise CheckpointError(f"{path}: env_id must be a string and policy_config an object")
    return meta


def _checked_weights(folder: Path, meta: dict[str, Any]) -> Path:
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{folder}: missing {WEIGHTS}")
    size, expected = weights.stat().st_size, meta.get("weights_bytes")
    if expected is not None and size != expected:
        raise CheckpointError(f"{weights}: truncated or corrupt ({size} bytes, policy.json says {expected})")
    # file_sha256 checks the file; checkpoints written before it existed kept the file's hash in weights_sha256
    digest = meta["file_sha256"] if "file_sha256" in meta else meta.get("weights_sha256")
    if digest is not None and _sha256(weights) != digest:
        raise CheckpointError(f"{weights}: corrupt (sha256 differs from the one in policy.json)")
    return weights


def _load_state(folder: Path, meta: dict[str, Any], device: str = "cpu") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    weights = _checked_weights(folder, meta)
    try:
        return load_file(str(weights), device=device)
    except Exception as exc:
        raise CheckpointError(f"{weights}: cannot be read as safetensors ({exc})") from None
