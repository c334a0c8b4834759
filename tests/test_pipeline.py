"""`evoarena run`: a miniature pipeline of all four stage kinds end to end (run folder, report, plots,
TensorBoard on one step axis), SIGKILL during PPO then --resume, and errors before any work starts."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from evoarena.bench.report import PNGS, SECTIONS
from evoarena.bench.scalars import read_scalars
from evoarena.cli import main
from evoarena.config import ConfigError, apply_overrides
from evoarena.training.pipeline import load_pipeline, plan

POOL = ["scripted:always_defect", "scripted:tit_for_tat", "random"]


@pytest.fixture(scope="module")
def mini(tiny_encoder):
    """``mini(updates=3, checkpoint_every=1)``: a new pipeline config of all four stage kinds on dilemma_v0
    (5 rounds), seconds each, on the tiny encoder."""

    def make(updates: int = 3, checkpoint_every: int = 1) -> dict:
        enc = tiny_encoder(vocab_size=200, max_length=48)
        return {
            "name": "mini", "seed": 0, "threads": 1,
            "env": {"id": "dilemma_v0", "kwargs": {"num_agents": 2, "rounds": 5}},
            "stages": [
                {"kind": "pretrain", "encoder": enc, "corpus": {"envs": ["dilemma_v0"], "episodes_per_env": 40},
                 "steps": 12, "batch_size": 16, "eval_every": 6, "checkpoint_every": 6, "log_every": 3},
                {"kind": "finetune", "task": "bc",
                 "bc": {"expert": "scripted:tit_for_tat", "opponents": POOL, "train_episodes": 40,
                        "heldout_episodes": 10, "eval_episodes": 4,
                        "policy": {"head": "linear", "standardize": True, "encoder": enc}},
                 "optim": {"lr": 2e-3, "batch_size": 32, "epochs": 2}, "log_every": 1},
                {"kind": "train", "policies": {"main": {"policy": {"encoder": enc}}},
                 "seats": {"player_0": {"policy": "main"},
                           "player_1": {"pool": [{"agent": a} for a in POOL] + [{"agent": "snapshot"}]}},
                 "shuffle_seats": True, "num_envs": 16, "episodes_per_update": 16, "total_updates": updates,
                 "snapshot_every": 1, "checkpoint_every": checkpoint_every,
                 "ppo": {"epochs": 1, "minibatch_size": 64, "kl_coef": 0.02},
                 "eval": {"every": 2, "episodes": 2, "opponents": POOL}},
                {"kind": "evaluate", "opponents": POOL, "unseen": ["scripted:alternator"], "episodes": 3},
            ],
        }

    return make


def write(tmp_path: Path, cfg: dict, name: str = "mini.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def report_form(report: str) -> list[str]:
    """The headings and the evolution table's rows (agents): what must not depend on an interruption (the
    example games are chosen where the stages play differently, so their rows depend on what was learned)."""
    lines = report.splitlines()
    rows: list[str] = []
    for ln in lines[next(i for i, ln in enumerate(lines) if ln.startswith("| ")):]:
        if not ln.startswith("|"):
            break
        if ln.startswith("| "):
            rows.append(ln.split("|")[1].strip())
    return [ln for ln in lines if ln.startswith("#")] + rows


@pytest.fixture(scope="module")
def finished(tmp_path_factory, mini):
    tmp = tmp_path_factory.mktemp("pipe")
    run_dir = tmp / "run"
    assert main(["run", str(write(tmp, mini())), "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_miniature_pipeline_writes_the_run_folder_report_and_plots(finished):
    run_dir = finished
    for key in ("01_pretrain", "02_finetune", "03_train", "04_evaluate"):
        assert (run_dir / "stages" / key).is_dir()
    assert (run_dir / "stages/01_pretrain/checkpoint/config.json").is_file()
    assert (run_dir / "stages/02_finetune/checkpoint/policy.json").is_file()
    assert (run_dir / "stages/03_train/checkpoint/policies/main/policy.json").is_file()
    # the BC stage started from the pretrain checkpoint and PPO from the clone (init_from: previous)
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert [s["kind"] for s in saved["stages"]] == ["pretrain", "finetune", "train", "evaluate"]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["pipeline"]["stages"][-1]["status"] == "done"
    ev = results["04_evaluate"]
    assert ev["stage_rows"] == ["pretrain", "finetune", "train"]
    assert {"random", "scripted:tit_for_tat", "scripted:pavlov"} <= set(ev["rows"])
    assert ev["columns"] == POOL + ["scripted:alternator"]
    games = 2 * 3 * len(POOL)  # both seat orders x episodes x pool opponents
    assert ev["rows"]["train"]["pool"]["games"] == games
    assert [(g["agent"], g["over"]) for g in ev["gains"]][:2] == [("finetune", "pretrain"), ("train", "finetune")]
    # deterministic baselines are exact: tit_for_tat vs always_defect over 5 rounds = 0 + 4 x 1
    assert ev["rows"]["scripted:tit_for_tat"]["cells"]["scripted:always_defect"]["mean"] == 4.0


def test_report_sections_in_order_with_the_evolution_table_first(finished):
    report = (finished / "report.md").read_text()
    assert report.startswith("# mini: evolution report")
    headings = [ln for ln in report.splitlines() if ln.startswith("## ")]
    assert headings == list(SECTIONS)
    evolution = report.split("## Evolution\n")[1].split("\n## ")[0]
    table = [ln for ln in evolution.splitlines() if ln.startswith("| ")]
    assert table[0].startswith("| agent | pool (3 opponents) | unseen (1) | gain over previous stage: pool |")
    assert [ln.split("|")[1].split("(")[0].strip() for ln in table[1:]] == [
        "**pretrain**", "**finetune**", "**train**", "scripted:tit_for_tat", "random"]
    train_row = next(ln for ln in table if ln.startswith("| **train**"))
    assert re.search(r"\| [+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\].* over finetune \|", train_row)
    # which checkpoint each row is, and how the PPO one was chosen
    assert re.search(r"- \*\*train\*\*: `stages/03_train/best/policies/main`: best greedy eval score of 3 "
                     r"evaluations during training \(update \d of 3", evolution)
    # no table wider than the heat map replaced: at most 7 columns anywhere
    widths = [ln.count("|") - 1 for ln in report.splitlines() if ln.startswith("|")]
    assert max(widths) <= 7
    # the stages table: every stage's summary filled in, PPO's in words
    stages = report.split("## Stages\n")[1]
    rows = [ln for ln in stages.splitlines() if ln.startswith("| 0")]
    assert len(rows) == 4 and all(ln.split("|")[5].strip() for ln in rows)
    assert "eval score (mean return vs the eval opponents)" in rows[2] and "at update 0 ->" in rows[2]
    assert "{" not in stages  # no JSON dump
    # example games: the stages side by side against one opponent
    examples = report.split("## Example games\n")[1].split("\n## ")[0]
    assert re.search(r"\| step \| pretrain \(mean .*\) \| finetune \(mean .* \| train \(mean .* \|", examples)
    assert re.search(r"\| round 1 \| \**[CD] [CD]; payoffs", examples)  # the shared label moved to the first column


def test_report_pngs_are_drawn_and_linked(finished):
    report = (finished / "report.md").read_text()
    for png in PNGS:
        data = (finished / "plots" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png
        assert f"(plots/{png})" in report
        width, height = struct.unpack(">II", data[16:24])
        assert 300 < width < 2200 and 150 < height < 2600, (png, width, height)


def test_learning_curve_panels_and_ppo_starts_at_update_0(finished):
    from evoarena.bench.report_plots import panels_of

    scalars = read_scalars(finished / "tb")
    state = json.loads((finished / "pipeline.json").read_text())["stages"]
    train = {"key": "03_train", "name": "train", "kind": "train", **state["03_train"]}
    titles = [p[0] for p in panels_of(train, list(scalars))]
    assert titles == ["PPO rollouts: mean episode return", "greedy eval score vs the training pool"]
    # the greedy eval at update 0 (before any update) and at 2 and 3 (every: 2, and the end)
    offset = state["03_train"]["step_offset"]
    assert [s - offset for s, _ in scalars["eval/score"]] == [0, 2, 3]
    results = json.loads((finished / "results.json").read_text())["03_train"]
    assert [e["update"] for e in results["evals"]] == [0, 2, 3]
    assert scalars["eval/score"][0][1] == pytest.approx(results["evals"][0]["score"])


def test_tensorboard_tags_spell_each_opponent_one_way_and_keep_groups_apart(finished):
    tags = list(read_scalars(finished / "tb"))
    assert not [t for t in tags if ":" in t]  # scripted:NAME is scripted_NAME everywhere
    # the learner's evaluations while it trains: eval/<opponent>/...; the evaluate stage: evaluate/<agent>/...
    assert "eval/scripted_tit_for_tat/learner_return" in tags and "eval/random/learner_return" in tags
    assert "eval/scripted_tit_for_tat/player_0/clone_score" in tags  # the clone's games, same spelling
    assert "evaluate/train/scripted_tit_for_tat/score" in tags and "evaluate/random/random/score" in tags
    assert "evaluate/train/pool_score" in tags and "evaluate/train/unseen_score" in tags
    assert not [t for t in tags if t.startswith("eval/") and t.endswith("/score") and t.count("/") == 3]


def test_every_stage_logs_on_one_increasing_step_axis(finished):
    scalars = read_scalars(finished / "tb")
    state = json.loads((finished / "pipeline.json").read_text())["stages"]
    prefixes = {"01_pretrain": "pretrain/", "02_finetune": "finetune/", "03_train": "train/main/",
                "04_evaluate": "evaluate/train/"}
    spans = {}
    for key, prefix in prefixes.items():
        steps = [s for tag, pts in scalars.items() if tag.startswith(prefix) for s, _ in pts]
        assert steps, f"no TensorBoard scalars under {prefix}"
        spans[key] = (min(steps), max(steps))
        lo = state[key]["step_offset"]
        assert lo <= min(steps) and max(steps) <= lo + state[key]["length"] + 1
    order = list(prefixes)
    for a, b in zip(order, order[1:]):
        assert spans[a][1] < spans[b][0], (a, spans[a], b, spans[b])


@pytest.mark.e2e
def test_sigkill_during_ppo_then_resume_skips_finished_stages(tmp_path, finished, mini):
    cfg = mini(updates=40, checkpoint_every=1)
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "evoarena.cli", "run", str(write(tmp_path, cfg)), "--run-dir",
                             str(run_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    marker = run_dir / "stages/03_train/checkpoint/trainer_state.json"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if marker.is_file() and json.loads(marker.read_text())["update"] >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.loads((run_dir / "pipeline.json").read_text())["stages"]
    assert state["03_train"]["status"] == "running"
    done_before = {k: state[k]["finished_at"] for k in ("01_pretrain", "02_finetune")}
    killed_at = json.loads(marker.read_text())["update"]

    assert main(["run", "--resume", str(run_dir)]) == 0
    state = json.loads((run_dir / "pipeline.json").read_text())["stages"]
    assert {k: state[k]["finished_at"] for k in done_before} == done_before  # not run again
    assert all(s["status"] == "done" for s in state.values())
    results = json.loads((run_dir / "results.json").read_text())
    assert results["03_train"]["updates"] == 40 and killed_at < 40
    # one step axis: every PPO update logged, at its own step (a resumed update is re-logged at the same step;
    # TensorBoard's purge marker normally drops the killed run's copy, but a kill landing between the event
    # write and the checkpoint can leave both copies of that one step, seen once in CI)
    steps = [s for s, _ in read_scalars(run_dir / "tb")["train/main/policy_loss"]]
    assert steps == sorted(steps) and len(set(steps)) == 40 and len(steps) - len(set(steps)) <= 1
    assert report_form((run_dir / "report.md").read_text()) == report_form((finished / "report.md").read_text())


BAD_LAST_STAGE = [
    ({"opponnents": POOL}, r"stage 4 \(evaluate\).*unknown key 'opponnents'"),
    ({"opponents": ["scripted:tit_for_tatt"]}, r"stage 4 \(evaluate\).*opponents\[0\].*tit_for_tatt"),
    ({"episodes": 0}, r"stage 4 \(evaluate\).*episodes"),
    ({"kind": "evalute"}, r"stages\[3\]\.kind = 'evalute'"),
    ({"env": {"id": "dilemma_v0", "kwargs": {"num_agents": 9}}}, r"stage 4 \(evaluate\).*num_agents"),
    # the train stage picks its best checkpoint on seeds 1000000, 1000001: the table must play other games
    ({"eval_seed": 999_999}, r"stage 3 \(train\): eval.seed = 1000000: its selection games .*overlap the games "
                             r"of stage 4 \(evaluate\)"),
]


@pytest.mark.parametrize(("change", "message"), BAD_LAST_STAGE)
def test_an_error_in_the_last_stage_stops_before_any_work(tmp_path, capsys, change, message, mini):
    cfg = mini()
    cfg["stages"][-1].update(change)
    run_dir = tmp_path / "run"
    assert main(["run", str(write(tmp_path, cfg)), "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err, re.S), err
    assert not run_dir.exists()


@pytest.mark.parametrize(("stage", "init", "message"), [
    (2, "stage:nope", r"stage 3 \(train\): init_from = 'stage:nope': no earlier stage is named 'nope'"),
    (2, "stage:evaluate", r"no earlier stage is named 'evaluate'"),
    (1, "/no/such/folder", r"stage 2 \(finetune\): init_from = '/no/such/folder': no such folder"),
    (0, "previous", None),
])
def test_init_from_is_checked_before_work(tmp_path, stage, init, message, mini):
    cfg = mini()
    cfg["stages"][stage]["init_from"] = init
    pc = load_pipeline(write(tmp_path, cfg))
    if message is None:
        assert plan(pc)[0].init is None
        return
    with pytest.raises(ConfigError, match=message):
        plan(pc)


def test_a_policy_of_another_world_is_refused(tmp_path, mini):
    cfg = mini()
    train = cfg["stages"][2]
    train["env"] = {"id": "negotiation_v0"}
    train["seats"] = {"player_0": {"policy": "main"}, "player_1": {"agent": "scripted:conceder"}}
    train["eval"]["opponents"] = ["scripted:conceder"]
    with pytest.raises(ConfigError, match=r"stage 3 \(train\): init_from = stage:finetune: .*dilemma_v0.*"
                                          r"negotiation_v0"):
        plan(load_pipeline(write(tmp_path, cfg)))


def test_overrides_address_stages_by_name_or_index(mini):
    data = mini()
    out = apply_overrides(data, ["stages.train.ppo.lr=1.0e-4", "stages.0.steps=7", "name=x"])
    assert out["stages"][2]["ppo"]["lr"] == 1e-4 and out["stages"][0]["steps"] == 7 and out["name"] == "x"
    with pytest.raises(ConfigError, match="no list element 'trian'.*pretrain, finetune, train, evaluate"):
        apply_overrides(data, ["stages.trian.ppo.lr=1e-4"])


def test_a_pipeline_runs_from_python_and_resume_of_a_finished_run_does_nothing(finished, capsys):
    from evoarena.training.pipeline import run_pipeline

    before = json.loads((finished / "pipeline.json").read_text())
    results = run_pipeline(None, run_dir=finished, resume=True)
    assert json.loads((finished / "pipeline.json").read_text()) == before
    assert results["04_evaluate"]["rows"]["train"]["pool"]["games"] == 2 * 3 * len(POOL)
    assert "done (skipped)" in capsys.readouterr().err


def test_a_finished_run_resumed_with_more_updates_trains_on_and_evaluates_the_new_agent(tmp_path, finished):
    """``run --resume DIR --set stages.train.total_updates=5`` on a run whose 3 updates are done: the train stage
    continues from its final checkpoint to update 5, writes its final checkpoint there, and the evaluate stage runs
    again on it, after it on the step axis; earlier stages stay skipped, and a resume after that is a no-op."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    before = json.loads((run / "pipeline.json").read_text())["stages"]
    assert main(["run", "--resume", str(run), "--set", "stages.train.total_updates=5"]) == 0
    state = json.loads((run / "pipeline.json").read_text())["stages"]
    for key in ("01_pretrain", "02_finetune"):
        assert state[key] == before[key]
    assert state["03_train"]["length"] == 5 and state["03_train"]["finished_at"] > before["03_train"]["finished_at"]
    assert state["04_evaluate"]["finished_at"] > before["03_train"]["finished_at"]
    assert state["04_evaluate"]["step_offset"] == state["03_train"]["step_offset"] + 6
    trainer = json.loads((run / "stages/03_train/checkpoint/trainer_state.json").read_text())
    assert trainer["update"] == 5 and [e["update"] for e in trainer["evals"]] == [0, 2, 3, 4, 5]
    assert json.loads((run / "results.json").read_text())["03_train"]["updates"] == 5
    scalars = read_scalars(run / "tb")
    train = sorted({s for s, _ in scalars["train/main/policy_loss"]})
    assert train == [state["03_train"]["step_offset"] + u for u in range(1, 6)]
    evaluate = {s for t, pts in scalars.items() if t.startswith("evaluate/") for s, _ in pts}
    assert min(evaluate) > max(train)
    after = (run / "pipeline.json").read_text(), (run / "stages/03_train/checkpoint/trainer_state.json").read_text()
    assert main(["run", "--resume", str(run)]) == 0
    assert ((run / "pipeline.json").read_text(),
            (run / "stages/03_train/checkpoint/trainer_state.json").read_text()) == after


