"""Checkpoint folders of policies: ``save_checkpoint(folder, policy)`` and ``load_policy(folder)``.

A checkpoint is a folder anyone can open::

    model.safetensors    all weights (safetensors; shared tensors stored once)
    policy.json          format, PolicyConfig, env_id, agent/role, action count, feature size,
                         the encoder's Hugging Face config (rebuilds the architecture offline),
                         size and sha256 of model.safetensors
    tokenizer files      tokenizer.save_pretrained (transformer policies)
    trainer_state.json   any JSON dict the trainer gives
    optimizer.pt         optional optimizer state_dict, loaded with torch.load(weights_only=True)

A save writes a temporary sibling folder and renames it into place (an existing checkpoint is
moved aside first and deleted last), so a crash never leaves half a checkpoint. Nothing is
unpickled: weights are safetensors, metadata JSON, optimizer state ``weights_only``.
Problems raise :class:`CheckpointError` naming the folder and the missing or bad file.
The format itself (file names, ``policy.json`` checks) is :mod:`~evoarena.policies.checkpoint_format`;
``init_from`` (transfer) is :mod:`~evoarena.policies.transfer`; both are re-exported here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from evoarena.config import PolicyConfig
from evoarena.policies.actor_critic import ActorCritic, MLPPolicy, make_policy
from evoarena.policies.base import BasePolicy
from evoarena.policies.checkpoint_format import (
    FORMAT,
    FORMAT_VERSION,
    OPTIMIZER,
    POLICY_JSON,
    RESERVED,
    TRAINER_STATE,
    WEIGHTS,
    CheckpointError,
    _checked_weights,
    _sha256,
    read_policy_json,
    tensors_sha256,
)
from evoarena.policies.hf_models import EncoderLoadError, load_tokenizer
from evoarena.policies.transfer import _norm_key, init_tokenizer, init_weights_from
from evoarena.storage import atomic_dir

# --------------------------------------------------------------------------- saving


def policy_metadata(policy: BasePolicy) -> dict[str, Any]:
    """The ``policy.json`` content of ``policy`` (without the weights' size and checksum)."""
    import transformers

    encoder = policy.encoder
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "policy_class": type(policy).__name__,
        "policy_config": policy.cfg.model_dump(mode="json"),
        "env_id": policy.env_id,
        "env_kwargs": getattr(policy, "env_kwargs", {}),
        "agent": policy.agent,
        "role": policy.role,
        "num_actions": policy.num_actions,
        "num_features": policy.num_features,
        "encoder_config": encoder.hf_config_dict() if encoder is not None else None,
        "encoder_hidden_size": encoder.hidden_size if encoder is not None else None,
        "num_parameters": policy.num_parameters(),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }


