"""Pieces shared by the supervised stages (pretrain, finetune: ner and bc): AdamW with a linear warmup/decay
schedule, the one training loop (:func:`fit`: schedule, step, log, evaluate, resumable states), torch threads,
resumable training states written atomically, and loading an encoder's weights from a checkpoint with every
weight checked (:func:`init_encoder_weights`).

A training state (``stages/NN_STAGE/state/``) is a folder in the checkpoint format of
:mod:`evoarena.policies.io`: ``model.safetensors`` (the module's weights, shared tensors stored once),
``optimizer.pt`` (loaded with ``weights_only=True``), ``trainer_state.json`` (step, epoch, history, any JSON
the loop keeps) and tokenizer files; a policy's state (behaviour cloning) is a whole policy checkpoint
(``policy.json`` too: ``ckpt:`` and ``load_policy`` open it). It is written to a temporary sibling and renamed
into place, so ``--resume`` never sees half a state.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evoarena.policies.base import BasePolicy
from evoarena.policies.checkpoint_format import OPTIMIZER as STATE_OPTIMIZER
from evoarena.policies.checkpoint_format import TRAINER_STATE as STATE_JSON
from evoarena.policies.checkpoint_format import WEIGHTS as STATE_WEIGHTS
from evoarena.policies.io import save_checkpoint
from evoarena.storage import atomic_dir, read_json


def set_threads(threads: int) -> None:
    """``torch.set_num_threads(threads)`` when ``threads`` > 0 (0 leaves torch's default)."""
    if threads > 0:
        torch.set_num_threads(int(threads))


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup over ``warmup`` steps to 1, then linear decay to 0 at ``total`` (step is 0-based)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on biases and norm weights (1-d tensors)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class Timer:
    """Wall-clock seconds since creation (plus ``offset``, the time spent before a resume)."""

    def __init__(self, offset: float = 0.0) -> None:
        self.start = time.perf_counter() - offset

    def __call__(self) -> float:
        return time.perf_counter() - self.start


# --------------------------------------------------------------------------- resumable states


def torch_rng_state() -> list[int]:
    """torch's CPU random state as JSON-able ints (saved in a training state: dropout resumes exactly)."""
    return torch.get_rng_state().tolist()


def restore_torch_rng(state: dict[str, Any]) -> None:
    """Restore the torch random state saved by :func:`torch_rng_state` under ``state["torch_rng"]``."""
    if state.get("torch_rng") is not None:
        torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))


def save_state(folder: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
               state: dict[str, Any], tokenizer: Any = None) -> Path:
    """Write a resumable training state folder atomically (see the module docstring); a policy's state is
    its checkpoint (:func:`evoarena.policies.io.save_checkpoint`, its own tokenizer included)."""
    from safetensors.torch import save_model

    if isinstance(model, BasePolicy):
        return save_checkpoint(folder, model, state, optimizer.state_dict())
    with atomic_dir(folder) as tmp:
        save_model(model, str(tmp / STATE_WEIGHTS))
        torch.save(optimizer.state_dict(), tmp / STATE_OPTIMIZER)
        (tmp / STATE_JSON).write_text(json.dumps(state, indent=1, default=float))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
    return Path(folder)


def read_state(folder: str | Path) -> dict[str, Any] | None:
    """The ``trainer_state.json`` of a state folder, or None when there is no complete state."""
    path = Path(folder) / STATE_JSON
    if not path.is_file() or not (Path(folder) / STATE_WEIGHTS).is_file():
        return None
    return read_json(path)


def load_state(folder: str | Path, model: nn.Module | None,
               optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """Load a state folder's weights (and optimizer state) into ``model`` (``optimizer``); return its JSON.
    ``model`` None: the weights were loaded already (a policy rebuilt by ``load_policy`` from its state)."""
    from safetensors.torch import load_model

    folder = Path(folder)
    state = read_state(folder)
    if state is None:
        raise FileNotFoundError(f"{folder}: no complete training state to resume from")
    if model is not None:
        load_model(model, str(folder / STATE_WEIGHTS), strict=True, device=str(next(model.parameters()).device))
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(folder / STATE_OPTIMIZER, map_location="cpu", weights_only=True))
    return state


# --------------------------------------------------------------------------- the training loop


@dataclass(frozen=True)
class FitPlan:
    """The schedule of a supervised loop: ``total`` steps at peak ``lr`` (linear warmup over ``warmup`` steps,
    then linear decay), gradients clipped at ``max_grad_norm``; log, evaluate and write a training state into
    ``state_dir`` every ``log_every``, ``eval_every`` and ``checkpoint_every`` steps (log and evaluate at the
    last step too; the last step's state is the stage's own final one)."""

    total: int
    lr: float
    warmup: int
    max_grad_norm: float
    log_every: int
    eval_every: int
    checkpoint_every: int
    state_dir: Path


