"""The decisions that change a run's numbers, made once per run and recorded: torch's thread count, the
device that ``device: auto`` means, and each ``autocast: auto`` probe's verdict (bf16 or fp32) per
encoder architecture.

A run folder's resolved ``config.yaml`` holds them under ``numerics:`` (see
:func:`evoarena.training.infra.runs.create_run`); ``--resume`` loads them back with :func:`adopt`, so a
resumed run makes the same choices as the run it continues, whatever the machine's load is now. A new
decision (a probe run for the first time in this run) is reported to the listeners of :func:`on_change`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

_STATE: dict[str, Any] = {"device": None, "bf16": {}}
_LISTENERS: list[Callable[[dict[str, Any]], None]] = []


def decisions() -> dict[str, Any]:
    """What this process has decided so far: ``{"threads", "device", "bf16": {architecture: bool}}``."""
    return {"threads": torch.get_num_threads(), "device": _STATE["device"] or auto_device().type,
            "bf16": dict(sorted(_STATE["bf16"].items()))}


def adopt(recorded: dict[str, Any] | None) -> None:
    """Make the decisions ``recorded`` by a run (threads, device, probe verdicts) this process's own."""
    reset()
    if not recorded:
        return
    if recorded.get("threads"):
        torch.set_num_threads(int(recorded["threads"]))
    _STATE["device"] = recorded.get("device")
    _STATE["bf16"].update({str(k): bool(v) for k, v in (recorded.get("bf16") or {}).items()})


def reset() -> None:
    """Forget every decision and listener (a new run in this process decides afresh)."""
    _STATE["device"] = None
    _STATE["bf16"].clear()
    _LISTENERS.clear()


def on_change(listener: Callable[[dict[str, Any]], None]) -> None:
    """Call ``listener(decisions())`` whenever a new decision is made."""
    _LISTENERS.append(listener)


def _changed() -> None:
    snapshot = decisions()
    for listener in list(_LISTENERS):
        listener(snapshot)


def auto_device() -> torch.device:
    """What ``device: auto`` means in this run: the recorded device, else cuda if torch sees one, else cpu."""
    if _STATE["device"] is None:
        _STATE["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(_STATE["device"])


def bf16_verdict(architecture: str, probe: Callable[[], bool]) -> bool:
    """The recorded verdict for ``architecture`` (a text naming the model's shape and thread count), or
    ``probe()``'s, recorded now."""
    if architecture not in _STATE["bf16"]:
        _STATE["bf16"][architecture] = bool(probe())
        _changed()
    return _STATE["bf16"][architecture]


def weights_key(params: Iterable[torch.Tensor]) -> tuple[tuple[int, int], ...]:
    """Identity and in-place version of each tensor: changes after an optimizer step, ``load_state_dict``, any
    in-place write or a replaced parameter. Caches of outputs computed from these weights are keyed on it.

    PyTorch has no public reader of a tensor's version counter (the counter autograd's in-place checks use,
    described in its "Autograd mechanics" notes); this is the one place evoarena reads ``Tensor._version``, and
    ``tests/test_encoder_speed.py`` fails if it stops tracking in-place changes."""
    return tuple((id(p), p._version) for p in params)