def _json_default(value: Any) -> Any:
    """numpy scalars/arrays, tensors and paths in trainer state become plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"trainer_state value {value!r} of type {type(value).__name__} is not JSON serialisable")


def _check_extra_name(name: str) -> None:
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or any(p in ("..", ".") for p in parts) or name in RESERVED:
        raise CheckpointError(f"extra file name {name!r}: must be a relative path inside the checkpoint, "
                              f"not one of {sorted(RESERVED)}")


def _write_contents(folder: Path, policy: BasePolicy, trainer_state: dict[str, Any] | None,
                    optimizer_state: dict[str, Any] | None, extra_files: dict[str, bytes] | None) -> None:
    from safetensors.torch import load_file, save_model

    weights = folder / WEIGHTS
    save_model(policy, str(weights), metadata={"format": "pt", "evoarena": FORMAT})
    meta = policy_metadata(policy)
    meta["weights_bytes"] = weights.stat().st_size
    meta["file_sha256"] = _sha256(weights)
    meta["weights_sha256"] = tensors_sha256(load_file(str(weights)))  # canonical: equal for equal weights
    (folder / POLICY_JSON).write_text(json.dumps(meta, indent=2, default=_json_default))
    if policy.tokenizer is not None:
        policy.tokenizer.save_pretrained(str(folder))
    (folder / TRAINER_STATE).write_text(json.dumps(trainer_state or {}, indent=2, default=_json_default))
    if optimizer_state is not None:
        torch.save(optimizer_state, folder / OPTIMIZER)
    for name, data in (extra_files or {}).items():
        _check_extra_name(name)
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def save_checkpoint(folder: str | Path, policy: BasePolicy, trainer_state: dict[str, Any] | None = None,
                    optimizer_state: dict[str, Any] | None = None,
                    extra_files: dict[str, bytes] | None = None) -> Path:
    """Write ``policy`` (and trainer/optimizer state, extra files) as checkpoint ``folder``; returns it.

    An existing checkpoint at ``folder`` is replaced atomically; a folder that is not a checkpoint
    (no ``policy.json``) and not empty is never overwritten.
    """
    folder = Path(folder)
    if folder.exists():
        if not folder.is_dir():
            raise CheckpointError(f"{folder}: exists and is not a folder; refusing to overwrite it")
        if any(folder.iterdir()) and not (folder / POLICY_JSON).is_file():
            raise CheckpointError(f"{folder}: exists, is not empty and is not an evoarena checkpoint "
                                  f"(no {POLICY_JSON}); refusing to overwrite it")
    with atomic_dir(folder) as tmp:
        _write_contents(tmp, policy, trainer_state, optimizer_state, extra_files)
    return folder

# --------------------------------------------------------------------------- loading


def load_policy(folder: str | Path, device: str = "auto") -> ActorCritic | MLPPolicy:
    """The policy saved in checkpoint ``folder``, rebuilt offline from ``policy.json`` and tokenizer files,
    on ``device`` (auto | cpu | cuda), in eval mode."""
    from safetensors.torch import load_model

    folder = Path(folder)
    meta = read_policy_json(folder)
    weights = _checked_weights(folder, meta)
    try:
        cfg = PolicyConfig.model_validate(meta["policy_config"])
        cfg.encoder.device = device
    except Exception as exc:
        raise CheckpointError(f"{folder / POLICY_JSON}: bad policy_config: {exc}") from None
    tokenizer = None
    try:
        if cfg.kind == "transformer":
            tokenizer = load_tokenizer(folder)
            if meta.get("encoder_config") is None:
                raise CheckpointError(f"{folder / POLICY_JSON}: a transformer policy without encoder_config")
        policy = make_policy(cfg, meta["num_actions"], meta["num_features"], meta["env_id"],
                             meta.get("agent", ""), meta.get("role"), tokenizer=tokenizer,
                             hf_config=meta.get("encoder_config"))
    except EncoderLoadError as exc:
        raise CheckpointError(f"{folder}: cannot rebuild the encoder: {exc}") from None
    try:
        missing, unexpected = load_model(policy, str(weights), strict=False, device=str(policy.device))
        missing = [k for k in missing if k not in policy.optional_state_keys()]
        if missing or unexpected:
            raise RuntimeError(f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    except Exception as exc:
        raise CheckpointError(f"{weights}: cannot load the weights into the architecture of policy.json "
                              f"({type(exc).__name__}: {exc})") from None
    policy.env_kwargs = dict(meta.get("env_kwargs") or {})
    if policy.encoder is not None:
        policy.encoder.clear_cache()
    return policy.eval()


def load_trainer_state(folder: str | Path) -> dict[str, Any]:
    """The ``trainer_state.json`` dict of checkpoint ``folder`` ({} when the checkpoint has none)."""
    folder = Path(folder)
    read_policy_json(folder)
    path = folder / TRAINER_STATE
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(state).__name__}")
    return state


def load_optimizer_state(folder: str | Path) -> dict[str, Any] | None:
    """The optimizer state_dict saved in checkpoint ``folder`` (``weights_only=True``), or None."""
    folder = Path(folder)
    read_policy_json(folder)
    path = folder / OPTIMIZER
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot be loaded with weights_only=True ({exc})") from None


__all__ = ["FORMAT", "FORMAT_VERSION", "OPTIMIZER", "POLICY_JSON", "TRAINER_STATE", "WEIGHTS", "CheckpointError",
           "_norm_key", "init_tokenizer", "init_weights_from", "load_optimizer_state", "load_policy",
           "load_trainer_state", "policy_metadata", "read_policy_json", "save_checkpoint", "tensors_sha256"]
