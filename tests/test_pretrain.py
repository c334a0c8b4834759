"""The pretrain stage: masked-LM on world text lowers held-out perplexity, writes TensorBoard tags and a
checkpoint that policies start from, resumes exactly, and rejects bad configs before any work."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from evoarena.cli import main
from evoarena.config import PolicyConfig, PretrainConfig, validate_config
from evoarena.training.infra import runs
from evoarena.training.stages import run_standalone
from evoarena.training.supervised.pretrain import mask_tokens


@pytest.fixture(scope="module")
def small_cfg(tiny_encoder):
    """``small_cfg(**over)``: 40 masked-LM steps of the tiny encoder twice as wide (default vocabulary)."""

    def make(**over) -> PretrainConfig:
        data = {"name": "pt", "seed": 0, "threads": 1, "steps": 40, "batch_size": 32, "lr": 2e-3, "eval_every": 20,
                "checkpoint_every": 20, "log_every": 10,
                "encoder": tiny_encoder(hidden_size=64, intermediate_size=128, vocab_size=2000),
                "corpus": {"episodes_per_env": 20, "max_heldout": 200}, **over}
        return validate_config(data, PretrainConfig)

    return make


def test_pretrain_lowers_perplexity_logs_tags_and_starts_a_policy(tmp_path, small_cfg):
    cfg = small_cfg()
    run = runs.create_run(tmp_path / "run", cfg)
    res = run_standalone(cfg, run)
    assert res["initial_perplexity"] > 5 * res["final_perplexity"], res["summary"]
    assert res["final_masked_accuracy"] > res["initial_masked_accuracy"] + 0.2
    assert json.loads((run / "results.json").read_text())["pretrain"]["steps"] == 40

    ea = EventAccumulator(str(run / "tb"))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    assert {"pretrain/loss", "pretrain/masked_accuracy", "pretrain/perplexity_heldout", "pretrain/lr"} <= tags
    ppl = [e.value for e in ea.Scalars("pretrain/perplexity_heldout")]
    assert [e.step for e in ea.Scalars("pretrain/perplexity_heldout")] == [0, 20, 40]
    assert ppl[0] == pytest.approx(res["initial_perplexity"], rel=1e-4) and ppl[-1] < ppl[0] / 5

    # the checkpoint starts a policy: every encoder weight is copied, the tokenizer is the pretrained one
    from evoarena.policies.actor_critic import build_policy
    from evoarena.training.supervised.loop import init_encoder_weights

    ckpt = run / "stages/01_pretrain/checkpoint"
    pcfg = PolicyConfig(init_from=str(ckpt), encoder=cfg.encoder)
    policy = build_policy(pcfg, "signaling_v0", "speaker")
    init_encoder_weights(policy, ckpt)
    saved = load_file(str(ckpt / "model.safetensors"))
    w = policy.encoder.model.embeddings.word_embeddings.weight
    assert torch.equal(w, saved["bert.embeddings.word_embeddings.weight"])
    assert len(policy.tokenizer) == res["vocab_size"]


def test_resume_continues_exactly_where_it_stopped(tmp_path, monkeypatch, small_cfg):
    import evoarena.training.supervised.pretrain as pretrain

    # WordPiece training breaks frequency ties differently from run to run, so both runs get one tokenizer
    # (a resumed run always reads the tokenizer saved with its training state)
    tokenizer = pretrain._tokenizer(small_cfg(), ["pool 3 book 1 hat", "message: red circle", "round 4/20."])
    monkeypatch.setattr(pretrain, "_tokenizer", lambda cfg, texts: tokenizer)
    cfg = small_cfg(steps=30, checkpoint_every=15, eval_every=15)
    full = runs.create_run(tmp_path / "full", cfg)
    run_standalone(cfg, full)

    from evoarena.training.supervised import loop  # every supervised stage writes its states through save_state

    real_save = loop.save_state

    def save_then_crash(folder, model, optimizer, state, tokenizer=None):
        real_save(folder, model, optimizer, state, tokenizer)
        if not state.get("done"):
            raise KeyboardInterrupt  # killed right after the step-15 state was written

    monkeypatch.setattr(loop, "save_state", save_then_crash)
    cut = runs.create_run(tmp_path / "cut", cfg)
    with pytest.raises(KeyboardInterrupt):
        run_standalone(cfg, cut)
    assert not (cut / "stages/01_pretrain/checkpoint").exists()
    monkeypatch.setattr(loop, "save_state", real_save)
    res = run_standalone(cfg, cut, resume=True)
    assert res["steps"] == 30
    a = load_file(str(full / "stages/01_pretrain/checkpoint/model.safetensors"))
    b = load_file(str(cut / "stages/01_pretrain/checkpoint/model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a finished stage resumed again returns its results without training
    assert run_standalone(cfg, cut, resume=True)["final_perplexity"] == res["final_perplexity"]


def test_masking_follows_bert_rules():
    import numpy as np

    special = np.zeros(50, dtype=bool)
    special[:5] = True
    ids = [[2] + list(range(5, 45)) + [3]] * 200
    inp, att, lab = mask_tokens(ids, special, 50, 4, 0.15, np.random.default_rng(0), 0)
    chosen = lab != -100
    assert not chosen[:, 0].any() and not chosen[:, -1].any()  # [CLS] / [SEP] never predicted
    assert 0.13 < chosen.float().mean() * 42 / 40 < 0.17
    masked = (inp == 4) & chosen
    assert 0.75 < masked.sum() / chosen.sum() < 0.85
    assert torch.equal(lab[chosen], torch.tensor(ids)[chosen])


@pytest.mark.parametrize("yaml_text, words", [
    ("steps: 10\ncorpus: {episodes_per_env: 5, heldout_fracton: 0.1}\n",
     ["corpus.heldout_fracton", "heldout_fraction"]),
    ("steps: 0\n", ["steps = 0", "greater than or equal to 1"]),
    ("corpus: {text_files: [/no/such/file.txt]}\n", ["corpus.text_files", "/no/such/file.txt"]),
    ("corpus: {envs: [chess_v0]}\n", ["chess_v0", "negotiation_v0"]),
])
def test_bad_config_fails_before_any_work(tmp_path, capsys, yaml_text, words):
    cfg = tmp_path / "pt.yaml"
    cfg.write_text(yaml_text)
    code = main(["pretrain", str(cfg), "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err
    assert not (tmp_path / "run").exists()