class SupervisedTask:
    """What a supervised stage hands :func:`fit`: its model, optimizer and writer, and the stage's own parts
    of a step. ``log`` and ``evaluate`` return a progress text (or None)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    writer: Any
    tokenizer: Any = None  #: saved with each state (a policy saves its own)

    def batch(self, step: int) -> Any:
        """The batch of 0-based ``step`` (a function of the step: a resumed loop draws the same batches)."""
        raise NotImplementedError

    def loss(self, batch: Any) -> tuple[torch.Tensor, Any]:
        """The loss to minimise on ``batch`` and whatever :meth:`accumulate` needs of this step."""
        raise NotImplementedError

    def clip_groups(self) -> list[list[nn.Parameter]]:
        """The parameter groups whose gradients are clipped to ``max_grad_norm`` each (default: all at once)."""
        return [list(self.model.parameters())]

    def accumulate(self, loss: torch.Tensor, stats: Any) -> None:
        """Add a finished step to the running sums of the next log line."""
        raise NotImplementedError

    def log(self, step: int) -> str | None:
        """Write the running sums at ``step`` and reset them."""
        raise NotImplementedError

    def evaluate(self, step: int) -> str | None:
        """Evaluate on held-out data at ``step``."""
        return None

    def state(self, step: int) -> dict[str, Any]:
        """The ``trainer_state.json`` of a state written after ``step`` (``torch_rng`` is added)."""
        raise NotImplementedError


def fit(task: SupervisedTask, plan: FitPlan, step: int, update: Any) -> int:
    """Train ``task`` from ``step`` to ``plan.total``; ``update`` is the stage's progress bar. Returns the step
    reached. Before a state is written the writer is flushed, so what was logged up to it is on disk first."""
    groups = task.clip_groups()
    while step < plan.total:
        batch = task.batch(step)
        set_lr(task.optimizer, plan.lr * lr_factor(step, plan.total, plan.warmup))
        loss, stats = task.loss(batch)
        task.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in groups:
            torch.nn.utils.clip_grad_norm_(group, plan.max_grad_norm)
        task.optimizer.step()
        step += 1
        task.accumulate(loss, stats)
        if step % plan.log_every == 0 or step == plan.total:
            update(0, info=task.log(step))
        if step % plan.eval_every == 0 or step == plan.total:
            info = task.evaluate(step)
            if info is not None:
                update(0, info=info)
        if step % plan.checkpoint_every == 0 and step < plan.total:
            task.writer.flush()
            save_state(plan.state_dir, task.model, task.optimizer,
                       {**task.state(step), "torch_rng": torch_rng_state()}, task.tokenizer)
        update(1)
    return step


def resumable(resume: bool, state_dir: Path) -> dict[str, Any] | None:
    """The training state a stage resumes from: ``state_dir``'s when ``resume`` and it holds one, else None."""
    return read_state(state_dir) if resume else None


def begin(ctx: Any, threads: int, seed: int) -> tuple[Path, dict[str, Any] | None]:
    """A supervised stage's start in its :class:`~evoarena.training.protocol.StageContext` ``ctx``: torch's
    threads and seed set; its state folder and the state it resumes from (None: a fresh start)."""
    set_threads(threads)
    torch.manual_seed(seed)
    state_dir = ctx.folder() / "state"
    return state_dir, resumable(ctx.resume, state_dir)


# --------------------------------------------------------------------------- encoder weights


def init_encoder_weights(model: nn.Module, folder: str | Path) -> dict[str, Any]:
    """``io.init_weights_from`` for any module with an ``encoder`` (a policy, a token classifier), checking
    that EVERY encoder weight was found: a mismatch (hidden size, layers, max_length, vocab) is an error."""
    from evoarena.policies.io import POLICY_JSON, CheckpointError, _norm_key, init_weights_from

    info = init_weights_from(model, folder)  # type: ignore[arg-type]
    loaded = set(info["loaded"])
    if (Path(folder) / POLICY_JSON).is_file():
        wanted = [_norm_key(k) for k in model.state_dict() if k.startswith("encoder.")]
    else:
        wanted = [_norm_key(k) for k in model.encoder.base_model().state_dict()]  # type: ignore[union-attr]
    missing = [k for k in wanted if k not in loaded and "lora_" not in k]
    if missing:
        raise CheckpointError(
            f"{folder}: init_from has no weight of matching name and shape for {len(missing)} encoder "
            f"tensor(s), e.g. {missing[:3]}; the encoder settings (hidden_size, num_layers, num_heads, "
            "intermediate_size, max_length) must be those the checkpoint was trained with")
    return info