@pytest.mark.parametrize(("override", "stage", "keys"), [
    ("stages.finetune.optim.epochs=3", "stage 2 (finetune)", "optim"),
    ("stages.train.total_updates=2", "stage 3 (train)", "total_updates"),
    ("stages.train.ppo.lr=0.01", "stage 3 (train)", "ppo"),
])
def test_a_resume_that_changes_a_finished_stage_it_would_not_rerun_is_refused(tmp_path, finished, capsys,
                                                                               override, stage, keys):
    """Before, these resumed as a no-op and the change was ignored without a word (the standalone ``train``
    refuses fewer updates); now the command fails naming the stage and the key, and the run folder is untouched.
    A change that takes effect (more updates, a later stage re-run by them) or changes no result is accepted."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    config, state = (run / "config.yaml").read_text(), (run / "pipeline.json").read_text()
    assert main(["run", "--resume", str(run), "--set", override]) == 2
    err = capsys.readouterr().err
    assert f"{stage} is finished; --set changes its {keys}," in " ".join(err.split())
    assert (run / "config.yaml").read_text() == config and (run / "pipeline.json").read_text() == state
    assert main(["run", "--resume", str(run), "--set", "threads=2"]) == 0
    assert (run / "pipeline.json").read_text() == state


def test_a_stage_opened_in_the_same_second_as_a_resumed_one_keeps_its_scalars(tmp_path, monkeypatch):
    """TensorBoard reads a folder's event files in name order, and a name holds the second it was opened and a
    per-process counter: a resumed stage (its file starts with a purge at its checkpoint) and the next stage,
    opened in the same second with counters 9 and 10, sorted the new stage's file first, so the purge dropped the
    new stage's scalars (the resume test above failed this way now and then). Each file must sort after the
    older ones, whatever the counter."""
    from tensorboard.summary.writer import event_file_writer

    from evoarena.training.infra.runs import tb_writer

    monkeypatch.setattr(event_file_writer, "_global_uid", event_file_writer.AtomicCounter(9))
    first = tb_writer(tmp_path)
    first.add_scalar("train/loss", 1.0, 5)  # the first run of the stage, past its last checkpoint (step 3)
    first.close()
    resumed = tb_writer(tmp_path, purge_step=4)
    resumed.add_scalar("train/loss", 0.5, 4)
    resumed.close()
    after = tb_writer(tmp_path, offset=6)
    after.add_scalar("evaluate/score", 2.0, 0)
    after.close()
    names = sorted(p.name for p in tmp_path.joinpath("tb").iterdir())
    assert [n.rsplit(".", 1)[-1] for n in names] == ["9", "10", "11"]
    assert read_scalars(tmp_path / "tb") == {"train/loss": [(4, 0.5)], "evaluate/score": [(6, 2.0)]}


def test_selection_games_may_overlap_the_table_when_the_final_update_is_handed_on(tmp_path, mini):
    cfg = mini()
    cfg["stages"][2]["hand_on"] = "final"
    cfg["stages"][3]["eval_seed"] = 999_999  # the table plays the train stage's evaluation games: no selection
    assert len(plan(load_pipeline(write(tmp_path, cfg)))) == 4


@pytest.mark.parametrize(("hand_on", "folder"), [("best", "best"), ("final", "checkpoint"), (None, "best")])
def test_the_train_stage_hands_on_best_or_final(tmp_path, hand_on, folder, mini):
    cfg = mini()
    if hand_on is not None:
        cfg["stages"][2]["hand_on"] = hand_on
    train = plan(load_pipeline(write(tmp_path, cfg)))[2]
    for kind in ("best", "checkpoint"):
        (train.folder(tmp_path) / kind / "policies" / "main").mkdir(parents=True)
    assert train.checkpoint(tmp_path) == train.folder(tmp_path) / folder / "policies" / "main"


def test_stage_kinds_are_listed_once_in_config():
    """config.STAGES is the one list of stage kinds: the registry's stages are its kinds (a stage added to one
    and not the other fails here), each stage's config model is what its kind's command and pipeline entry read,
    the CLI has a command for each that has one, and a missing stage folder names the command that makes it."""
    from typing import get_args

    from evoarena.cli import build_parser
    from evoarena.config import STAGES, builder_hint
    from evoarena.training.stages import REGISTRY

    def members(model):  # a tagged union's models, or the model itself
        union = get_args(model)[0] if get_args(model) else model
        return set(get_args(union)) or {union}

    assert {s.kind for s in REGISTRY.values()} == set(STAGES)
    commands = build_parser().get_default("command_names")
    for kind, names in STAGES.items():
        stages = [s for s in REGISTRY.values() if s.kind == kind]
        assert {s.folder for s in stages} == {names.folder}
        for entry in members(names.entry):  # a pipeline entry is its stage's config plus the pipeline's keys
            assert sum(issubclass(entry, s.config) for s in stages) == 1, entry
        if names.command is None:  # (`evoarena evaluate` plays agents; it is not the stage's command)
            continue
        assert kind in commands
        assert members(names.command) == {s.config for s in stages}
        assert f"`evoarena {kind} configs/x.yaml`" in builder_hint(f"runs/x/stages/01_{names.folder}/checkpoint")
