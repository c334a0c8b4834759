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
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch

from evoarena.config import PolicyConfig
from evoarena.policies.actor_critic import ActorCritic, BasePolicy, MLPPolicy, make_policy
from evoarena.storage import atomic_dir

FORMAT = "evoarena-policy"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
POLICY_JSON = "policy.json"
TRAINER_STATE = "trainer_state.json"
OPTIMIZER = "optimizer.pt"
RESERVED = {WEIGHTS, POLICY_JSON, TRAINER_STATE, OPTIMIZER}


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be used: names the folder and the missing or bad file."""


# --------------------------------------------------------------------------- saving


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


def load_policy(folder: str | Path, device: str = "auto") -> ActorCritic | MLPPolicy:
    """The policy saved in checkpoint ``folder``, rebuilt offline from ``policy.json`` and tokenizer files,
    on ``device`` (auto | cpu | cuda), in eval mode."""
    from safetensors.torch import load_model

    from evoarena.policies.encoder import EncoderLoadError, load_tokenizer

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


# --------------------------------------------------------------------------- init_from (transfer)


def _norm_key(name: str) -> str:
    """A parameter name without peft wrapping, so full / lora / top_k models match by name."""
    return name.replace("base_model.model.", "").replace(".base_layer", "")


def init_tokenizer(folder: str | Path):
    """The tokenizer saved in ``folder`` (a checkpoint or HF folder), or None if it has none."""
    from evoarena.policies.encoder import EncoderLoadError, load_tokenizer

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
