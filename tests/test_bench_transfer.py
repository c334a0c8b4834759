"""The transfer study's bench configs (configs/bench/transfer.yaml, configs/bench/transfer_dilemma.yaml) stay
valid: the signalling study run end to end at the smallest scale (one seed, a tiny encoder instead of MiniLM, NER
on a hand-made CoNLL file, one PPO update), the dilemma study's runs resolved; and the sweep features they use
(setup runs named as ``{setup.NAME}``, paired differences) with their config errors."""

import json
from pathlib import Path

import pytest

from evoarena.bench import sweep as sw
from evoarena.config import ConfigError

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
visited VBD B-VP O
London NNP B-NP B-LOC
. . O O

"""

TINY = "{preset: tiny, hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64, vocab_size: 400}"
ENCODER = "{preset: tiny, hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64, vocab_size: 400, " \
          "pooling: mean, train_mode: frozen, max_length: 64}"


def conll_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "conll"
    folder.mkdir()
    for name in ("train", "valid", "test"):
        (folder / f"{name}.txt").write_text(CONLL)
    return folder


def shrunk_transfer(tmp_path: Path) -> sw.SweepConfig:
    data = conll_dir(tmp_path)
    setup = [f"ner.data.data_dir={data}", f"ner.encoder={TINY}", "optim.epochs=1", "optim.batch_size=2", "seed=0"]
    train = ["stages.train.total_updates=1", "stages.train.num_envs=8", "stages.train.episodes_per_update=8",
             "stages.train.ppo.minibatch_size=8", "stages.train.eval.every=1", "stages.train.eval.episodes=8",
             "stages.train.checkpoint_every=1", "stages.train.transcript_every=0",
             f"stages.train.policies.speaker.policy.encoder={ENCODER}",
             f"stages.train.policies.listener.policy.encoder={ENCODER}"]
    return sw.load_sweep("configs/bench/transfer.yaml",
                         ["seeds=[0, 1]", "bootstrap=100", f"setup.ner.set={json.dumps(setup)}",
                          f"set={json.dumps(train)}"])


def test_transfer_bench_shrunk(tmp_path):
    """Setup run once, four arms x two seeds on the tiny encoder, the paired differences in bench.md."""
    cfg = shrunk_transfer(tmp_path)
    lines: list[str] = []
    result = sw.run_sweep(cfg, tmp_path / "out", echo=lines.append)
    assert "1 setup run(s), 0 finished already, 1 to run first" in lines[0]
    ckpt = tmp_path / "out" / "_setup" / "ner" / "stages" / "01_finetune" / "checkpoint"
    assert ckpt.is_dir()
    ner_run = next(s for s in sw.plan(cfg, tmp_path / "out") if s["variant"] == "speaker_ner")
    assert f"stages.train.policies.speaker.policy.init_from={ckpt.resolve()}" in ner_run["overrides"]
    bench = result["bench"]
    assert set(bench["scores"]) == {"none", "ner", "speaker_ner", "listener_ner"}
    assert set(bench["paired"]) == {"ner - none", "speaker_ner - none", "listener_ner - none", "ner - speaker_ner"}
    d = bench["paired"]["ner - none"]["accuracy"]
    assert len(d["per_seed"]) == 2 and d["t_low"] <= d["value"] <= d["t_high"]
    md = (tmp_path / "out" / "bench.md").read_text()
    assert "## Paired differences" in md and "| ner - none | accuracy |" in md and "Setup run `ner`" in md
    # a second run skips the setup and every arm
    lines.clear()
    sw.run_sweep(cfg, tmp_path / "out", echo=lines.append)
    assert "1 finished already, 0 to run first" in lines[0] and "8 finished already, 0 to run" in lines[1]


def test_transfer_dilemma_config_is_valid(tmp_path):
    """configs/bench/transfer_dilemma.yaml: its 6 runs resolve against configs/transfer_dilemma.yaml."""
    data = conll_dir(tmp_path)
    cfg = sw.load_sweep("configs/bench/transfer_dilemma.yaml", [f"set=[stages.ner.ner.data.data_dir={data}]"])
    specs = sw.plan(cfg, tmp_path / "out")
    assert [s["variant"] for s in specs] == ["ner"] * 3 + ["none"] * 3
    sw.check_plan(cfg, specs)


def test_setup_and_paired_errors_name_the_key():
    base = ["setup={}", "paired=[]"]
    with pytest.raises(ConfigError, match=r"variants.ner.set: .*names setup run 'ner'; setup runs: \(none\)"):
        sw.load_sweep("configs/bench/transfer.yaml", base)
    with pytest.raises(ConfigError, match=r"variants.ner.set: .*names setup run 'ner'; setup runs: nerr"):
        sw.load_sweep("configs/bench/transfer.yaml",
                      ["setup={nerr: {command: finetune, config: configs/ner_conll2003_tiny.yaml}}"])
    with pytest.raises(ConfigError, match=r"paired\[0\] = \[ner, nope\]: name two different variants"):
        sw.load_sweep("configs/bench/transfer.yaml", ["paired=[[ner, nope]]"])
    with pytest.raises(ConfigError, match="setup.ner.command"):
        sw.load_sweep("configs/bench/transfer.yaml", ["setup.ner.command=evaluate"])
