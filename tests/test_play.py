"""Matches: hand-checked results, common random numbers, seats, and agents never asked without a choice."""

import numpy as np
import pytest

from evoarena.agents import AgentSpecError, UnknownStrategyError, make_agent, parse_spec
from evoarena.agents.random_agent import RandomAgent
from evoarena.bench import play, summarize
from evoarena.envs import UnknownEnvError


@pytest.mark.parametrize(
    "a, b, ra, rb",
    [("tit_for_tat", "always_defect", 19, 24), ("tit_for_tat", "tit_for_tat", 60, 60),
     ("always_cooperate", "always_defect", 0, 100), ("grim_trigger", "always_cooperate", 60, 60),
     ("suspicious_tit_for_tat", "tit_for_tat", 50, 50)],
)
def test_dilemma_hand_checked(a, b, ra, rb):
    # suspicious TFT vs TFT alternates (D,C),(C,D),...: 10 rounds of 5 and 10 of 0 each -> 50 each.
    res = play("dilemma_v0", [f"scripted:{a}", f"scripted:{b}"], episodes=3, seed=0)
    assert res.returns["player_0"].tolist() == [ra] * 3
    assert res.returns["player_1"].tolist() == [rb] * 3


def test_summary_and_metrics():
    res = play("dilemma_v0", ["scripted:always_cooperate", "scripted:always_defect"], episodes=5, seed=1)
    s = summarize(res)
    assert s["seats"]["player_0"]["mean_return"] == 0 and s["seats"]["player_0"]["ci95"] == 0
    assert s["metrics"]["cooperation_rate"] == pytest.approx(0.5)


class CountingAgent(RandomAgent):
    """A random agent that records every observation it is asked about."""

    def __init__(self, seed=None):
        super().__init__(seed)
        self.asked = []

    def act_batch(self, obs_list):
        self.asked.extend(obs_list)
        return super().act_batch(obs_list)


@pytest.mark.parametrize("env_id", ["negotiation_v0", "signaling_v0"])
def test_agents_with_one_legal_action_are_never_asked(env_id):
    agents = [CountingAgent(i) for i in range(2)]
    res = play(env_id, agents, episodes=40, seed=3, num_envs=8)
    assert len(res.metrics) == 40 and all(res.metrics)
    total = sum(len(a.asked) for a in agents)
    assert total > 40
    for a in agents:
        assert all(int(np.sum(o["action_mask"])) > 1 for o in a.asked)


def test_common_random_numbers_and_batching_do_not_change_results():
    seats = ["scripted:conceder", "scripted:boulware"]
    r1 = play("negotiation_v0", seats, episodes=30, seed=11, num_envs=1)
    r2 = play("negotiation_v0", seats, episodes=30, seed=11, num_envs=16)
    for a in r1.agents:
        assert np.array_equal(r1.returns[a], r2.returns[a])
    r3 = play("negotiation_v0", seats, episodes=30, seed=12, num_envs=16)
    assert not np.array_equal(r1.returns["player_0"], r3.returns["player_0"])


def test_transcripts_recorded():
    res = play("dilemma_v0", ["scripted:tit_for_tat", "random"], episodes=4, seed=0, record=2)
    assert len(res.transcripts) == 2 and all(t.strip() for t in res.transcripts)


def test_bad_specs_and_seats():
    with pytest.raises(AgentSpecError, match="bad agent spec 'scripted'"):
        parse_spec("scripted")
    with pytest.raises(UnknownStrategyError, match="'tit_for_tatt'.*did you mean 'tit_for_tat'"):
        make_agent("scripted:tit_for_tatt", "dilemma_v0")
    with pytest.raises(UnknownEnvError, match="'dilema_v0'.*dilemma_v0"):
        make_agent("random", "dilema_v0")
    with pytest.raises(ValueError, match="has 2 agents"):
        play("dilemma_v0", ["random"], episodes=1)
    with pytest.raises(ValueError, match="episodes must be >= 1"):
        play("dilemma_v0", ["random", "random"], episodes=0)


def test_a_training_checkpoint_with_one_policy_is_an_agent_and_several_are_named(tmp_path):
    from evoarena.config import EncoderConfig, PolicyConfig
    from evoarena.policies.actor_critic import build_policy
    from evoarena.policies.io import CheckpointError, save_checkpoint

    policy = build_policy(PolicyConfig(kind="mlp", encoder=EncoderConfig(device="cpu")), "dilemma_v0")
    one = tmp_path / "03_train" / "checkpoint"  # as the PPO stage writes it: policies/NAME/
    save_checkpoint(one / "policies" / "main", policy)
    agent = make_agent(f"ckpt:{one}", "dilemma_v0")
    assert agent.name == f"ckpt:{one / 'policies' / 'main'}"
    res = play("dilemma_v0", [f"ckpt:{one}", "scripted:tit_for_tat"], episodes=2, seed=0)
    assert res.returns["player_0"].shape == (2,)
    two = tmp_path / "two"
    for name in ("attacker", "defender"):
        save_checkpoint(two / "policies" / name, policy)
    with pytest.raises(CheckpointError, match=r"holding 2 policies; name one: ckpt:.*two/policies/attacker, "
                                              r"ckpt:.*two/policies/defender"):
        make_agent(f"ckpt:{two}", "dilemma_v0")
