"""Run folders, as DESIGN says: ``runs/NAME/`` with ``config.yaml`` (resolved), ``stages/NN_STAGE/``,
``tb/`` (TensorBoard), ``results.json``, ``report.md`` and ``plots/``: creating and locking one, its results
file, and the one TensorBoard writer factory every stage uses (through its
:class:`~evoarena.training.protocol.StageContext`)."""

from __future__ import annotations

import errno
import json
import signal
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel

from evoarena.config import NumericsRecord, dump_config
from evoarena.policies import numerics
from evoarena.storage import RunLock, atomic_write_text, read_json

CONFIG_FILE = "config.yaml"
RESULTS_FILE = "results.json"


_LOCKS: dict[Path, RunLock] = {}
_CURRENT: list[Path] = []


def current_run_dir() -> Path | None:
    """The run folder this process created or reopened last (what an interrupt's resume hint names)."""
    return _CURRENT[-1] if _CURRENT else None


def lock_run(run_dir: str | Path) -> RunLock:
    """Hold the run folder's lock for the rest of this process (again for the same folder is a no-op);
    another live process holding it is an error naming its pid."""
    key = Path(run_dir).resolve()
    if key not in _LOCKS:
        _LOCKS[key] = RunLock(key).acquire()
    return _LOCKS[key]


def unlock_all() -> None:
    """Release every run folder this process holds (the end of a command)."""
    while _LOCKS:
        _LOCKS.popitem()[1].release()


def check_run_dir(run_dir: str | Path, resume: bool = False) -> Path:
    """The run folder checked before any work: for a new run, a folder (or nothing) that holds no run
    and can be created; for ``resume``, an existing run. Creates nothing."""
    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{run_dir}: no {CONFIG_FILE}; not a run folder to resume")
        return run_dir
    if (run_dir / CONFIG_FILE).exists():
        raise ValueError(f"{run_dir} already holds a run; pass --resume {run_dir} to continue it, "
                         f"or choose another --run-dir")
    for parent in [run_dir, *run_dir.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder", str(parent))
            break
    return run_dir


def _adopt_numerics(run_dir: Path, config: BaseModel, resume: bool) -> None:
    """A new run decides its numerics afresh; a resumed one takes those its config.yaml recorded. Either
    way the decisions are written to ``config.numerics`` now and whenever a new one is made."""
    recorded = getattr(config, "numerics", None)
    if resume:
        numerics.adopt(recorded.model_dump() if recorded is not None else None)
    else:
        numerics.reset()
    threads = int(getattr(config, "threads", 0) or 0)
    if threads:
        torch.set_num_threads(threads)
    if "numerics" not in type(config).model_fields:
        return

    def record(decided: dict[str, Any]) -> None:
        config.numerics = NumericsRecord.model_validate(decided)  # type: ignore[attr-defined]
        atomic_write_text(run_dir / CONFIG_FILE, dump_config(config))

    config.numerics = NumericsRecord.model_validate(numerics.decisions())  # type: ignore[attr-defined]
    numerics.on_change(record)


def create_run(run_dir: str | Path, config: BaseModel, resume: bool = False) -> Path:
    """Create (or, with ``resume``, reopen) a run folder, take its lock, and write its resolved
    ``config.yaml`` with the run's numerics decisions (threads, device, autocast probes; a resumed run
    reuses those it recorded). A new run refuses a folder that already holds a run."""
    run_dir = check_run_dir(run_dir, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock_run(run_dir)
    _CURRENT.append(run_dir)
    _adopt_numerics(run_dir, config, resume)
    atomic_write_text(run_dir / CONFIG_FILE, dump_config(config))
    return run_dir


def read_results(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RESULTS_FILE
    return read_json(path) if path.is_file() else {}


def update_results(run_dir: str | Path, key: str, value: Any) -> dict[str, Any]:
    """Set ``results.json[key] = value`` atomically; returns the whole results."""
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


def resume_purge_step(resume: bool, saved_step: int) -> int | None:
    """The TensorBoard purge step of a stage that (re)starts at ``saved_step``: a resumed stage drops
    what the interrupted process logged after its last checkpoint (at ``saved_step``; everything when it
    had none), so no step is logged twice; a fresh stage purges nothing."""
    if not resume:
        return None
    return saved_step + 1 if saved_step > 0 else 0


def _wait_for_a_later_second(tb_dir: Path, limit_s: float = 2.0) -> None:
    """Wait until the clock's second is later than every event file's in ``tb_dir``. TensorBoard reads a folder's
    files in name order; a name holds the second it was opened, then the host, the process id and a per-process
    counter, compared as text. Two files of one second can sort against their write order (counter 10 before 9,
    another process's id), and a resumed stage's purge then drops what a later stage wrote. Files from more than
    ``limit_s`` in the future (a clock that moved back) are not waited for."""
    fields = (p.name.split(".") for p in tb_dir.glob("events.out.tfevents.*"))
    stamps = [int(f[3]) for f in fields if len(f) > 3 and f[3].isdigit()]
    if not stamps:
        return
    wait = max(stamps) + 1 - time.time()
    if 0 < wait <= limit_s:
        time.sleep(wait)


def tb_writer(run_dir: str | Path, purge_step: int | None = None, offset: int = 0):
    """The run's TensorBoard writer (``runs/NAME/tb``). ``purge_step`` drops events at or after that
    step, so a resumed run continues one step axis instead of duplicating it. A pipeline stage's steps (and
    ``purge_step``) are shifted by ``offset``, where the stage starts on the run's axis."""
    from torch.utils.tensorboard import SummaryWriter

    purge = None if purge_step is None else purge_step + offset
    _wait_for_a_later_second(Path(run_dir) / "tb")
    writer = SummaryWriter(log_dir=str(Path(run_dir) / "tb"), purge_step=purge)
    return OffsetWriter(writer, offset) if offset else writer


class StopOnInterrupt:
    """SIGINT sets ``requested``; a training loop saves a checkpoint at the end of its step and stops (a second
    SIGINT raises KeyboardInterrupt at once)."""

    def __init__(self) -> None:
        self.requested = False
        self._old = None

    def __enter__(self) -> StopOnInterrupt:
        def handler(signum, frame):  # noqa: ARG001
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True

        try:
            self._old = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
