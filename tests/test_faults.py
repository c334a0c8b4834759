"""Faults end with one `error:` line naming the file or key and what would be right, exit 2, and leave
nothing half-written: file-system faults (a file in the way, a name too long, a read-only or full disk),
bad numbers in configs and checkpoints, damaged state files, sizes that cannot fit in memory."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from evoarena.cli import main

ROOT = Path(__file__).resolve().parents[1]
ENC = "policies.main.policy.encoder"
PPO = [str(ROOT / "configs/ppo_dilemma.yaml"), "--set", "policies.main.policy.init_from=null",
       "--set", f"{ENC}.hidden_size=32", "--set", f"{ENC}.intermediate_size=64",
       "--set", "total_updates=2", "--set", "episodes_per_update=8", "--set", "num_envs=8", "--set", "eval.episodes=2",
       "--set", "eval.every=0", "--set", "transcript_every=0", "--set", "policies.main.policy.encoder.autocast=off"]


def error_line(capsys, argv: list[str], after_work: bool = False) -> str:
    """Run the CLI; it must exit 2 with one ``error:`` line on stderr (the only line, unless the fault came
    ``after_work`` had printed its progress), and no traceback."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in err and err.count("error:") == 1, err
    assert after_work or "\n" not in err, err
    return last


def no_half_written(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if ".tmp-" in p.name or ".old-" in p.name], "temporaries left"


@pytest.mark.parametrize("override, key", [
    ("ppo.lr=.inf", "ppo.lr"), ("ppo.ent_coef=.inf", "ppo.ent_coef"), ("ppo.clip=.nan", "ppo.clip"),
    ("episodes_per_update=1e9", "episodes_per_update"), ("env.kwargs.rounds=1000000000", "env.kwargs"),
])
def test_bad_numbers_are_refused_before_any_work(tmp_path, capsys, override, key):
    err = error_line(capsys, ["train", *PPO, "--set", override, "--run-dir", str(tmp_path / "run")])
    assert key in err and "ppo_dilemma.yaml" in err
    assert not (tmp_path / "run").exists()


def test_memory_refusal_gives_an_estimate(tmp_path, capsys):
    err = error_line(capsys, ["train", *PPO, "--set", "episodes_per_update=1e9", "--run-dir", str(tmp_path / "r")])
    assert "GiB" in err and "lower episodes_per_update to at most" in err


def test_yaml_off_is_the_string_off(tmp_path):
    from evoarena.config import TrainConfig, load_config

    cfg = load_config(ROOT / "configs/ppo_dilemma.yaml", TrainConfig, ["policies.main.policy.encoder.autocast=off"])
    assert cfg.policies["main"].policy.encoder.autocast == "off"


def test_non_utf8_config_names_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: x\nseed: \xff\xfe\n")
    assert str(bad) in error_line(capsys, ["train", str(bad)])


def test_a_bad_init_from_writes_nothing_so_the_corrected_rerun_works(tmp_path, capsys):
    run = tmp_path / "run"
    err = error_line(capsys, ["train", *PPO, "--set", f"policies.main.policy.init_from={tmp_path}",
                              "--run-dir", str(run)])
    assert "policies.main.policy.init_from" in err and not run.exists()
    assert main(["train", *PPO, "--run-dir", str(run)]) == 0


@pytest.mark.parametrize("where", ["is_a_file", "under_a_file", "name_too_long"])
def test_a_run_folder_that_cannot_be_made(tmp_path, capsys, where):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    run = {"is_a_file": blocker, "under_a_file": blocker / "run", "name_too_long": tmp_path / ("x" * 300)}[where]
    err = error_line(capsys, ["train", *PPO, "--run-dir", str(run)])
    assert str(run if where == "name_too_long" else blocker) in err
    assert ("too long" in err) if where == "name_too_long" else ("not a folder" in err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.mark.parametrize("kind", ["read_only", "full"])
def test_a_read_only_or_full_disk(tmp_path, capsys, kind):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "ro,size=1m" if kind == "read_only" else "size=160k"):
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN)")
    try:
        err = error_line(capsys, ["train", *PPO, "--run-dir", str(disk / "run")], after_work=kind == "full")
        assert str(disk / "run") in err
        assert ("Read-only file system" in err) if kind == "read_only" else ("No space left on device" in err)
        no_half_written(disk)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("faults") / "run"
    assert main(["train", *PPO, "--run-dir", str(run)]) == 0
    return run


@pytest.mark.parametrize("value", [-1, "two", 0, 2.5])
def test_a_policy_json_with_a_bad_action_count_names_the_file(trained, tmp_path, capsys, value):
    ck = tmp_path / "ck"
    shutil.copytree(trained / "stages/01_train/checkpoint/policies/main", ck)
    meta = json.loads((ck / "policy.json").read_text())
    meta["num_actions"] = value
    (ck / "policy.json").write_text(json.dumps(meta))
    err = error_line(capsys, ["evaluate", "dilemma_v0", "--agents", f"ckpt:{ck}", "scripted:tit_for_tat",
                              "--episodes", "2"])
    assert str(ck / "policy.json") in err and "num_actions" in err


def test_a_truncated_trainer_state_names_the_file(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns(".lock"))
    state = run / "stages/01_train/checkpoint/trainer_state.json"
    state.write_text(state.read_text()[:40])
    err = error_line(capsys, ["train", "--resume", str(run), "--set", "total_updates=3"])
    assert str(state) in err and "damaged" in err


def test_canonical_weights_hash_is_equal_for_equal_weights(trained, tmp_path):
    """A checkpoint saved again (another file, maybe another header order) keeps its weights_sha256."""
    from evoarena.policies.io import load_policy, save_checkpoint

    src = trained / "stages/01_train/checkpoint/policies/main"
    again = save_checkpoint(tmp_path / "again", load_policy(src))
    a, b = (json.loads((p / "policy.json").read_text()) for p in (src, again))
    assert a["weights_sha256"] == b["weights_sha256"]
