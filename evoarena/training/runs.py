"""Run folders, as DESIGN says: ``runs/NAME/`` with ``config.yaml`` (resolved), ``stages/NN_STAGE/``,
``tb/`` (TensorBoard), ``results.json``, ``report.md`` and ``plots/``. Also atomic small-file writes
and the one TensorBoard writer factory every stage uses."""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from evoarena.config import dump_config

CONFIG_FILE = "config.yaml"
RESULTS_FILE = "results.json"


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def replace_dir(tmp: Path, final: Path) -> None:
    """Move the finished folder ``tmp`` to ``final``, replacing an existing one without a gap in which neither
    a complete old nor a complete new folder exists."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def temp_dir_for(final: Path) -> Path:
    """A fresh temporary sibling of ``final`` (stale ones from crashed writes are removed)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    return tmp


def create_run(run_dir: str | Path, config: BaseModel, resume: bool = False) -> Path:
    """Create (or, with ``resume``, reopen) a run folder and write its resolved ``config.yaml``.

    A new run refuses a folder that already holds a run, so nothing is overwritten by accident.
    """
    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{run_dir}: no {CONFIG_FILE}; not a run folder to resume")
        return run_dir
    if (run_dir / CONFIG_FILE).exists():
        raise ValueError(f"{run_dir} already holds a run; pass --resume {run_dir} to continue it, "
                         f"or choose another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG_FILE, dump_config(config))
    return run_dir


@dataclass(frozen=True)
class StageSlot:
    """Where a stage sits in a pipeline: its folder index, its results key, where its steps start on the
    run's one TensorBoard step axis, and the ``stage k/n`` label of its progress line. Outside a pipeline
    (a single-stage command) no slot is active and stages use their own defaults."""

    index: int
    key: str
    step_offset: int = 0
    label: str = ""


_SLOT: contextvars.ContextVar[StageSlot | None] = contextvars.ContextVar("evoarena_stage_slot", default=None)


@contextlib.contextmanager
def in_stage(slot: StageSlot) -> Iterator[StageSlot]:
    """Run the enclosed stage in ``slot`` (its folder, results key, step offset and progress label)."""
    token = _SLOT.set(slot)
    try:
        yield slot
    finally:
        _SLOT.reset(token)


def current_slot() -> StageSlot | None:
    """The pipeline slot of the stage now running, or None for a single-stage command."""
    return _SLOT.get()


def progress_label(description: str) -> str:
    """``description`` prefixed with the running pipeline stage's ``stage k/n`` label, if any."""
    slot = current_slot()
    return f"{slot.label} {description}" if slot and slot.label else description


def stage_dir(run_dir: str | Path, index: int, stage: str) -> Path:
    """``runs/NAME/stages/NN_STAGE/`` (created); inside a pipeline, the slot's ``NN_KIND`` folder."""
    slot = current_slot()
    path = Path(run_dir) / "stages" / (slot.key if slot is not None else f"{index:02d}_{stage}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_results(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RESULTS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def update_results(run_dir: str | Path, key: str, value: Any) -> dict[str, Any]:
    """Set ``results.json[key] = value`` atomically (inside a pipeline, the slot's key); returns the whole
    results."""
    slot = current_slot()
    if slot is not None:
        key = slot.key
    results = read_results(run_dir)
    results[key] = value
    atomic_write_text(Path(run_dir) / RESULTS_FILE, json.dumps(results, indent=2, default=float))
    return results


class OffsetWriter:
    """A TensorBoard ``SummaryWriter`` whose steps are shifted by ``offset``: a pipeline stage logs its own
    steps 0, 1, ... and they land at ``offset``, ``offset + 1``, ... of the run's one step axis."""

    _STEPPED = ("add_scalar", "add_scalars", "add_text", "add_histogram", "add_image", "add_figure")

    def __init__(self, writer: Any, offset: int) -> None:
        self._writer, self.offset = writer, offset

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._writer, name)
        if name not in self._STEPPED:
            return attr

        def shifted(tag: str, value: Any, global_step: int | None = None, *args: Any, **kwargs: Any) -> Any:
            step = kwargs.pop("global_step", global_step)
            return attr(tag, value, None if step is None else int(step) + self.offset, *args, **kwargs)

        return shifted


def tb_writer(run_dir: str | Path, purge_step: int | None = None):
    """The run's TensorBoard writer (``runs/NAME/tb``). ``purge_step`` drops events at or after that
    step, so a resumed run continues one step axis instead of duplicating it. Inside a pipeline the
    stage's steps (and ``purge_step``) are shifted by its slot's offset."""
    from torch.utils.tensorboard import SummaryWriter

    slot = current_slot()
    offset = slot.step_offset if slot is not None else 0
    purge = None if purge_step is None else purge_step + offset
    writer = SummaryWriter(log_dir=str(Path(run_dir) / "tb"), purge_step=purge)
    return OffsetWriter(writer, offset) if offset else writer
