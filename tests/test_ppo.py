"""Multi-agent PPO end to end: every world on the tiny encoder, resume after SIGINT and SIGKILL on one
TensorBoard step axis, documented tags, the KL penalty, NaN handling, determinism, and agents with a
single legal action never queried."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from evoarena.config import LearnerConfig, TrainConfig, validate_config
from evoarena.policies import load_trainer_state
from evoarena.training.rl import ppo as ppo_mod
from evoarena.training.rl import update as update_mod
from evoarena.training.rl.ppo import TrainingError
from evoarena.training.stages import run_standalone

MLP = {"kind": "mlp", "mlp_hidden": [32]}
WORLD_IDS = ["dilemma_v0", "signaling_v0", "negotiation_v0"]


def world(world_id: str, policy: dict) -> dict:
    """A train config's world, seats and evaluation for ``world_id``, its learners on ``policy``."""
    return {
        "dilemma_v0": {"env": {"id": "dilemma_v0", "kwargs": {"rounds": 5}},
                       "policies": {"main": {"policy": policy}},
                       "seats": {"player_0": {"policy": "main"},
                                 "player_1": {"pool": [{"agent": "scripted:tit_for_tat"}, {"agent": "self"},
                                                       {"agent": "snapshot"}]}},
                       "snapshot_every": 1,
                       "eval": {"every": 1, "episodes": 4, "opponents": ["scripted:always_defect"]}},
        "signaling_v0": {"env": {"id": "signaling_v0", "kwargs": {"vocab": "symbols"}},
                         "policies": {"speaker": {"policy": policy, "ppo": {"ent_coef": 0.05}},
                                      "listener": {"policy": {**policy, "head": "scoring", "standardize": True}}},
                         "seats": {"speaker": {"policy": "speaker"}, "listener_*": {"policy": "listener"}},
                         "eval": {"every": 1, "episodes": 4}},
        "negotiation_v0": {"env": {"id": "negotiation_v0"}, "policies": {"main": {"policy": policy}},
                           "seats": {"player_0": {"policy": "main"}, "player_1": {"agent": "scripted:conceder"}},
                           "shuffle_seats": True, "eval": {"every": 1, "episodes": 4}},
    }[world_id]


def make_cfg(data, **over):
    base = {"seed": 0, "num_envs": 4, "episodes_per_update": 4, "total_updates": 2, "checkpoint_every": 1,
            "transcript_every": 1, "ppo": {"minibatch_size": 32, "epochs": 1}}
    return validate_config({**base, **data, **over}, TrainConfig)


