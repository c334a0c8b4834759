"""The finetune stage: NER on real CoNLL-2003 (tiny encoder), IOB1/IOB2 input, behaviour cloning of a scripted
expert into a policy checkpoint, TensorBoard tags, exact resume, and config errors before any work."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from evoarena.cli import main
from evoarena.config import FinetuneConfig, PretrainConfig, validate_config
from evoarena.training.infra import runs
from evoarena.training.stages import run_standalone
from evoarena.training.supervised.demos import generate_demos

CONLL_DIR = Path(os.environ.get("EVOARENA_CONLL_DIR",
                                Path(__file__).resolve().parents[2] / "shared/data/conll2003"))


def scalars(run_dir: Path) -> EventAccumulator:
    ea = EventAccumulator(str(run_dir / "tb"))
    ea.Reload()
    return ea


def ner_cfg(data: dict, **over) -> FinetuneConfig:
    cfg = {
        "name": "ner", "seed": 0, "task": "ner", "threads": 1,
        "ner": {"data": data, "dropout": 0.0,
                "encoder": {"preset": "tiny", "max_length": 64, "vocab_size": 3000}},
        "optim": {"lr": 2e-3, "batch_size": 32, "epochs": 3, "warmup_fraction": 0.1},
    }
    for key, value in over.items():
        cfg[key] = value
    return validate_config(cfg, FinetuneConfig)


@pytest.mark.skipif(not (CONLL_DIR / "train.txt").is_file(), reason=f"no CoNLL-2003 data at {CONLL_DIR}")
def test_ner_on_real_conll_slice_rises_far_above_untrained(tmp_path):
    cfg = ner_cfg({"data_dir": str(CONLL_DIR), "max_train_sentences": 1000, "max_eval_sentences": 300})
    run = runs.create_run(tmp_path / "run", cfg)
    res = run_standalone(cfg, run)
    before, after = res["untrained_valid"]["entity_f1"], res["valid"]["entity_f1"]
    assert after > 0.25 and after > before + 0.2 and after > 4 * before, res["summary"]
    assert 0 < res["test"]["entity_f1"] <= 1 and res["test"]["token_accuracy"] > 0.8
    assert {"PER", "ORG", "LOC", "MISC"} <= set(res["valid"]["per_type"])
    assert res["labels"][0] == "O" and "B-PER" in res["labels"]  # IOB1 file read as IOB2

    tags = set(scalars(run).Tags()["scalars"])
    assert {"finetune/loss", "finetune/lr", "eval/valid/entity_f1", "eval/valid/token_accuracy",
            "eval/test/entity_f1", "eval/test/token_accuracy", "eval/valid/f1_PER"} <= tags

    # the checkpoint is a Hugging Face token-classification folder; its encoder starts a policy
    from transformers import AutoModelForTokenClassification

    from evoarena.config import PolicyConfig
    from evoarena.policies.actor_critic import build_policy
    from evoarena.training.supervised.loop import init_encoder_weights

    ckpt = run / "stages/01_finetune/checkpoint"
    hf = AutoModelForTokenClassification.from_pretrained(str(ckpt), local_files_only=True)
    assert hf.config.id2label[0] == "O" and hf.config.num_labels == len(res["labels"])
    pcfg = PolicyConfig(init_from=str(ckpt), encoder=cfg.ner.encoder)
    policy = build_policy(pcfg, "dilemma_v0")
    init_encoder_weights(policy, ckpt)
    assert torch.equal(policy.encoder.model.embeddings.word_embeddings.weight,
                       hf.bert.embeddings.word_embeddings.weight)


CONLL_IOB1 = """-DOCSTART- -X- O O

John NNP I-NP I-PER
Smith NNP I-NP I-PER
visited VBD I-VP O
Paris NNP I-NP I-LOC
. . O O

