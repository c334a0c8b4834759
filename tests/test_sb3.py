"""The SB3 path (``ppo.backend: sb3``): the features extractor reads texts exactly as evoarena's encoder does,
the vector env seeds and masks, and a short MaskablePPO run writes the documented TensorBoard tags and an
evoarena checkpoint."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from evoarena.config import PolicyConfig, TrainConfig, validate_config
from evoarena.envs import make
from evoarena.policies import build_policy, load_policy
from evoarena.policies.sb3 import EncoderExtractor, TokenizedObs
from evoarena.training.stages import run_standalone


def negotiation(policy: dict) -> dict:
    """Negotiation: one learner on ``policy`` against a pool of two scripted strategies."""
    return {"env": {"id": "negotiation_v0"}, "policies": {"main": {"policy": policy}},
            "seats": {"player_0": {"policy": "main"},
                      "player_1": {"pool": [{"agent": "scripted:conceder"}, {"agent": "scripted:boulware"}]}},
            "shuffle_seats": True, "eval": {"every": 2, "episodes": 8, "opponents": ["scripted:conceder"]}}


def dilemma(policy: dict) -> dict:
    """The dilemma in self-play: both seats the learner on ``policy``."""
    return {"env": {"id": "dilemma_v0", "kwargs": {"rounds": 5}}, "policies": {"main": {"policy": policy}},
            "seats": {"player_*": {"policy": "main"}},
            "eval": {"every": 0, "episodes": 8, "opponents": ["scripted:tit_for_tat"]}}


def sb3_cfg(data, **over):
    base = {"seed": 0, "num_envs": 8, "episodes_per_update": 16, "total_updates": 4, "transcript_every": 0,
            "ppo": {"backend": "sb3", "sb3_n_steps": 8, "minibatch_size": 64, "epochs": 2, "log_kl_ref": False}}
    return validate_config({**base, **data, **over}, TrainConfig)


def test_extractor_encodes_like_evoarena(tiny_policy):
    policy = build_policy(PolicyConfig.model_validate(tiny_policy()), "negotiation_v0")
    env = make("negotiation_v0")
    texts = []
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        texts += [o["text"] for o in obs.values()]
    tok = TokenizedObs.for_encoder(policy.encoder, policy.num_actions)
    rows = [tok({"text": t, "action_mask": np.ones(policy.num_actions, np.int8)}) for t in texts]
    batch = {k: torch.as_tensor(np.stack([r[k] for r in rows])).float() for k in rows[0]}  # SB3 gives floats
    assert tok.space.contains(rows[0])
    ext = EncoderExtractor(tok.space, policy.encoder)
    with torch.no_grad():
        got = ext(batch)
        want = policy.encoder.encode(texts)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("world", ["negotiation", "dilemma"])
def test_sb3_run_writes_tensorboard_and_checkpoint(world, tmp_path, tiny_policy):
    data = {"negotiation": negotiation, "dilemma": dilemma}[world](tiny_policy())
    res = run_standalone(sb3_cfg(data), tmp_path, progress=False)
    slots = 1 if world == "negotiation" else 2  # learner seats per world copy
    assert res["backend"] == "sb3" and res["updates"] == 4 and res["decisions"] == 4 * 8 * 8 * slots
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("train/main/value_loss", "train/main/approx_kl", "train/main/entropy_loss",
                "rollout/main/episode_return", "perf/decisions_per_second", "eval/score"):
        assert tag in tags, tag
    steps = [e.step for e in acc.Scalars("train/main/value_loss")]
    assert steps == [1, 2, 3, 4]  # one point per update, on evoarena's update axis
    if data["eval"]["every"]:  # as the evoarena backend: the starting policy is evaluated before update 1
        assert [e.step for e in acc.Scalars("eval/score")] == [0, 2, 4]
        assert [e["update"] for e in res["evals"]] == [0, 2, 4]
    decisions = [e.value for e in acc.Scalars("perf/decisions")]
    assert decisions[-1] == res["decisions"]
    assert all(np.isfinite(e.value) for e in acc.Scalars("train/main/value_loss"))
    opp = "scripted_conceder" if world == "negotiation" else "scripted_tit_for_tat"  # spec_tag: no ":" in tags
    assert f"eval/{opp}/learner_return" in tags
    results = json.loads((tmp_path / "results.json").read_text())["train"]
    assert np.isfinite(results["final_eval"]["score"])
    policy = load_policy(Path(res["checkpoint"]) / "policies" / "main")
    assert policy.env_id == data["env"]["id"]


def test_vec_env_seeds_and_masks(tiny_policy):
    from stable_baselines3.common.vec_env import VecEnv
    from supersuit import concat_vec_envs_v1, pettingzoo_env_to_vec_env_v1

    from evoarena.training.rl.sb3_backend import LearnerSlotsEnv, WorldVecEnv
    from evoarena.training.rl.seats import SeatPlanner

    cfg = sb3_cfg(negotiation(tiny_policy()))
    policy = build_policy(PolicyConfig.model_validate(tiny_policy()), "negotiation_v0")
    tok = TokenizedObs.for_encoder(policy.encoder, policy.num_actions)

    def venv() -> VecEnv:
        planner = SeatPlanner(cfg, ["player_0", "player_1"], {"player_0": "player", "player_1": "player"},
                              {"main": policy}, {}, 0)
        par = LearnerSlotsEnv("negotiation_v0", {}, planner, 1, tok, seed_stride=3)
        return WorldVecEnv(concat_vec_envs_v1(pettingzoo_env_to_vec_env_v1(par), 3, base_class="gymnasium"))

    a, b = venv(), venv()
    a.seed(7)
    b.seed(7)
    oa, ob = a.reset(), b.reset()
    np.testing.assert_array_equal(oa["input_ids"], ob["input_ids"])
    assert a.has_attr("action_masks") and not a.has_attr("nonsense")
    masks = np.stack(a.env_method("action_masks"))
    assert masks.shape == (3, policy.num_actions) and (masks.sum(1) > 1).all()  # only real decisions
    np.testing.assert_array_equal(masks, oa["action_mask"] != 0)
    with pytest.raises(AttributeError, match="nonsense"):
        a.env_method("nonsense")


@pytest.mark.parametrize("change,match", [  # change: the tiny policy config -> keys replaced in the config
    (lambda p: {"policies": {"a": {"policy": p}, "b": {"policy": p}},
                "seats": {"player_0": {"policy": "a"}, "player_1": {"policy": "b"}}}, "exactly one learner policy"),
    (lambda p: {"seats": {"player_0": {"policy": "main"}, "player_1": {"pool": [{"agent": "self"}]}}},
     "seats.player_1.pool"),
    (lambda p: {"policies": {"main": {"policy": {**p, "head": "scoring"}}}}, "head: linear"),
    (lambda p: {"ppo": {"backend": "sb3", "kl_coef": 0.1}}, "kl_coef"),
], ids=["two_learners", "self_in_a_pool", "scoring_head", "kl_coef"])
def test_sb3_errors_name_the_key(change, match, tmp_path, tiny_policy):
    cfg = sb3_cfg({**negotiation(tiny_policy()), **change(tiny_policy())})
    assert cfg.ppo.backend == "sb3"
    with pytest.raises(ValueError, match=match):
        run_standalone(cfg, tmp_path, progress=False)
