"""Same seed, same run, bit for bit in fp32; a SIGKILL at any point then --resume gives the uninterrupted
run (a PPO stage, a league); the tokenizer learns the same vocabulary in every process; one process per run
folder. The quickstart's whole pipeline: ``tests/test_pipeline_resume.py``; the helpers: ``tests/e2e_runs.py``.

Every run here is a real `evoarena` subprocess (a new process is what used to change the tokenizer),
compared by every TensorBoard scalar (timings under perf/ aside) and every saved tensor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from e2e_runs import (
    ENV,
    LEAGUE,
    PPO,
    ROOT,
    assert_same_run,
    evoarena,
    json_value,
    killed_when,
    run_into,
    scalars,
    tb_steps,
    tensors,
)

from evoarena.policies.io import tensors_sha256

# ---------------------------------------------------------------------------- tokenizer


@pytest.mark.e2e
def test_two_processes_learn_the_same_tokenizer(tmp_path):
    code = ("import json, sys; from evoarena.policies import train_wordpiece, world_corpus; "
            "texts = world_corpus() + [l.split(' ')[0] for l in open(sys.argv[1]).read().splitlines()[:20000]]; "
            "print(json.dumps(train_wordpiece(texts, 1500).get_vocab(), sort_keys=True))")
    conll = Path(os.environ.get("EVOARENA_CONLL_DIR", ROOT.parent / "shared/data/conll2003")) / "train.txt"
    vocabs = [subprocess.run([sys.executable, "-c", code, str(conll)], env=ENV, capture_output=True, text=True,
                             check=True).stdout for _ in range(2)]
    assert vocabs[0] == vocabs[1] and len(json.loads(vocabs[0])) > 500


def test_the_weights_hash_is_equal_for_equal_tensors_in_any_order():
    a = {"x": torch.arange(6.0).reshape(2, 3), "y": torch.ones(2, dtype=torch.bfloat16)}
    b = {"y": torch.ones(2, dtype=torch.bfloat16), "x": torch.arange(6.0).reshape(2, 3).clone()}
    assert tensors_sha256(a) == tensors_sha256(b)
    assert tensors_sha256(a) != tensors_sha256({**a, "x": a["x"].reshape(3, 2)})  # shape counts
    assert tensors_sha256(a) != tensors_sha256({**a, "y": a["y"].float()})  # dtype counts


# ---------------------------------------------------------------------------- one stage: PPO, a league


@pytest.fixture(scope="module")
def ppo_reference(tmp_path_factory) -> Path:
    return run_into(tmp_path_factory.mktemp("ppo") / "run", "ppo_reference")


@pytest.fixture(scope="module")
def league_reference(tmp_path_factory) -> Path:
    return run_into(tmp_path_factory.mktemp("league") / "run", "league_reference")


@pytest.mark.e2e
@pytest.mark.parametrize("reference", ["ppo_reference", "league_reference"])
def test_same_seed_same_run_in_a_new_process(reference, tmp_path, request):
    first = request.getfixturevalue(reference)
    assert_same_run(first, run_into(tmp_path / "again", reference))
    assert len(scalars(first)) > 10 and tensors(first)


@pytest.mark.e2e
@pytest.mark.parametrize("when", ["before_first_checkpoint", "after_a_checkpoint"])
def test_sigkill_then_resume_equals_the_uninterrupted_ppo_run(ppo_reference, tmp_path, when):
    run = tmp_path / "run"
    ckpt = run / "stages/01_train/checkpoint/trainer_state.json"
    if when == "before_first_checkpoint":
        args = [*PPO, "--set", "checkpoint_every=100"]  # only the final checkpoint: kill after update 3 is logged
        ready = lambda: max(tb_steps(run, "train/main/policy_loss"), default=0) >= 3  # noqa: E731
    else:
        args = [*PPO, "--set", "checkpoint_every=2"]
        ready = lambda: json_value(ckpt, "update") >= 2 and max(  # noqa: E731
            tb_steps(run, "train/main/policy_loss"), default=0) > json_value(ckpt, "update")
    killed_when(["train", *args, "--run-dir", str(run)], ready)
    if when == "before_first_checkpoint":
        assert not ckpt.is_file()
    evoarena("train", "--resume", str(run))
    assert_same_run(ppo_reference, run)


@pytest.mark.e2e
def test_sigkill_then_resume_equals_the_uninterrupted_league_run(league_reference, tmp_path):
    """Killed after the checkpoint of update 4 (frozen members added, the exploiter reset at 3, PFSP results
    kept), resumed: the same scalars (league/ included) and weights (members, exploiter, start) as uninterrupted."""
    run = tmp_path / "run"
    ckpt = run / "stages/01_train/checkpoint/trainer_state.json"
    ready = lambda: json_value(ckpt, "update") >= 4 and max(  # noqa: E731
        tb_steps(run, "train/main/policy_loss"), default=0) > json_value(ckpt, "update")
    killed_when(["train", *LEAGUE, "--set", "checkpoint_every=2", "--run-dir", str(run)], ready)
    evoarena("train", "--resume", str(run))
    assert_same_run(league_reference, run)
    tags = scalars(run)
    assert "league/scripted_always_defect/weight" in tags and "league/league_exploiter_main_0@4/return" in tags
    assert "rollout/exploiter_main_0/episode_return" in tags
    assert "league/start/weight" in tags and "rollout/main/vs/start/episode_return" in tags
    assert "eval_averaged/score" in tags and (run / "stages/01_train/averaged/policies/main/policy.json").is_file()


# ---------------------------------------------------------------------------- one writer per run


@pytest.mark.e2e
def test_a_second_process_on_a_run_folder_fails_at_once_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    args = ["train", *PPO, "--set", "total_updates=200", "--run-dir", str(run)]
    holder = subprocess.Popen([sys.executable, "-m", "evoarena.cli", *args], env=ENV, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        lock, deadline = run / ".lock", time.time() + 120
        while time.time() < deadline and not (lock.is_file() and lock.read_text().strip()):
            time.sleep(0.05)
        second = evoarena("train", "--resume", str(run), check=False)
        assert second.returncode == 2 and holder.poll() is None  # refused while the holder runs: no waiting
        assert f"pid {holder.pid}" in second.stderr and second.stderr.count("\n") == 1, second.stderr
    finally:
        holder.kill()
        holder.wait()
    # the holder died: its lock is stale and the next process takes it over
    resumed = evoarena("train", "--resume", str(run), "--set", "total_updates=1", check=False)
    assert "in use" not in resumed.stderr