def scalars(run_dir):
    acc = EventAccumulator(str(Path(run_dir) / "tb"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


@pytest.mark.parametrize("world_id", WORLD_IDS)
def test_short_run_each_world(world_id, tmp_path, tiny_policy):
    cfg = make_cfg(world(world_id, tiny_policy()))
    res = run_standalone(cfg, tmp_path, progress=False)
    assert res["updates"] == 2 and res["decisions"] > 0 and np.isfinite(res["final_eval"]["score"])
    acc = scalars(tmp_path)
    tags = set(acc.Tags()["scalars"])
    learners = list(cfg.policies)
    for name in learners:
        for t in ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac", "explained_variance",
                  "kl_ref", "lr"):
            assert f"train/{name}/{t}" in tags, t
        assert f"rollout/{name}/episode_return" in tags and f"rollout/{name}/episode_length" in tags
    for t in ("perf/env_seconds", "perf/forward_seconds", "perf/learn_seconds", "perf/decisions_per_second",
              "eval/score"):
        assert t in tags
    assert any(t.startswith("episodes/transcript") for t in acc.Tags()["tensors"])
    results = json.loads((tmp_path / "results.json").read_text())["train"]
    assert results["final_eval"]["score"] == res["final_eval"]["score"]
    assert (tmp_path / "stages/01_train/checkpoint/policies" / learners[0] / "model.safetensors").is_file()
    assert (tmp_path / "stages/01_train/best/trainer_state.json").is_file()
    for name in learners:  # a policy folder says which learner and update it is; the resumable state is beside it
        assert load_trainer_state(tmp_path / "stages/01_train/checkpoint/policies" / name) == {"policy": name,
                                                                                          "update": 2}


def test_single_legal_action_agents_never_queried(tmp_path, monkeypatch):
    cfg = make_cfg(world("negotiation_v0", MLP), total_updates=1)
    asked = []
    from evoarena.policies.actor_critic import BasePolicy

    original = BasePolicy.act

    def counting_act(self, obs_list, *a, **kw):
        asked.extend(int(np.sum(o["action_mask"])) for o in obs_list)
        return original(self, obs_list, *a, **kw)

    monkeypatch.setattr(BasePolicy, "act", counting_act)
    res = run_standalone(cfg, tmp_path, progress=False)
    assert asked and min(asked) > 1
    assert res["decisions"] <= len(asked)  # rollout decisions + greedy evaluation decisions


def test_same_seed_same_first_update(tmp_path):
    cfg = make_cfg(world("dilemma_v0", MLP), total_updates=1)
    runs = []
    for i in range(2):
        run_standalone(cfg, tmp_path / str(i), progress=False)
        acc = scalars(tmp_path / str(i))
        runs.append({t: acc.Scalars(t)[0].value for t in acc.Tags()["scalars"] if t.startswith("train/")})
    assert runs[0] == runs[1] and runs[0]


@pytest.mark.parametrize("mode", ["stored", "auto"])
def test_standardizing_learner_starts_every_update_at_ratio_one(tmp_path, monkeypatch, mode, tiny_policy):
    """Per-batch standardisation makes a minibatch's log-probs differ from the rollout's (the batch
    differs); stored statistics, refreshed from each rollout, make the first ratio exactly 1. ``auto``
    keeps per-batch statistics for a policy that arrives without stored ones (a fresh one here)."""
    cfg = make_cfg(world("negotiation_v0", tiny_policy(standardize=True, head_gain=1.0)),
                   total_updates=3, episodes_per_update=16, num_envs=8,
                   ppo={"minibatch_size": 16, "epochs": 2, "ent_coef": 0.0, "standardize_stats": mode})
    first_kl = []
    original = update_mod.clipped_policy_loss
    calls = {"n": 0}

    def recording(new_logp, old_logp, adv, clip):
        if calls["n"] == 0:
            first_kl.append(float((old_logp - new_logp).detach().abs().max()))
        calls["n"] += 1
        return original(new_logp, old_logp, adv, clip)

    def per_update(*a, **kw):
        calls["n"] = 0
        return update(*a, **kw)

    update = ppo_mod.ppo_update
    monkeypatch.setattr(update_mod, "clipped_policy_loss", recording)
    monkeypatch.setattr(ppo_mod, "ppo_update", per_update)
    run_standalone(cfg, tmp_path, progress=False)
    ck = tmp_path / "stages/01_train/checkpoint/policies/main"
    from evoarena.policies import load_policy

    assert len(first_kl) == 3
    if mode == "stored":
        assert max(first_kl) < 1e-4, first_kl
        assert load_policy(ck).std_ready.item() == 1  # the statistics travel with the checkpoint
    else:
        assert max(first_kl) > 1e-3, first_kl  # batch statistics: the minibatch is another function
        assert load_policy(ck).std_ready.item() == 0


def test_config_train_mode_applies_to_a_checkpoint_start(tmp_path, tiny_policy):
    """init_from a checkpoint + encoder.train_mode frozen: only the heads learn, and the mode is recorded."""
    import torch

    from evoarena.policies import load_policy, read_policy_json, save_checkpoint
    from evoarena.policies.actor_critic import build_policy
    from evoarena.policies.encoder import train_wordpiece

    pcfg = validate_config({"policy": tiny_policy()}, LearnerConfig).policy
    tok = train_wordpiece(["pool 1 book 2 hat", "my values 1 2 3", "they offered me"], 200)
    start = build_policy(pcfg, "negotiation_v0", agent="player_0", tokenizer=tok)
    save_checkpoint(tmp_path / "start", start)
    policy = tiny_policy(encoder={"train_mode": "frozen"}, init_from=str(tmp_path / "start"))
    cfg = make_cfg(world("negotiation_v0", policy), total_updates=1,
                   ppo={"minibatch_size": 16, "epochs": 1, "lr": 0.01})
    run_standalone(cfg, tmp_path / "run", progress=False)
    ck = tmp_path / "run/stages/01_train/checkpoint/policies/main"
    assert read_policy_json(ck)["policy_config"]["encoder"]["train_mode"] == "frozen"
    end = load_policy(ck)
    s0, s1 = start.state_dict(), end.state_dict()
    enc = [k for k in s0 if k.startswith("encoder.")]
    assert enc and all(torch.equal(s0[k], s1[k]) for k in enc)
    assert any(not torch.equal(s0[k], s1[k]) for k in s0 if k.startswith("policy_head."))


def test_start_partner_plays_the_learner_as_it_began_and_each_partner_is_logged(tmp_path, tiny_policy):
    """A ``start`` pool entry: the learner's starting weights (its init_from checkpoint), frozen while the learner
    trains, kept in the checkpoint; the learner's return against every partner has its own rollout/ curve."""
    import torch

    from evoarena.policies import load_policy, save_checkpoint
    from evoarena.policies.actor_critic import build_policy

    pcfg = validate_config({"policy": tiny_policy()}, LearnerConfig).policy
    start = build_policy(pcfg, "dilemma_v0", agent="player_0")
    save_checkpoint(tmp_path / "start", start)
    data = world("dilemma_v0", tiny_policy(init_from=str(tmp_path / "start")))
    data["seats"]["player_1"] = {"pool": [{"agent": "start"}, {"agent": "scripted:always_defect"},
                                          {"agent": "snapshot"}]}
    cfg = make_cfg(data, total_updates=3, episodes_per_update=16, num_envs=16,
                   ppo={"minibatch_size": 32, "epochs": 1, "lr": 0.01})
    run_standalone(cfg, tmp_path / "run", progress=False)
    ck = tmp_path / "run/stages/01_train/checkpoint"
    kept, end = load_policy(next((ck / "snapshots/league_start").iterdir())), load_policy(ck / "policies/main")
    s0, s_kept, s_end = start.state_dict(), kept.state_dict(), end.state_dict()
    assert all(torch.equal(s0[k], s_kept[k]) for k in s0)
    assert any(not torch.equal(s0[k], s_end[k]) for k in s0 if k.startswith("policy_head."))
    tags = set(scalars(tmp_path / "run").Tags()["scalars"])
    for partner in ("start", "scripted_always_defect", "snapshot_main"):
        assert f"rollout/main/vs/{partner}/episode_return" in tags, sorted(t for t in tags if "/vs/" in t)


def test_league_exploiters_of_their_own_kind_start_fresh_and_are_reset_to_it(tmp_path, tiny_policy):
    """``league.exploiter``: the live exploiters are learners of their own (here the cheap MLP over features that
    ``evoarena exploit`` trains, with their own PPO settings) beside a text main. They start fresh, learn against
    their main, join the league as frozen members, and are reset to their fresh weights (kept in the checkpoint)."""
    import torch

    from evoarena.policies import load_policy

    data = world("dilemma_v0", tiny_policy())
    data["seats"]["player_1"] = {"pool": [{"agent": "scripted:always_defect"}, {"agent": "start"}]}
    data["league"] = {"exploiters": 1, "exploiter_share": 0.5, "exploiter_reset_every": 2, "add_every": 1,
                      "exploiter": {"policy": MLP, "ppo": {"lr": 0.05}}}
    cfg = make_cfg(data, total_updates=2, episodes_per_update=16, num_envs=16,
                   ppo={"minibatch_size": 32, "epochs": 1, "lr": 0.01})
    run_standalone(cfg, tmp_path / "run", progress=False)
    ck = tmp_path / "run/stages/01_train/checkpoint"
    fresh = load_policy(ck / "snapshots/exploiter_start/000000").state_dict()
    final = load_policy(ck / "policies/exploiter_main_0")
    assert final.cfg.kind == "mlp" and load_policy(ck / "policies/main").cfg.kind != "mlp"
    assert all(torch.equal(fresh[k], v) for k, v in final.state_dict().items())  # reset after update 2
    learned = load_policy(ck / "snapshots/league_exploiter_main_0/000001").state_dict()  # frozen after update 1
    assert any(not torch.equal(fresh[k], v) for k, v in learned.items())
    tags = set(scalars(tmp_path / "run").Tags()["scalars"])
    assert "rollout/main/vs/learner_exploiter_main_0/episode_return" in tags, sorted(t for t in tags if "/vs/" in t)
    cut = tmp_path / "cut"  # stopped after update 1 and resumed: the same run
    run_standalone(cfg.model_copy(update={"total_updates": 1}), cut, progress=False)
    run_standalone(cfg, cut, resume=True, progress=False)
    for name in ("main", "exploiter_main_0"):
        a = load_policy(ck / "policies" / name).state_dict()
        b = load_policy(cut / "stages/01_train/checkpoint/policies" / name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    with pytest.raises(ValueError, match="league.exploiter: an exploiter of its own starts fresh"):
        make_cfg({**data, "league": {"exploiter": {"policy": {**MLP, "init_from": str(ck / "policies/main")}}}})


@pytest.mark.parametrize("where, key", [("eval", "eval.opponents[0]"), ("seat", "seats.player_1.agent")])
def test_start_is_no_fixed_agent_outside_a_pool(tmp_path, capsys, where, key):
    from evoarena.cli import main

    data = world("dilemma_v0", MLP)
    if where == "eval":
        data["eval"] = {"opponents": ["start"]}
    else:
        data["seats"]["player_1"] = {"agent": "start"}
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(data))
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert key in err and "'start'" in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()  # refused before any work


def kl_after_training(tmp_path, kl_coef):
    data = {"env": {"id": "dilemma_v0", "kwargs": {"rounds": 10}}, "policies": {"main": {"policy": MLP}},
            "seats": {"player_0": {"policy": "main"}, "player_1": {"agent": "scripted:always_defect"}},
            "eval": {"every": 0, "episodes": 2}}
    cfg = make_cfg(data, total_updates=6, episodes_per_update=16, num_envs=16,
                   ppo={"lr": 0.02, "lr_decay": False, "epochs": 4, "minibatch_size": 64, "kl_coef": kl_coef,
                        "ent_coef": 0.0})
    run_standalone(cfg, tmp_path / f"kl{kl_coef}", progress=False)
    return [e.value for e in scalars(tmp_path / f"kl{kl_coef}").Scalars("train/main/kl_ref")]


def test_kl_penalty_keeps_policy_near_reference(tmp_path):
    free = kl_after_training(tmp_path, 0.0)
    held = kl_after_training(tmp_path, 5.0)
    assert free[-1] > 0.05  # without the penalty the policy drifts from where it started
    assert held[-1] < free[-1] / 4


def test_nan_losses_stop_after_three_updates(tmp_path, monkeypatch):
    import torch

    calls = {"n": 0}
    original = update_mod.clipped_policy_loss

    def sometimes_nan(*a, **kw):
        loss, cf, kl = original(*a, **kw)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] > 1 else loss), cf, kl

    monkeypatch.setattr(update_mod, "clipped_policy_loss", sometimes_nan)
    cfg = make_cfg(world("dilemma_v0", MLP), total_updates=8,
                   ppo={"minibatch_size": 1000, "epochs": 1})
    with pytest.raises(TrainingError, match="3 updates in a row"):
        run_standalone(cfg, tmp_path, progress=False)
    state = json.loads((tmp_path / "stages/01_train/checkpoint/trainer_state.json").read_text())
    assert state["update"] == 1  # the last good checkpoint is kept
    acc = scalars(tmp_path)
    assert [e.value for e in acc.Scalars("train/main/nan_skipped")][1:] == [1.0, 1.0, 1.0]
    assert torch.isfinite(torch.tensor([e.value for e in acc.Scalars("train/main/value_loss")][:1])).all()


