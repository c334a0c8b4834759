"""Progress of a stage on stderr: a rich bar on a terminal, plain lines anywhere else (a log file, a pipe, CI).

Both say what they count, the time elapsed and an estimate of the time left, labelled (``elapsed 0:42 ·
left ~1:05``). The estimate is the mean time per step since the bar opened (steps done before a resume are
not counted), so it appears as soon as the first step (the first PPO update) ends; before that the bar
says ``left: after the first step``. Off a terminal a line is printed at most every ``PLAIN_EVERY_S``
seconds or every tenth of the work, after the first step and at the end; lines are never cut to a width.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

PLAIN_EVERY_S = 15.0


def clock(seconds: float) -> str:
    """``75.4`` -> ``1:15``; ``3725`` -> ``1:02:05``."""
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def remaining(elapsed: float, done: int, total: int) -> float | None:
    """Seconds left at the mean pace of the ``done`` steps this session (None before the first one)."""
    if done <= 0 or total <= 0:
        return None
    return elapsed / done * max(0, total - done)


def times_text(elapsed: float, done: int, left_steps: int) -> str:
    """``elapsed 0:42 · left ~1:05`` (``left: after the first step`` until one step is done)."""
    est = remaining(elapsed, done, done + left_steps)
    left = "left: after the first step" if est is None else f"left ~{clock(est)}"
    return f"elapsed {clock(elapsed)} · {left}"


class _Clock:
    """What both displays need: the start, the steps done this session, the last info text."""

    def __init__(self, total: int, completed: int) -> None:
        self.t0 = time.perf_counter()
        self.total, self.start, self.completed, self.info = total, completed, completed, ""

    def times(self) -> str:
        return times_text(time.perf_counter() - self.t0, self.completed - self.start,
                          max(0, self.total - self.completed))


class PlainLines:
    """Progress as whole lines on a stream that is not a terminal."""

    def __init__(self, label: str, total: int, completed: int, unit: str, stream: TextIO,
                 every_s: float = PLAIN_EVERY_S) -> None:
        self.label, self.unit, self.stream, self.every_s = label, unit, stream, every_s
        self.clock = _Clock(total, completed)
        self._last_t = time.perf_counter()
        self._last_tenth = self._tenth(completed)
        self._shown = ""

    def _tenth(self, done: int) -> int:
        return int(10 * done / self.clock.total) if self.clock.total else 10

    def update(self, advance: int = 1, info: str | None = None) -> None:
        c = self.clock
        c.completed += advance
        if info is not None:
            c.info = info
        now = time.perf_counter()
        first = c.completed - c.start == advance  # the first step: the first estimate of the time left
        due = first or now - self._last_t >= self.every_s or self._tenth(c.completed) > self._last_tenth
        done = c.completed >= c.total
        if (advance and (due or done)) or (done and not advance and c.info != self._shown):
            self.line()  # (the second case: a last word once the work is done, e.g. the final accuracy)
            self._last_t, self._last_tenth = now, self._tenth(c.completed)

    def line(self) -> None:
        c = self.clock
        text = f"{self.label}: {c.completed}/{c.total} {self.unit}, {c.times()}"
        self.stream.write(text + (f" · {c.info}" if c.info else "") + "\n")
        self.stream.flush()
        self._shown = c.info


def _rich_progress(unit: str, console: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn
    from rich.table import Column
    from rich.text import Text

    class TimesColumn(ProgressColumn):
        """``elapsed 0:42 · left ~1:05`` from the steps done since the bar opened."""

        def render(self, task: Any) -> Text:
            done = int(task.completed) - int(task.fields.get("start", 0))
            left = int(max(0, (task.total or 0) - task.completed))
            return Text(times_text(task.elapsed or 0.0, done, left), style="progress.elapsed")

    keep = Column(no_wrap=True)  # the label, counts and times stay whole; the bar and the info give way
    return Progress(TextColumn("[bold]{task.description}", table_column=keep), BarColumn(bar_width=20),
                    MofNCompleteColumn(table_column=keep), TextColumn(unit, table_column=keep),
                    TimesColumn(table_column=keep),
                    TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis")),
                    console=console)


@contextmanager
def progress_bar(description: str, total: int, completed: int = 0, unit: str = "steps", enabled: bool = True,
                 stream: TextIO | None = None) -> Iterator[Callable[..., None]]:
    """Progress of ``total`` steps (``completed`` already done); yields ``update(advance=1, info=None)``.
    A rich bar when ``stream`` (stderr) is a terminal, plain lines otherwise, nothing when not ``enabled``."""
    from rich.console import Console

    label = description
    stream = stream or sys.stderr
    if not enabled:
        yield lambda advance=1, info=None: None
        return
    console = Console(file=stream)
    if not console.is_terminal:
        plain = PlainLines(label, total, completed, unit, stream)
        yield plain.update
        return
    with _rich_progress(unit, console) as progress:
        task = progress.add_task(label, total=total, completed=completed, info="", start=completed)

        def update(advance: int = 1, info: str | None = None) -> None:
            fields: dict[str, Any] = {} if info is None else {"info": info}
            progress.update(task, advance=advance, **fields)

        yield update
