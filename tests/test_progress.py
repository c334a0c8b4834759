"""Progress: labelled elapsed and remaining time from the first step on; plain whole lines off a terminal."""

from __future__ import annotations

import io

from evoarena.training.infra import progress
from evoarena.training.infra.progress import PlainLines, clock, progress_bar, times_text


def test_clock_and_labelled_times():
    assert clock(75.4) == "1:15" and clock(3725) == "1:02:05" and clock(-1) == "0:00"
    assert times_text(12.0, 0, 30) == "elapsed 0:12 · left: after the first step"
    # one update done in 20 s, 29 to go: an estimate already (not -:--:--)
    assert times_text(20.0, 1, 29) == "elapsed 0:20 · left ~9:40"


def test_plain_lines_off_a_terminal_are_whole_and_labelled(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    out = io.StringIO()
    bar = PlainLines("[3/4] ppo", total=30, completed=0, unit="updates", stream=out, every_s=1e9)
    for _ in range(30):
        now[0] += 20.0
        bar.update(1, info="return main 49.9, 300 decisions/s " + "x" * 100)
    lines = out.getvalue().splitlines()
    assert len(lines) == 11  # after the first update, then one line per tenth (every_s is out of reach here)
    assert lines[0].startswith("[3/4] ppo: 1/30 updates, elapsed 0:20 · left ~9:40 · return main 49.9")
    assert lines[1].startswith("[3/4] ppo: 3/30 updates, elapsed 1:00 · left ~9:00 · return main 49.9")
    assert lines[-1].startswith("[3/4] ppo: 30/30 updates, elapsed 10:00 · left ~0:00")
    assert all(len(ln) > 150 for ln in lines)  # never cut to 80 columns


def test_progress_bar_writes_plain_lines_when_stderr_is_not_a_terminal():
    out = io.StringIO()
    with progress_bar("clone player", 4, unit="steps", stream=out) as update:
        for _ in range(4):
            update(1, info="held-out accuracy 0.974")
        update(0, info="held-out accuracy 0.968 (final)")  # after the work: the number the summary says
    text = out.getvalue()
    assert "\x1b[" not in text and "━" not in text  # no bar, no escape codes
    assert text.splitlines()[-1].startswith("clone player: 4/4 steps, elapsed 0:00 · left ~0:00 · held-out "
                                            "accuracy 0.968 (final)")
    silent = io.StringIO()
    with progress_bar("x", 3, enabled=False, stream=silent) as update:
        update(1)
    assert silent.getvalue() == ""


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_terminal_bar_labels_elapsed_and_left_from_the_first_step():
    out = Tty()
    with progress_bar("ppo", 30, unit="updates", stream=out) as update:
        update(1, info="return main 49.9")
    text = out.getvalue()
    assert "1/30" in text and "updates" in text and "elapsed 0:00" in text and "left ~0:00" in text
    assert "-:--:--" not in text and "return main 49.9" in text
