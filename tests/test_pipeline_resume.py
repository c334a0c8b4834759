"""The quickstart's pipeline, shrunk, in new processes: the same seed gives the same run bit for bit in fp32, and a
pipeline SIGKILLed in its cloning or PPO stage then resumed (finished stages skipped) equals the uninterrupted
one, by every TensorBoard scalar (timings aside) and every saved tensor. Its twin for single stages and the
league: ``tests/test_reproducibility.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from e2e_runs import QUICK, assert_same_run, evoarena, json_value, killed_when, run_into, scalars, tensors


@pytest.fixture(scope="module")
def quick_reference(tmp_path_factory) -> Path:
    return run_into(tmp_path_factory.mktemp("quick") / "run", "quick_reference")


@pytest.mark.e2e
def test_same_seed_same_pipeline_in_a_new_process(quick_reference, tmp_path):
    assert_same_run(quick_reference, run_into(tmp_path / "again", "quick_reference"))
    assert len(scalars(quick_reference)) > 10 and tensors(quick_reference)


def _bc_step(run: Path) -> int:
    return max((json_value(p, "step") for p in run.glob("stages/02_finetune/state/*/trainer_state.json")),
               default=-1)


@pytest.mark.e2e
@pytest.mark.parametrize("stage", ["cloning", "ppo"])
def test_a_pipeline_killed_in_a_stage_then_resumed_equals_the_uninterrupted_one(quick_reference, tmp_path, stage):
    run = tmp_path / "run"
    if stage == "cloning":
        ready = lambda: _bc_step(run) >= 2  # noqa: E731
    else:
        ready = lambda: json_value(run / "stages/03_train/checkpoint/trainer_state.json", "update") >= 2  # noqa: E731
    killed_when(["run", *QUICK, "--run-dir", str(run)], ready)
    state = json.loads((run / "pipeline.json").read_text())["stages"]
    assert state["02_finetune" if stage == "cloning" else "03_train"]["status"] == "running"
    evoarena("run", "--resume", str(run))
    assert_same_run(quick_reference, run)
