"""Sweeps on real PPO runs (dilemma_v0, MLP policy, a few updates each): the report and its files, the
marl-eval export, identical results in worker processes and on a local Ray instance, a re-run that skips
finished runs, a sweep killed mid-way that finishes only the missing runs, and config errors."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from evoarena.bench import sweep as sw
from evoarena.bench.scalars import read_scalars
from evoarena.cli import main
from evoarena.config import ConfigError

TRAIN = {"name": "micro", "seed": 0, "threads": 1, "env": {"id": "dilemma_v0", "kwargs": {"rounds": 5}},
         "policies": {"main": {"policy": {"kind": "mlp", "mlp_hidden": [16]}}},
         "seats": {"player_0": {"policy": "main"}, "player_1": {"agent": "scripted:tit_for_tat"}},
         "num_envs": 8, "episodes_per_update": 8, "total_updates": 3, "checkpoint_every": 1, "transcript_every": 0,
         "ppo": {"minibatch_size": 32, "epochs": 1, "log_kl_ref": False},
         "eval": {"every": 1, "episodes": 8, "opponents": ["scripted:tit_for_tat", "scripted:always_defect"]}}


def write_sweep(folder: Path, train: dict | None = None, **over) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.yaml").write_text(yaml.safe_dump(train or TRAIN))
    data = {"name": "micro", "command": "train", "config": str(folder / "train.yaml"),
            "variants": {"fast": ["ppo.lr=3e-3"], "slow": ["ppo.lr=1e-4"],
                         "fast_best": {"of": "fast", "results": {"score": "train.best_score"},
                                       "curves": {"score": None, "vs_alld": None},
                                       "checkpoint": "train.best_checkpoint"}},
            "seeds": [0, 1],
            "bootstrap": 200,
            "tasks": {"score": {"result": "train.final_eval.score", "curve": "eval/score", "low": 0, "high": 25},
                      "vs_alld": {"result": "train.final_eval.scripted:always_defect.learner_return",
                                  "curve": "eval/scripted_always_defect/learner_return",
                                  "curve_offset": "train.evals.1.update"}},  # 1: evals[0] is update 0
            "tournament": {"env": {"id": "dilemma_v0", "kwargs": {"rounds": 5}}, "checkpoint": "train.checkpoint",
                           "subdir": "policies/main", "pool": ["scripted:tit_for_tat", "scripted:always_defect"],
                           "episodes": 2, "ratings": {"bootstrap": 50}},
            **over}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def comparable(bench: dict) -> dict:
    """bench.json without what differs between two folders (paths, the command line)."""
    out = json.loads(json.dumps(bench))
    out.pop("command", None)
    for r in out["runs"]:
        r.pop("run_dir")
    for r in out.get("tournament", {}).get("ratings", []):
        r.pop("spec")  # ckpt:FOLDER/...
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    cfg = sw.load_sweep(write_sweep(root / "cfg"))
    result = sw.run_sweep(cfg, root / "out", workers=2, echo=lambda s: None)
    return cfg, root / "out", result


def test_sweep_report_and_files(reference):
    cfg, out, result = reference
    assert sorted(r["status"] for r in result["runs"]) == ["started"] * 4
    for v in ("fast", "slow"):
        for s in (0, 1):
            run = out / v / f"seed_{s}"
            assert (run / sw.DONE_FILE).is_file() and (run / "results.json").is_file() and (run / "tb").is_dir()
            assert f"ppo.lr={'3e-3' if v == 'fast' else '1e-4'}" in (run / sw.LOG_FILE).read_text()
            assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == s
    for png in ("iqm.png", "poi.png", "curves.png", "profiles.png", "tournament/payoffs.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG", png
    md = (out / "bench.md").read_text()
    for section in ("## Scores", "## Probability of improvement", "## Learning curves", "## Performance profiles",
                    "## Runs", "## Cross-play tournament", "| fast |", "vs pool",
                    "| fast_best | no runs of its own: in the runs of `fast`, `score` from `train.best_score` |"):
        assert section in md, section
    bench = json.loads((out / "bench.json").read_text())
    runs = {(r["variant"], r["seed"]): r for r in bench["runs"]}
    assert not (out / "fast_best").exists() and len(runs) == 6
    for (v, s), r in runs.items():
        res = json.loads((out / v.replace("_best", "") / f"seed_{s}" / "results.json").read_text())
        expected = res["train"]["best_score"] if v.endswith("_best") else res["train"]["final_eval"]["score"]
        assert r["score"] == pytest.approx(expected / 25)
    fast = np.array([[runs["fast", s]["score"], runs["fast", s]["vs_alld"]] for s in (0, 1)])
    assert bench["scores"]["fast"]["iqm"]["value"] == pytest.approx(float(np.mean(np.sort(fast, axis=None)[1:3])))
    poi = bench["probability_of_improvement"]
    assert poi["fast"]["slow"]["value"] + poi["slow"]["fast"]["value"] == pytest.approx(1.0)
    assert bench["curves"]["score"]["fast"]["steps"] == [0, 1, 2, 3]  # PPO evaluates before its first update too
    assert bench["curves"]["vs_alld"]["slow"]["steps"] == [-1, 0, 1, 2]  # less train.evals[1].update = 1
    assert "fast_best" not in bench["curves"]["score"]
    assert set(bench["tournament"]["per_variant"]) == {"fast", "slow", "fast_best"}
    assert bench["tournament"]["entrants"] == 8
    assert any("best" in r["spec"] and r["agent"] == "fast_best/s0" for r in bench["tournament"]["ratings"])


def test_marl_eval_export(reference):
    _, out, _ = reference
    data = json.loads((out / "marl_eval.json").read_text())
    assert list(data) == ["dilemma_v0"] and set(data["dilemma_v0"]) == {"score", "vs_alld"}
    run = data["dilemma_v0"]["vs_alld"]["slow"]["run_1"]
    assert [run[f"step_{k}"]["step_count"] for k in range(4)] == [-1, 0, 1, 2]
    final = json.loads((out / "slow" / "seed_1" / "results.json").read_text())["train"]["final_eval"]
    assert run["absolute_metrics"]["score"] == [final["scripted:always_defect"]["learner_return"]]
    assert run["step_3"]["score"] == run["absolute_metrics"]["score"]  # the last eval is the final one


def test_rerun_skips_finished_runs_and_publishes(reference, capsys, tmp_path):
    cfg, out, result = reference
    marker = out / "fast" / "seed_0" / sw.DONE_FILE
    before = marker.stat().st_mtime_ns
    pub = tmp_path / "docs" / "results" / "micro"
    assert main(["bench", cfg.config.replace("train.yaml", "sweep.yaml"), "--out", str(out), "--publish",
                 str(pub)]) == 0
    assert "4 finished already, 0 to run" in capsys.readouterr().out
    assert marker.stat().st_mtime_ns == before
    assert comparable(json.loads((out / "bench.json").read_text())) == comparable(result["bench"])
    md = (pub / "bench.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", md)
    assert "tournament/payoffs.png" in links and all((pub / link).is_file() for link in links), links
    assert not (pub / "fast").exists()  # run folders stay where they are


def test_ray_gives_the_same_results(reference, tmp_path):
    ray = pytest.importorskip("ray")
    cfg, _, result = reference
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        got = sw.run_sweep(cfg, tmp_path / "ray", ray_address="auto", echo=lambda s: None)
    finally:
        ray.shutdown()
    assert sorted(r["status"] for r in got["runs"]) == ["started"] * 4
    assert comparable(got["bench"]) == comparable(result["bench"])


@pytest.mark.e2e
def test_killed_sweep_finishes_only_the_missing_runs(tmp_path):
    longer = {**TRAIN, "total_updates": 40, "eval": {**TRAIN["eval"], "every": 10}}
    path = write_sweep(tmp_path / "cfg", longer, tournament=None)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "evoarena.cli", "bench", str(path), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    first, second = out / "fast" / "seed_0", out / "fast" / "seed_1"
    deadline = time.time() + 180
    try:
        while not ((first / sw.DONE_FILE).is_file()
                   and (second / "stages" / "01_train" / "checkpoint" / "trainer_state.json").is_file()):
            assert proc.poll() is None and time.time() < deadline, "the sweep ended before it could be killed"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (second / sw.DONE_FILE).is_file(), "killed too late: the second run had finished"
    before = (first / sw.DONE_FILE).read_text()
    cfg = sw.load_sweep(path)
    result = sw.run_sweep(cfg, out, echo=lambda s: None)
    status = {(r["variant"], r["seed"]): r["status"] for r in result["runs"]}
    assert status == {("fast", 0): "skipped", ("fast", 1): "resumed", ("slow", 0): "started", ("slow", 1): "started"}
    assert (first / sw.DONE_FILE).read_text() == before
    # the resumed run ends where an uninterrupted one does, on one TensorBoard step axis
    spec = next(s for s in sw.plan(cfg, out) if (s["variant"], s["seed"]) == ("fast", 1))
    sw.execute_run({**spec, "run_dir": str(tmp_path / "fresh")})
    resumed = json.loads((second / "results.json").read_text())["train"]
    fresh = json.loads((tmp_path / "fresh" / "results.json").read_text())["train"]
    assert resumed["updates"] == fresh["updates"] == 40
    assert resumed["final_eval"] == fresh["final_eval"]
    steps = [s for s, _ in read_scalars(second / "tb")["eval/score"]]
    assert steps == [0, 10, 20, 30, 40]  # the evaluation before the first update, then every 10


@pytest.mark.e2e
def test_sigterm_stops_an_in_process_sweep_with_a_resume_command(tmp_path):
    """``evoarena bench`` (runs in its own process) gets SIGTERM during its first run: the run saves a checkpoint
    and stops, no other run starts, and it exits 130 naming the command that resumes the sweep, which does."""
    longer = {**TRAIN, "total_updates": 40, "eval": {**TRAIN["eval"], "every": 10}}
    path = write_sweep(tmp_path / "cfg", longer, tournament=None)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "evoarena.cli", "bench", str(path), "--out", str(out), "--set",
                             "bootstrap=100"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    first = out / "fast" / "seed_0"
    marker = first / "stages" / "01_train" / "checkpoint" / "trainer_state.json"
    deadline = time.time() + 180
    while not marker.is_file():
        assert proc.poll() is None and time.time() < deadline, "the sweep ended before it could be stopped"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err[-2000:]
    assert f"resume the sweep with:\n  evoarena bench {path} --set bootstrap=100 --workers 1 --out {out}" in err
    assert not (first / sw.DONE_FILE).exists() and json.loads(marker.read_text())["update"] < 40
    assert sorted(p.relative_to(out).as_posix() for p in out.glob("*/seed_*")) == ["fast/seed_0"]
    result = sw.run_sweep(sw.load_sweep(path, ["bootstrap=100"]), out, echo=lambda s: None)
    status = {(r["variant"], r["seed"]): r["status"] for r in result["runs"]}
    assert status == {("fast", 0): "resumed", ("fast", 1): "started", ("slow", 0): "started", ("slow", 1): "started"}
    assert json.loads((first / "results.json").read_text())["train"]["updates"] == 40


def test_config_errors_name_the_problem(tmp_path):
    path = write_sweep(tmp_path / "a", variants={"bad": ["ppo.nope=1"]}, tournament=None)
    with pytest.raises(ConfigError, match=r"variant 'bad'.*nope"):
        sw.check_plan(sw.load_sweep(path), sw.plan(sw.load_sweep(path), tmp_path / "out"))
    with pytest.raises(ConfigError, match="tasks: required for command 'run'"):
        sw.load_sweep(write_sweep(tmp_path / "b", command="run", tasks=None))
    with pytest.raises(ConfigError, match="seeds"):
        sw.load_sweep(write_sweep(tmp_path / "c", seeds=[1, 1]))
    # a run folder made from another config is never overwritten
    cfg = sw.load_sweep(write_sweep(tmp_path / "d", tournament=None))
    run = tmp_path / "out" / "fast" / "seed_0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("name: something else\n")
    with pytest.raises(ConfigError, match="another config"):
        sw.run_sweep(cfg, tmp_path / "out", echo=lambda s: None)
    assert main(["bench", str(tmp_path / "missing.yaml")]) == 2


def test_lookup_names_missing_keys():
    data = {"ppo": {"final_eval": {"ckpt:a.b": {"x": 1.5}, "score": 2}}}
    assert sw.lookup(data, "ppo.final_eval.ckpt:a.b.x") == 1.5  # a key with dots matches whole
    assert sw.lookup(data, ["ppo", "final_eval", "score"]) == 2
    with pytest.raises(KeyError, match=r"no key 'scor' at ppo.final_eval; keys there: ckpt:a.b, score"):
        sw.lookup(data, "ppo.final_eval.scor")


def test_ablation_config_is_valid():
    """configs/bench/evolution_ablation.yaml: its 9 runs resolve against configs/quickstart.yaml."""
    cfg = sw.load_sweep("configs/bench/evolution_ablation.yaml")
    specs = sw.plan(cfg, Path("runs/bench/evolution_ablation"))
    assert [s["variant"] for s in specs[::3]] == ["ppo_random", "ppo_pretrained", "full"] and len(specs) == 9
    sw.check_plan(cfg, specs)
    assert list(cfg.variants) == ["ppo_random", "ppo_pretrained", "bc_only", "full"]


SHRINK = ["stages.pretrain.steps=5", "stages.pretrain.corpus.episodes_per_env=20",
          "stages.finetune.bc.train_episodes=20", "stages.finetune.bc.heldout_episodes=5",
          "stages.finetune.bc.eval_episodes=2", "stages.finetune.optim.epochs=1", "stages.train.total_updates=2",
          "stages.train.episodes_per_update=16", "stages.train.num_envs=16", "stages.train.eval.every=1",
          "stages.train.eval.episodes=2", "stages.evaluate.episodes=2", "stages.evaluate.baselines=false"]


@pytest.mark.slow
def test_ablation_sweep_shrunk(tmp_path):
    """The ablation end to end with every stage cut to a few steps and one seed (~2.5 min on 2 cores)."""
    cfg = sw.load_sweep("configs/bench/evolution_ablation.yaml",
                        ["seeds=[0]", f"set=[{', '.join(SHRINK)}]", "tournament.episodes=2"])
    result = sw.run_sweep(cfg, tmp_path, echo=lambda s: None)
    bench = result["bench"]
    assert set(bench["scores"]) == {"ppo_random", "ppo_pretrained", "bc_only", "full"}
    assert bench["tournament"]["entrants"] == 12
    assert bench["curves"]["vs_pool"]["full"]["steps"] == [0, 1, 2]  # PPO updates (0: before any), not the run's axis
    md = (tmp_path / "bench.md").read_text()
    assert "| bc_only | no runs of its own" in md and "## Cross-play tournament" in md
