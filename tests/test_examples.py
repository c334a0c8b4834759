"""The scripts in examples/ run as their docstrings say (each in a real subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # every test here runs an example script in a new process

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path = ROOT) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_watch_scripted_match_prints_a_transcript_and_the_expected_scores():
    out = run(str(ROOT / "examples/watch_scripted_match.py"), "--episodes", "10")
    assert "round 20:" in out
    assert "50.000 +- 0.000" in out  # tit_for_tat vs suspicious_tit_for_tat echo, as the docstring says


def test_run_chain_then_evaluate_the_saved_agent(tmp_path):
    run_dir = tmp_path / "chain"
    out = run(str(ROOT / "examples/run_chain.py"), "--quick", "--run-dir", str(run_dir))
    assert "train over finetune:" in out and (run_dir / "report.md").is_file()
    ckpt = run_dir / "stages/03_train/checkpoint"  # a training checkpoint with one policy is an agent
    out = run(str(ROOT / "examples/evaluate_saved_agent.py"), str(ckpt), "--episodes", "3")
    assert f"agent {ckpt}/policies/main in dilemma_v0" in out.splitlines()[0]
    assert "tit_for_tat: agent" in out and "mean: agent" in out
