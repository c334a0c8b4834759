"""What the end-to-end reproducibility tests share: the shrunk configs they run, ``evoarena`` in a new process,
a process SIGKILLed when a condition holds, and two run folders compared by every TensorBoard scalar (timings
aside) and every saved tensor (``tests/test_reproducibility.py``, ``tests/test_pipeline_resume.py``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from evoarena.bench.scalars import read_scalars
from evoarena.policies.io import tensors_sha256

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "random"}

PPO = [str(ROOT / "configs/ppo_dilemma.yaml"), "--set", "policies.main.policy.init_from=null",
       "--set", "policies.main.policy.encoder.autocast=off", "--set", "policies.main.policy.encoder.hidden_size=32",
       "--set", "policies.main.policy.encoder.intermediate_size=64", "--set", "total_updates=8",
       "--set", "episodes_per_update=16", "--set", "num_envs=16", "--set", "eval.episodes=4",
       "--set", "eval.every=2", "--set", "transcript_every=0"]
#: the same run with a league: a pool seat (three anchors: two strategies and the learner's start), one exploiter
#: reset every 3 updates, members every 2
LEAGUE = [*PPO, "--set", 'seats.player_1={pool: [{agent: "scripted:tit_for_tat"}, {agent: "scripted:always_defect"}, '
          '{agent: start}]}',
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


#: the reference runs, by the name of the fixture that makes each
RUNS = {"ppo_reference": ("train", PPO), "quick_reference": ("run", QUICK), "league_reference": ("train", LEAGUE)}


def run_into(run: Path, fixture: str) -> Path:
    command, args = RUNS[fixture]
    evoarena(command, *args, "--run-dir", str(run))
    return run
