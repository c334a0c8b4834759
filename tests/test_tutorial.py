"""The tutorial "writing your own world" (docs/guide/own-world.md) works as printed: its code is
examples/coordination_world.py, which passes PettingZoo's API test, is played by scripted agents, trained by PPO
in a pipeline, and is seen by the `evoarena` command through EVOARENA_PLUGINS."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORLD = ROOT / "examples" / "coordination_world.py"


def test_the_docs_print_the_tutorial_code_verbatim():
    page = (ROOT / "docs" / "guide" / "own-world.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    assert blocks, "the tutorial section shows no python code"
    source = WORLD.read_text()
    for block in blocks:
        assert block in source, block[:200]


@pytest.mark.e2e
def test_the_tutorial_world_runs_end_to_end():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(WORLD)], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = re.search(r"PPO learner vs always_red: ([\d.]+)", proc.stdout)
    assert m and float(m.group(1)) >= 9.0, proc.stdout[-2000:]
    assert "copy_partner vs always_red: 10.0" in proc.stdout


@pytest.mark.e2e
def test_the_command_line_sees_a_plugin_world():
    env = {**os.environ, "EVOARENA_PLUGINS": str(WORLD)}
    proc = subprocess.run([sys.executable, "-m", "evoarena.cli", "evaluate", "coordination_v0", "--agents",
                           "scripted:copy_partner", "scripted:always_red", "--episodes", "5"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "match_rate" in proc.stdout and "10.000" in proc.stdout
