"""Speed paths of the text encoder compute the same function: cached frozen lower layers in ``top_k`` mode,
and SB3-style fixed-width inputs through ``forward_padded``."""

import copy

import pytest
import torch

from evoarena.config import EncoderConfig
from evoarena.envs import make
from evoarena.policies.encoder import build_encoder


@pytest.fixture
def small(tiny_encoder):
    """``small(**over)``: the tiny encoder with three layers (two to freeze and cache), fp32 on the CPU."""
    return lambda **over: EncoderConfig.model_validate(
        tiny_encoder(**{"num_layers": 3, "autocast": "off", "device": "cpu", **over}))


def world_texts(n_episodes: int = 8) -> list[str]:
    env = make("negotiation_v0")
    texts = []
    for seed in range(n_episodes):
        obs, _ = env.reset(seed=seed)
        texts += [o["text"] for o in obs.values()]
    return texts


def test_top_k_cached_lower_layers_give_the_same_outputs_and_gradients(small):
    torch.manual_seed(0)
    enc = build_encoder(small(train_mode="top_k", top_k=1))
    assert enc._split == 2  # two frozen layers are cached
    plain = copy.deepcopy(enc)
    plain._split = None  # the full forward pass
    texts = world_texts()
    with torch.no_grad():
        enc.encode(texts[:5])  # a "rollout" fills the cache for some texts
    assert len(enc._acts) == len(set(texts[:5]))
    got, want = enc.encode(texts), plain.encode(texts)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    got.pow(2).sum().backward()
    want.pow(2).sum().backward()
    grads = [(n, p.grad, q.grad) for (n, p), q in zip(enc.model.named_parameters(), plain.model.parameters())
             if p.requires_grad]
    assert grads and all(g is not None for _, g, _ in grads)
    for name, g, h in grads:
        torch.testing.assert_close(g, h, atol=1e-5, rtol=1e-4, msg=name)
    assert not copy.deepcopy(enc)._acts  # snapshots start without the cache