Acme NNP I-NP I-ORG
Corp NNP I-NP I-ORG
hired VBD I-VP O
Mary NNP I-NP I-PER
Jones NNP I-NP I-PER
Bob NNP I-NP B-PER
. . O O
"""


CONLL_IOB2 = CONLL_IOB1
for _word in ("John", "Paris", "Acme", "Mary"):  # entity starts: I-X in IOB1, B-X in IOB2
    CONLL_IOB2 = CONLL_IOB2.replace(f"{_word} NNP I-NP I-", f"{_word} NNP I-NP B-")


def _write_conll(folder: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train.txt", "valid.txt", "test.txt"):
        (folder / name).write_text(text * 20)


def test_ner_accepts_iob1_and_iob2_and_resumes_exactly(tmp_path, monkeypatch):
    from evoarena.training.supervised.conll import detect_scheme, read_conll

    _write_conll(tmp_path / "iob1", CONLL_IOB1)
    _write_conll(tmp_path / "iob2", CONLL_IOB2)
    assert detect_scheme([s.tags for s in read_conll(tmp_path / "iob2/train.txt")]) == "IOB2"
    assert detect_scheme([s.tags for s in read_conll(tmp_path / "iob1/train.txt")]) == "IOB1"
    over = {"optim": {"lr": 2e-3, "batch_size": 8, "epochs": 2}, "checkpoint_every": 3}
    results = {}
    for scheme in ("iob1", "iob2"):
        cfg = ner_cfg({"data_dir": str(tmp_path / scheme)}, **over)
        results[scheme] = run_standalone(cfg, runs.create_run(tmp_path / f"run_{scheme}", cfg))
    labels = ["O", "B-LOC", "B-ORG", "B-PER", "I-ORG", "I-PER"]
    assert results["iob1"]["labels"] == results["iob2"]["labels"] == labels
    assert [results[s]["valid"]["n_true_entities"] for s in ("iob1", "iob2")] == [5 * 20, 5 * 20]

    # crash right after the first training state, resume: the same weights as the uninterrupted run
    # (with one tokenizer: WordPiece training breaks frequency ties differently from run to run)
    import evoarena.training.supervised.ner as ner_stage

    tokenizer = ner_stage._ner_tokenizer(ner_cfg({"data_dir": str(tmp_path / "iob1")}).ner,
                                          read_conll(tmp_path / "iob1/train.txt"))
    monkeypatch.setattr(ner_stage, "_ner_tokenizer", lambda ner, sentences: tokenizer)
    cfg = ner_cfg({"data_dir": str(tmp_path / "iob1")}, **over)
    first = run_standalone(cfg, runs.create_run(tmp_path / "first", cfg))
    from evoarena.training.supervised import loop  # every supervised stage writes its states through save_state

    real_save = loop.save_state

    def save_then_crash(folder, model, optimizer, state, tokenizer=None):
        real_save(folder, model, optimizer, state, tokenizer)
        if not state.get("done"):
            raise KeyboardInterrupt

    cut = runs.create_run(tmp_path / "cut", cfg)
    monkeypatch.setattr(loop, "save_state", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run_standalone(cfg, cut)
    monkeypatch.setattr(loop, "save_state", real_save)
    res = run_standalone(cfg, cut, resume=True)
    assert res["steps"] == first["steps"]
    a = load_file(str(tmp_path / "first/stages/01_finetune/checkpoint/model.safetensors"))
    b = load_file(str(cut / "stages/01_finetune/checkpoint/model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- behaviour cloning


@pytest.fixture(scope="module")
def wide(tiny_encoder) -> dict:
    """The tiny encoder twice as wide, with the default vocabulary: it learns to clone in a few dozen steps."""
    return tiny_encoder(hidden_size=64, intermediate_size=128, vocab_size=2000)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, wide) -> Path:
    """A small tiny-encoder pretrain checkpoint (seconds)."""

    cfg = validate_config({"name": "pt", "threads": 1, "steps": 40, "batch_size": 32, "lr": 2e-3,
                           "eval_every": 40, "encoder": wide,
                           "corpus": {"episodes_per_env": 20, "max_heldout": 100}},
                          PretrainConfig)
    run = runs.create_run(tmp_path_factory.mktemp("pt") / "run", cfg)
    run_standalone(cfg, run)
    return run / "stages/01_pretrain/checkpoint"


@pytest.fixture(scope="module")
def bc_cfg(pretrained, wide):
    """``bc_cfg(optim=None, **bc_over)``: cloning tit_for_tat in a 10-round dilemma, from ``pretrained``."""

    def make(optim: dict | None = None, **bc_over) -> FinetuneConfig:
        bc = {"env": {"id": "dilemma_v0", "kwargs": {"rounds": 10}}, "expert": "scripted:tit_for_tat",
              "opponents": ["random"], "policy": {"init_from": str(pretrained), "encoder": dict(wide)},
              "train_episodes": 300, "heldout_episodes": 40, "eval_episodes": 50}
        bc.update(bc_over)
        return validate_config({"name": "bc", "task": "bc", "threads": 1, "bc": bc, "eval_every": 10,
                                "checkpoint_every": 20,
                                "optim": optim or {"lr": 2e-3, "batch_size": 64, "epochs": 16}},
                               FinetuneConfig)

    return make


def test_bc_clones_tit_for_tat_into_a_playable_checkpoint(tmp_path, bc_cfg):
    cfg = bc_cfg(value_detach=False)  # the value loss may shape the encoder too: it must learn
    run = runs.create_run(tmp_path / "run", cfg)
    res = run_standalone(cfg, run)
    role = res["roles"]["player"]
    assert role["history"][0]["action_accuracy"] < 0.7, res["summary"]
    assert role["heldout_action_accuracy"] > 0.95, res["summary"]
    # the value head starts at the mean return (MSE = the returns' variance) and must do better than that
    # (an unlearned head stays at ~1.0x). Seen: 0.87x when this test runs alone, 0.905x inside the full
    # suite: the WordPiece trainer is not deterministic within a process, so the tokenizer (and with it
    # this figure) depends on which tests trained tokenizers before; returns against a random opponent
    # are mostly unpredictable, so the margin is modest.
    assert role["heldout_value_mse"] < 0.95 * role["history"][0]["value_mse"]
    assert res["eval_games"] == 2 * 50 and abs(res["clone_score"] - res["expert_score"]) < 1.0

    ea = scalars(run)
    tags = set(ea.Tags()["scalars"])
    assert {"finetune/player/loss", "finetune/player/policy_loss", "finetune/player/value_mse",
            "finetune/player/lr", "eval/heldout/player/action_accuracy", "eval/all/clone_score",
            "eval/all/expert_score"} <= tags

    # the checkpoint is a ckpt: agent that plays like tit-for-tat
    from evoarena.agents import make_agent
    from evoarena.agents.match import play

    ckpt = run / "stages/01_finetune/checkpoint"
    agent = make_agent(f"ckpt:{ckpt}", "dilemma_v0")
    result = play("dilemma_v0", [agent, "scripted:always_defect"], episodes=4, seed=5,
                  env_kwargs={"rounds": 10})
    assert result.returns["player_0"].tolist() == [9.0] * 4  # cooperates once, then defects back


@pytest.mark.parametrize("aux", [[], ["others_defect_rate"]], ids=["plain", "aux_head"])
def test_bc_resume_gives_the_uninterrupted_weights(tmp_path, monkeypatch, bc_cfg, aux):
    cfg = bc_cfg(optim={"lr": 2e-3, "batch_size": 64, "max_steps": 30}, train_episodes=60,
                 heldout_episodes=10, eval_episodes=4, value_detach=False, aux_features=aux)
    full = run_standalone(cfg, runs.create_run(tmp_path / "full", cfg))
    from evoarena.training.supervised import loop  # every supervised stage writes its states through save_state

    real = loop.save_state

    def save_then_crash(folder, model, optimizer, state, tokenizer=None):
        real(folder, model, optimizer, state, tokenizer)
        if not state.get("done"):
            raise KeyboardInterrupt

    cut = runs.create_run(tmp_path / "cut", cfg)
    monkeypatch.setattr(loop, "save_state", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run_standalone(cfg, cut)
    assert (cut / "stages/01_finetune/state/player/policy.json").is_file()  # a policy's state is its checkpoint
    monkeypatch.setattr(loop, "save_state", real)
    res = run_standalone(cfg, cut, resume=True)
    assert res["roles"]["player"]["steps"] == full["roles"]["player"]["steps"]
    a = load_file(str(tmp_path / "full/stages/01_finetune/checkpoint/model.safetensors"))
    b = load_file(str(cut / "stages/01_finetune/checkpoint/model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert run_standalone(cfg, cut, resume=True)["clone_score"] == res["clone_score"]


def test_bc_aux_features_are_learned_by_a_head_over_the_encoder(tmp_path, bc_cfg):
    # tit_for_tat reads only the last round: nothing in cloning it asks the encoder to keep how often the
    # opponent defected; the auxiliary head does, through the encoder it trains
    cfg = bc_cfg(eval_episodes=4, aux_features=["others_defect_rate", "round_frac"], aux_coef=1.0)
    run = runs.create_run(tmp_path / "run", cfg)
    res = run_standalone(cfg, run)
    assert res["roles"]["player"]["heldout_action_accuracy"] > 0.9, res["summary"]
    aux = [e.value for e in scalars(run).Scalars("finetune/player/aux_mse")]
    # in standardised units a constant prediction scores 1.0; the head starts untrained (about 1 or more)
    assert aux[0] > 0.8 and aux[-1] < 0.2, aux
    demos = generate_demos(cfg.bc, 3, 0, ["player"], need_names=False)["player"]
    assert demos.aux is not None and demos.aux.shape == (len(demos), 2)
    tenths = demos.aux[:, 1] * 10  # round_frac of a 10-round game: rounds played / 10
    assert np.allclose(tenths, tenths.round(), atol=1e-5) and tenths.min() >= 0 and tenths.max() <= 9


def test_bc_aux_loss_reaches_the_encoder(bc_cfg):
    # the auxiliary loss must shape the encoder (what a later frozen-encoder stage reads), not only its own head
    from evoarena.training.supervised.bc import build_clone_policy
    from evoarena.training.supervised.bc_loss import AuxHead, bc_losses

    cfg = bc_cfg(aux_features=["others_defect_rate"])
    demos = generate_demos(cfg.bc, 20, 0, ["player"], need_names=False)["player"]
    policy = build_clone_policy(cfg.bc, "player")
    policy.eval()  # no dropout: the two passes differ by the auxiliary term alone
    aux = AuxHead(policy.encoder.hidden_size, demos)
    idx = np.arange(len(demos))

    def encoder_grads(coef: float) -> list[torch.Tensor]:
        policy.zero_grad()
        loss, parts = bc_losses(policy, demos, idx, 0.5, aux=aux, aux_coef=coef)
        loss.backward()
        assert parts["aux_mse"] > 0
        return [p.grad.clone() for p in policy.encoder.parameters() if p.grad is not None]

    plain, with_aux = encoder_grads(0.0), encoder_grads(1.0)
    assert plain and len(plain) == len(with_aux)
    assert any(not torch.allclose(a, b) for a, b in zip(plain, with_aux, strict=True))


def test_demonstration_returns_are_discounted_per_decision(bc_cfg):
    # tit-for-tat vs always-defect in a 3-round prisoner's dilemma: payoffs 0 (sucker), 1, 1
    cfg = bc_cfg(env={"id": "dilemma_v0", "kwargs": {"rounds": 3}},
                 opponents=["scripted:always_defect"], gamma=0.5)
    demos = generate_demos(cfg.bc, 2, 0, ["player"], need_names=False)["player"]
    by_round = {t.split(".")[0]: (a, c, r) for t, a, c, r in
                zip(demos.texts, demos.actions, demos.counts, demos.returns, strict=True)}
    assert by_round == {"round 1/3": (0, 2, 0.75), "round 2/3": (1, 2, 1.5), "round 3/3": (1, 2, 1.0)}
    assert demos.decisions == 6 and demos.masks.shape == (3, 2)


@pytest.mark.parametrize("over, words", [
    (["optim.lrr=1"], ["optim.lrr", "did you mean 'lr'"]),
    (["task=regression"], ["task = 'regression'", "'ner' or 'bc'"]),
    (["bc.expert=scripted:nope"], ["bc.expert", "'nope'"]),
    (["bc.policy.init_from=/no/such/ckpt"], ["policy.init_from", "/no/such/ckpt"]),
    (["bc.clone=[speaker]"], ["clone", "speaker", "player"]),
    (["bc.eval_episodes=0"], ["bc.eval_episodes = 0"]),
    (["bc.aux_features=[opp_concession]"], ["bc.aux_features", "'opp_concession'", "others_defect_rate"]),
    (["bc.aux_features=[round_frac]", "bc.policy.head=lm", "bc.policy.encoder.preset=smollm2"],
     ["aux_features", "lm head"]),
    (["task=ner"], ["task ner needs a 'ner:' section"]),
])
def test_bad_config_fails_before_any_work(tmp_path, capsys, over, words):
    cfg = tmp_path / "bc.yaml"
    cfg.write_text("task: bc\nbc:\n  env: {id: dilemma_v0}\n  expert: scripted:tit_for_tat\n"
                   "  opponents: [random]\n")
    args = ["finetune", str(cfg), "--run-dir", str(tmp_path / "run")]
    for o in over:
        args += ["--set", o]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, err
    assert not (tmp_path / "run").exists()


def test_missing_ner_file_is_named_with_its_key(tmp_path, capsys):
    cfg = tmp_path / "ner.yaml"
    cfg.write_text(f"task: ner\nner:\n  data: {{data_dir: {tmp_path}, train: nope.txt, valid: null, "
                   "test: null}\n")
    assert main(["finetune", str(cfg), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "ner.data.train" in err and "nope.txt" in err and err.count("\n") == 1