def _wait_for_update(stage, update, proc, timeout=240):
    state = stage / "checkpoint" / "trainer_state.json"
    t0 = time.time()
    while time.time() - t0 < timeout:
        if state.is_file() and json.loads(state.read_text())["update"] >= update:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("no checkpoint in time")


@pytest.mark.e2e
@pytest.mark.parametrize("how", ["sigint", "sigkill"])
def test_interrupt_and_resume_one_step_axis(tmp_path, how):
    data = {**world("dilemma_v0", MLP), "eval": {"every": 0, "episodes": 2},
            "seed": 0, "num_envs": 4, "episodes_per_update": 4, "total_updates": 14, "checkpoint_every": 2,
            "ppo": {"minibatch_size": 64, "epochs": 1}}
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "evoarena.cli", "train", str(cfg_file), "--run-dir", str(run_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    _wait_for_update(run_dir / "stages/01_train", 4, proc)
    proc.send_signal(signal.SIGINT if how == "sigint" else signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    if how == "sigint":
        assert proc.returncode == 130, out
        assert f"evoarena train --resume {run_dir}" in out
    state = json.loads((run_dir / "stages/01_train/checkpoint/trainer_state.json").read_text())
    assert 4 <= state["update"] < 14
    res = subprocess.run([sys.executable, "-m", "evoarena.cli", "train", "--resume", str(run_dir)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    final = json.loads((run_dir / "stages/01_train/checkpoint/trainer_state.json").read_text())
    assert final["update"] == 14 and final["episodes"] == 14 * 4
    steps = [e.step for e in scalars(run_dir).Scalars("train/main/policy_loss")]
    assert steps == list(range(1, 15))  # one monotonic axis, no step twice


def test_trainer_state_reads_and_writes_the_json_of_old_runs():
    """trainer_state.json as the stage wrote it when the state was a dict: read and written back to the same
    JSON text (keys, values and order); a file missing later keys takes their defaults and writes none of the
    optional ones; a key the class does not know survives."""
    from evoarena.training.rl.ppo_records import TrainerState

    old = {"update": 4, "decisions": 320, "episodes": 16, "nan_streak": 0, "baselines": {"main": 1.5},
           "best_score": 2.5, "evals": [{"update": 0, "score": 2.5}], "best_update": 0,
           "rollout": {"episode": 16}, "update_rng": {"bit_generator": "PCG64"}, "torch_rng": [1, 2],
           "seats": {"k": 1}, "league": {}, "averaged_evals": [{"update": 4, "score": 3.0}],
           "final_eval": {"score": 3.0}}
    state = TrainerState.from_json(json.loads(json.dumps(old)))
    assert state.update == 4 and state.baselines == {"main": 1.5} and state.final_eval == {"score": 3.0}
    assert json.dumps(state.to_json(), indent=1) == json.dumps(old, indent=1)
    fresh = TrainerState.from_json({"update": 2, "decisions": 8, "episodes": 2, "best_score": None, "evals": [],
                                    "policy": "main"})
    assert fresh.nan_streak == 0 and fresh.baselines == {} and fresh.averaged_evals == [] and fresh.rollout is None
    assert fresh.to_json() == {"update": 2, "decisions": 8, "episodes": 2, "nan_streak": 0, "baselines": {},
                               "best_score": None, "evals": [], "policy": "main"}
    assert TrainerState().to_json() == {"update": 0, "decisions": 0, "episodes": 0, "nan_streak": 0,
                                        "baselines": {}, "best_score": None, "evals": []}


def test_a_run_folder_from_before_the_train_name_resumes_in_its_ppo_folder(tmp_path):
    """``evoarena train`` wrote ``stages/01_ppo`` (results key ``ppo``) before the stage had one name; such a run
    folder resumes where it is, and a new run writes ``stages/01_train``."""
    data = {"env": {"id": "dilemma_v0", "kwargs": {"rounds": 5}}, "policies": {"main": {"policy": MLP}},
            "seats": {"player_0": {"policy": "main"}, "player_1": {"agent": "scripted:tit_for_tat"}},
            "eval": {"every": 0, "episodes": 2}}
    run = tmp_path / "run"
    run_standalone(make_cfg(data, total_updates=2), run, progress=False)
    (run / "stages/01_train").rename(run / "stages/01_ppo")  # the folder and key an older version wrote
    results = json.loads((run / "results.json").read_text())
    (run / "results.json").write_text(json.dumps({"ppo": results.pop("train")}))
    run_standalone(make_cfg(data, total_updates=3), run, resume=True, progress=False)
    assert not (run / "stages/01_train").exists()
    results = json.loads((run / "results.json").read_text())
    assert list(results) == ["ppo"] and results["ppo"]["updates"] == 3


def test_a_finished_run_resumed_with_more_updates_rewrites_its_final_checkpoint(tmp_path):
    """``evoarena train --resume DIR --set total_updates=4`` after a finished 2-update run: updates 3 and 4 run and
    the final checkpoint, its trainer state and final evaluation are those of update 4; resumed again unchanged it
    does nothing, and a total_updates below the checkpoint's update is refused."""
    from safetensors.torch import load_file

    from evoarena.config import ConfigError

    data = {"env": {"id": "dilemma_v0", "kwargs": {"rounds": 5}}, "policies": {"main": {"policy": MLP}},
            "seats": {"player_0": {"policy": "main"}, "player_1": {"agent": "scripted:tit_for_tat"}},
            "eval": {"every": 1, "episodes": 2}}
    run = tmp_path / "run"
    ckpt = run / "stages/01_train/checkpoint"
    run_standalone(make_cfg(data, total_updates=2, transcript_every=0), run, progress=False)
    weights = {p.name: load_file(str(p)) for p in ckpt.rglob("*.safetensors")}
    run_standalone(make_cfg(data, total_updates=4, transcript_every=0), run, resume=True, progress=False)
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["update"] == 4 and [e["update"] for e in state["evals"]] == [0, 1, 2, 3, 4]
    assert state["final_eval"] == {k: v for k, v in state["evals"][-1].items() if k != "update"}
    changed = load_file(str(ckpt / "policies/main/model.safetensors"))
    assert any(not (changed[k] == v).all() for k, v in weights["model.safetensors"].items())
    files = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file() and "tb" not in p.parts}
    results = run_standalone(make_cfg(data, total_updates=4, transcript_every=0), run, resume=True, progress=False)
    assert results["updates"] == 4
    assert {p: p.read_bytes() for p in files if p.name != "results.json"} == {
        p: b for p, b in files.items() if p.name != "results.json"}
    with pytest.raises(ConfigError, match="already at update 4; resume with total_updates >= 4"):
        run_standalone(make_cfg(data, total_updates=3, transcript_every=0), run, resume=True, progress=False)