def test_forward_padded_ignores_extra_padding(small):
    enc = build_encoder(small())
    texts = world_texts(2)
    ids = enc.token_ids(texts)
    width = 64
    arr = torch.full((len(ids), width), enc.pad_id, dtype=torch.long)
    mask = torch.zeros(len(ids), width, dtype=torch.long)
    for i, x in enumerate(ids):
        arr[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    with torch.no_grad():
        torch.testing.assert_close(enc.forward_padded(arr.float(), mask.float()), enc.encode(texts, dedupe=False),
                                   atol=1e-5, rtol=1e-4)


def test_autocast_auto_on_cpu_follows_the_probe(monkeypatch, small):
    from evoarena.policies import text_encoder as enc_mod

    for verdict in (False, True):
        monkeypatch.setattr(enc_mod, "cpu_bf16_faster", lambda model, vocab, v=verdict: v)
        enc = build_encoder(small(autocast="auto"))
        assert (enc._autocast_dtype is torch.bfloat16) == verdict
        off = build_encoder(small(autocast="off"))
        assert off._autocast_dtype is None


def test_bf16_probe_runs_once_per_architecture(monkeypatch, small):
    from evoarena.policies import numerics
    from evoarena.policies import text_encoder as enc_mod

    numerics.reset()
    seen = []
    numerics.on_change(seen.append)
    enc = build_encoder(small(autocast="off"))
    first = enc_mod.cpu_bf16_faster(enc.model, len(enc.tokenizer))
    assert isinstance(first, bool) and len(numerics.decisions()["bf16"]) == 1 and len(seen) == 1
    assert enc_mod.cpu_bf16_faster(enc.model, len(enc.tokenizer)) is first  # cached, not re-measured
    assert len(seen) == 1  # the recorded verdict is reused: no second probe, no second record
    recorded = numerics.decisions()
    numerics.adopt({**recorded, "bf16": {k: not v for k, v in recorded["bf16"].items()}})
    assert enc_mod.cpu_bf16_faster(enc.model, len(enc.tokenizer)) is (not first)  # a resumed run's verdict wins
    numerics.reset()


# ---------------------------------------------------------------- the cheap RL path: frozen encoder, cached outputs

@pytest.fixture
def cheap(tiny_policy):
    """The cheap RL path's policy config: MLP heads on the tiny encoder (two layers, fp32), frozen."""
    return tiny_policy(encoder={"num_layers": 2, "autocast": "off", "device": "cpu", "train_mode": "frozen"},
                       head_hidden=16)


def world_obs(n_episodes: int = 6) -> list[dict]:
    """Decision observations of negotiation (random legal play), texts repeating across episodes."""
    import numpy as np

    env = make("negotiation_v0")
    rng = np.random.default_rng(0)
    out = []
    for seed in range(n_episodes):
        obs, _ = env.reset(seed=seed % 3)
        while env.agents:
            acts = {}
            for a in env.agents:
                legal = np.flatnonzero(obs[a]["action_mask"])
                if len(legal) > 1:
                    out.append(obs[a])
                acts[a] = int(rng.choice(legal))
            obs, *_ = env.step(acts)
    return out


def cheap_policy(cfg: dict):
    from evoarena.config import PolicyConfig
    from evoarena.policies import build_policy

    torch.manual_seed(0)
    return build_policy(PolicyConfig.model_validate(cfg), "negotiation_v0")


def test_frozen_cache_gives_the_same_outputs_and_head_gradients(cheap):
    policy = cheap_policy(cheap)
    plain = copy.deepcopy(policy)
    plain.encoder.train_mode = "full"  # the same frozen weights, every text encoded on every call
    obs = world_obs()
    with torch.no_grad():
        policy.forward_obs(obs[: len(obs) // 2])  # a "rollout" fills the cache for some texts
    assert policy.encoder._frozen
    (lg, vg), (lw, vw) = policy.forward_obs(obs), plain.forward_obs(obs)
    torch.testing.assert_close(lg, lw, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(vg, vw, atol=1e-5, rtol=1e-4)
    for logits, values in ((lg, vg), (lw, vw)):
        (logits.clamp(min=-10).log_softmax(-1).sum() + values.pow(2).sum()).backward()
    trained = [(n, p.grad, q.grad) for (n, p), q in zip(policy.named_parameters(), plain.parameters())
               if p.requires_grad]
    assert trained and all(n.startswith(("policy_head", "value_head")) for n, _, _ in trained)
    for name, g, h in trained:
        assert g is not None and float(g.abs().sum()) > 0, name
        torch.testing.assert_close(g, h, atol=1e-5, rtol=1e-4, msg=name)


def test_a_full_frozen_cache_still_serves_the_batch_that_overflows_it(small, monkeypatch):
    # a long PPO run in negotiation fills the cache; the batch that overflows it holds texts cached before
    # (they were dropped with the rest and then looked up: KeyError at update ~120 of three chains)
    from evoarena.policies import text_encoder

    enc = build_encoder(small(train_mode="frozen"))
    texts = list(dict.fromkeys(world_texts()))[:6]
    monkeypatch.setattr(text_encoder, "MAX_CACHE_ENTRIES", 4)
    enc.encode(texts[:3])
    out = enc.encode(texts)  # 3 cached + 3 new > 4: the cache starts over
    with torch.no_grad():
        torch.testing.assert_close(out, enc.forward_texts(texts))
    assert len(enc._frozen) <= 4 + 3


def test_frozen_cache_never_serves_an_encoding_of_old_weights(small):
    enc = build_encoder(small(train_mode="frozen"))
    texts = world_texts()
    before = enc.encode(texts)
    with torch.no_grad():  # weights changed in place (an optimizer step, a hand edit)
        w = enc.model.encoder.layer[-1].output.dense.weight
        w.add_(torch.randn_like(w))
    after = enc.encode(texts)
    with torch.no_grad():
        fresh = enc.forward_texts(texts)
    torch.testing.assert_close(after, fresh)
    assert not torch.allclose(after, before, atol=1e-3)
    other = build_encoder(small(train_mode="frozen"))
    with torch.no_grad():
        for p in other.model.parameters():
            p.mul_(1.5)
    enc.load_state_dict(other.state_dict())  # load: the cache follows the new weights
    torch.testing.assert_close(enc.encode(texts), other.encode(texts))


def test_a_frozen_encoder_run_resumed_from_a_checkpoint_equals_the_uninterrupted_one(tmp_path, monkeypatch, cheap):
    """Cached outputs carry the last bits of the batch they were first computed in; PPO drops them at every
    checkpoint, so a run stopped after one and resumed (caches empty) encodes exactly as the uninterrupted run."""
    from safetensors.torch import load_file

    from evoarena.config import TrainConfig, validate_config
    from evoarena.training.rl.rollout import Rollout
    from evoarena.training.stages import run_standalone

    data = {"env": {"id": "dilemma_v0", "kwargs": {"rounds": 6}}, "seed": 0, "threads": 1, "num_envs": 16,
            "episodes_per_update": 16, "total_updates": 4, "checkpoint_every": 2, "transcript_every": 0,
            "eval": {"every": 0, "episodes": 2},
            "policies": {"main": {"policy": {**cheap, "encoder": {**cheap["encoder"], "autocast": "bf16"}}}},
            "seats": {"player_0": {"policy": "main"}, "player_1": {"agent": "random"}},
            "ppo": {"epochs": 2, "minibatch_size": 32, "log_kl_ref": False}}
    cfg = validate_config(data, TrainConfig, source="test")
    run_standalone(cfg, tmp_path / "whole", progress=False)

    class Stop(Exception):
        pass

    real, calls = Rollout.collect, []

    def collect(self, episodes):
        calls.append(1)
        if len(calls) == 3:  # update 3, after the checkpoint of update 2
            raise Stop
        return real(self, episodes)

    monkeypatch.setattr(Rollout, "collect", collect)
    with pytest.raises(Stop):
        run_standalone(cfg, tmp_path / "split", progress=False)
    monkeypatch.setattr(Rollout, "collect", real)
    run_standalone(cfg, tmp_path / "split", resume=True, progress=False)
    weights = [load_file(str(d / "stages/01_train/checkpoint/policies/main/model.safetensors"))
               for d in (tmp_path / "whole", tmp_path / "split")]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


def test_top_k_cache_survives_top_layer_steps_but_not_lower_layer_changes(small):
    torch.manual_seed(0)
    enc = build_encoder(small(train_mode="top_k", top_k=1))
    texts = world_texts()
    enc.encode(texts).pow(2).sum().backward()
    opt = torch.optim.SGD([p for p in enc.parameters() if p.requires_grad], lr=0.1)
    opt.step()  # trains the top layer: the cached lower-layer activations stay valid
    cached = len(enc._acts)
    plain = copy.deepcopy(enc)
    plain._split = None
    torch.testing.assert_close(enc.encode(texts), plain.encode(texts), atol=1e-5, rtol=1e-4)
    assert len(enc._acts) == cached
    with torch.no_grad():  # a frozen lower layer changes (e.g. a loaded checkpoint): the cache is dropped
        change = torch.randn_like(enc.model.encoder.layer[0].output.dense.weight)
        enc.model.encoder.layer[0].output.dense.weight.add_(change)
        plain.model.encoder.layer[0].output.dense.weight.add_(change)
    torch.testing.assert_close(enc.encode(texts), plain.encode(texts), atol=1e-5, rtol=1e-4)


def test_ppo_update_reuses_the_rollouts_encodings(monkeypatch, cheap):
    import numpy as np

    from evoarena.config import PPOConfig
    from evoarena.training.rl import update as update_mod
    from evoarena.training.rl.rollout import LearnerBatch
    from evoarena.training.rl.update import ppo_update

    policy = cheap_policy(cheap)
    obs = world_obs()
    batch = LearnerBatch()
    out = policy.act(obs, generator=torch.Generator().manual_seed(0))  # the rollout encodes every text once
    for o, a, lp, v in zip(obs, out.actions, out.logp, out.values):
        batch.add(o, int(a), float(lp), float(v))
    batch.rewards = list(np.random.default_rng(0).normal(size=len(obs)))
    batch.streams = [([i], 0.0) for i in range(len(obs))]
    batch.finish(0.99, 0.95)
    twin = copy.deepcopy(policy)  # the same update through forward_obs on every minibatch
    calls = []
    real = policy.encoder.forward_padded
    monkeypatch.setattr(policy.encoder, "forward_padded", lambda *a, **k: calls.append(1) or real(*a, **k))
    heads = [p.detach().clone() for p in policy.parameters() if p.requires_grad]

    def update(pol) -> dict:
        opt = torch.optim.Adam([p for p in pol.parameters() if p.requires_grad], lr=1e-3)
        return ppo_update(pol, opt, batch, PPOConfig(epochs=2, minibatch_size=16), None, np.random.default_rng(0))

    stats = update(policy)
    assert calls == []  # no text of the rollout was encoded again
    trained = [p for p in policy.parameters() if p.requires_grad]
    assert any(not torch.equal(h, p) for h, p in zip(heads, trained))
    monkeypatch.setattr(update_mod, "rollout_features", lambda pol, b: None)
    want = update(twin)
    for p, q in zip(trained, (q for q in twin.parameters() if q.requires_grad)):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)
    assert abs(stats["policy_loss"] - want["policy_loss"]) < 1e-5
