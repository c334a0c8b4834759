"""The Gymnasium single-agent view of every world: ``check_env``, real decisions only, returns that match
the world's own accounting, opponents as specs or objects, clear errors, and envs importing no agents."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from evoarena.agents import make_agent, single_agent
from evoarena.envs import list_envs, make


def seats_of(env_id):
    agents = make(env_id).possible_agents
    return agents[:2]  # the first seat and a second one (another role in signaling)


@pytest.mark.parametrize("env_id", list_envs())
def test_check_env_every_world(env_id):
    for seat in seats_of(env_id):
        env = single_agent(env_id, seat, "random", seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the features Box is unbounded: a warning, not an error
            check_env(env)


def test_every_step_is_a_real_decision_and_return_matches_the_world():
    env = single_agent("negotiation_v0", "player_1", "scripted:conceder", seed=0)
    for ep in range(20):
        obs, _ = env.reset(seed=ep)
        total, done = 0.0, False
        rng = np.random.default_rng(ep)
        while not done:
            legal = np.flatnonzero(obs["action_mask"])
            assert len(legal) > 1  # never asked to `wait`
            obs, r, term, trunc, info = env.step(int(rng.choice(legal)))
            assert not info["illegal_action"]
            total += r
            done = term or trunc
        assert total == pytest.approx(info["metrics"]["score_player_1"])


def test_dilemma_return_equals_payoff_and_spec_or_object_opponents_agree():
    by_spec = single_agent("dilemma_v0", "player_0", "scripted:tit_for_tat", env_kwargs={"rounds": 5})
    by_obj = single_agent("dilemma_v0", "player_0", {"player_1": make_agent("scripted:tit_for_tat", "dilemma_v0")},
                          env_kwargs={"rounds": 5})
    for env in (by_spec, by_obj):
        env.reset(seed=3)
        rets, done = [], False
        while not done:
            _, r, term, trunc, info = env.step(1)  # always defect against tit-for-tat
            rets.append(r)
            done = term or trunc
        assert info["metrics"]["payoff_player_0"] == pytest.approx(sum(rets))
        assert rets[0] > rets[1] == rets[-1]  # exploits once, then mutual defection


def test_illegal_actions_resample_or_raise():
    env = single_agent("negotiation_v0", "player_0", "scripted:conceder", seed=0)
    obs, _ = env.reset(seed=1)
    illegal = int(np.flatnonzero(obs["action_mask"] == 0)[-1])
    _, _, _, _, info = env.step(illegal)
    assert info["illegal_action"]
    strict = single_agent("negotiation_v0", "player_0", "scripted:conceder", seed=0, on_illegal="raise")
    obs, _ = strict.reset(seed=1)
    with pytest.raises(ValueError, match="player_0"):
        strict.step(illegal)


def test_clear_errors():
    with pytest.raises(ValueError, match="no seat 'player_9'"):
        single_agent("dilemma_v0", "player_9", "random")
    with pytest.raises(ValueError, match="missing"):
        single_agent("dilemma_v0", "player_0", {}, env_kwargs={"num_agents": 3})
    with pytest.raises(TypeError, match="act_batch"):
        single_agent("dilemma_v0", "player_0", [object()])


def test_importing_envs_imports_no_agents():
    code = "import sys, evoarena.envs; print('evoarena.agents' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
