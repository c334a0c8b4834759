"""Same seed, same run, bit for bit in fp32; a SIGKILL at any point then --resume gives the uninterrupted
run; the tokenizer learns the same vocabulary in every process; one process per run folder.

Every run here is a real `evoarena` subprocess (a new process is what used to change the tokenizer),
compared by every TensorBoard scalar (timings under perf/ aside) and every saved tensor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from evoarena.bench.scalars import read_scalars
from evoarena.policies.io import tensors_sha256

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "random"}

PPO = [str(ROOT / "configs/ppo_dilemma.yaml"), "--set", "policies.main.policy.init_from=null",
       "--set", "policies.main.policy.encoder.autocast=off", "--set", "policies.main.policy.encoder.hidden_size=32",
       "--set", "policies.main.policy.encoder.intermediate_size=64", "--set", "total_updates=8",
       "--set", "episodes_per_update=16", "--set", "num_envs=16", "--set", "eval.episodes=4",
       "--set", "eval.every=2", "--set", "transcript_every=0"]
#: the same run with a league: a pool seat (two anchors), one exploiter reset every 3 updates, members every 2
LEAGUE = [*PPO, "--set", 'seats.player_1={pool: [{agent: "scripted:tit_for_tat"}, {agent: "scripted:always_defect"}]}',
          "--set", "league={exploiters: 1, add_every: 2, exploiter_reset_every: 3, exploiter_share: 0.3}",
          "--set", "average_from=0.25", "--set", "hand_on=averaged"]  # and a weight average from update 3
ENC_KEYS = ("stages.pretrain.encoder", "stages.finetune.bc.policy.encoder", "stages.train.policies.main.policy.encoder")
QUICK = [str(ROOT / "configs/quickstart.yaml")] + [a for pair in (
    [f"{k}.autocast=off" for k in ENC_KEYS]
    + ["stages.pretrain.steps=20", "stages.pretrain.eval_every=10", "stages.pretrain.checkpoint_every=10",
       "stages.pretrain.corpus.episodes_per_env=40", "stages.finetune.bc.train_episodes=60",
       "stages.finetune.bc.heldout_episodes=10", "stages.finetune.bc.eval_episodes=2", "stages.finetune.optim.epochs=3",
       "stages.finetune.optim.batch_size=32", "stages.finetune.checkpoint_every=2", "stages.finetune.eval_every=4",
       "stages.train.total_updates=6", "stages.train.episodes_per_update=16", "stages.train.num_envs=16",
       "stages.train.eval.episodes=2", "stages.train.eval.every=2", "stages.train.checkpoint_every=2",
       "stages.train.snapshot_every=2", "stages.evaluate.episodes=2"]) for a in ("--set", pair)]


def evoarena(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "evoarena.cli", *args], env=ENV, capture_output=True, text=True,
                          timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def killed_when(args: list[str], ready: Callable[[], bool], timeout: float = 300) -> None:
    """Start ``evoarena ARGS`` and SIGKILL it as soon as ``ready()`` holds (it must still be running)."""
    proc = subprocess.Popen([sys.executable, "-m", "evoarena.cli", *args], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None and not ready():
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the run but timings, as TensorBoard shows them (purged events dropped)."""
    return {t: v for t, v in read_scalars(run_dir / "tb").items() if not t.startswith("perf/")}


def tensors(run_dir: Path) -> dict[str, str]:
    """A canonical hash of the tensors of every weights file of the run (by path in the run folder)."""
    from safetensors.torch import load_file

    return {str(p.relative_to(run_dir)): tensors_sha256(load_file(str(p)))
            for p in sorted(run_dir.rglob("*.safetensors"))}


def assert_same_run(a: Path, b: Path) -> None:
    sa, sb = scalars(a), scalars(b)
    assert sorted(sa) == sorted(sb)
    for tag in sa:
        steps = [s for s, _ in sb[tag]]
        assert len(steps) == len(set(steps)), f"{tag}: a step logged twice in {b}"
        assert sa[tag] == sb[tag], f"{tag} differs"
    ta, tb = tensors(a), tensors(b)
    assert sorted(ta) == sorted(tb) and ta == tb, [k for k in ta if ta.get(k) != tb.get(k)]


def tb_steps(run_dir: Path, tag: str) -> list[int]:
    try:
        return [s for s, _ in read_scalars(run_dir / "tb").get(tag, [])]
    except Exception:  # a file being written
        return []


def json_value(path: Path, key: str, default: int = -1) -> int:
    try:
        return int(json.loads(path.read_text()).get(key, default))
    except (OSError, ValueError):
        return default


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


# ---------------------------------------------------------------------------- one stage: PPO


#: fixture -> (command, arguments)
RUNS = {"ppo_reference": ("train", PPO), "quick_reference": ("run", QUICK), "league_reference": ("train", LEAGUE)}


def run_into(run: Path, fixture: str) -> Path:
    command, args = RUNS[fixture]
    evoarena(command, *args, "--run-dir", str(run))
    return run


@pytest.fixture(scope="module")
def ppo_reference(tmp_path_factory) -> Path:
    return run_into(tmp_path_factory.mktemp("ppo") / "run", "ppo_reference")


@pytest.fixture(scope="module")
def quick_reference(tmp_path_factory) -> Path:
    return run_into(tmp_path_factory.mktemp("quick") / "run", "quick_reference")


@pytest.fixture(scope="module")
def league_reference(tmp_path_factory) -> Path:
    return run_into(tmp_path_factory.mktemp("league") / "run", "league_reference")


@pytest.mark.e2e
@pytest.mark.parametrize("reference", list(RUNS))
def test_same_seed_same_run_in_a_new_process(reference, tmp_path, request):
    first = request.getfixturevalue(reference)
    assert_same_run(first, run_into(tmp_path / "again", reference))
    assert len(scalars(first)) > 10 and tensors(first)


@pytest.mark.e2e
@pytest.mark.parametrize("when", ["before_first_checkpoint", "after_a_checkpoint"])
def test_sigkill_then_resume_equals_the_uninterrupted_ppo_run(ppo_reference, tmp_path, when):
    run = tmp_path / "run"
    ckpt = run / "stages/01_ppo/checkpoint/trainer_state.json"
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
    ckpt = run / "stages/01_ppo/checkpoint/trainer_state.json"
    ready = lambda: json_value(ckpt, "update") >= 4 and max(  # noqa: E731
        tb_steps(run, "train/main/policy_loss"), default=0) > json_value(ckpt, "update")
    killed_when(["train", *LEAGUE, "--set", "checkpoint_every=2", "--run-dir", str(run)], ready)
    evoarena("train", "--resume", str(run))
    assert_same_run(league_reference, run)
    tags = scalars(run)
    assert "league/scripted_always_defect/weight" in tags and "league/league_exploiter_main_0@4/return" in tags
    assert "rollout/exploiter_main_0/episode_return" in tags
    assert "eval_averaged/score" in tags and (run / "stages/01_ppo/averaged/policies/main/policy.json").is_file()


# ---------------------------------------------------------------------------- the pipeline


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
