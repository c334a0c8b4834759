"""CoNLL-2003 NER with all-MiniLM-L6-v2 on one CPU thread: entity F1 and token accuracy side by side.

Run:  .venv/bin/python benchmarks/ner_conll2003.py [--epochs 3] [--lr 1e-4] [--autocast off|bf16]
          [--data-dir ../shared/data/conll2003] [--run-dir runs/bench_ner_minilm] [--set KEY=VALUE ...]

It runs the ``finetune`` stage of ``configs/ner_conll2003_minilm.yaml`` (full training set, valid and
test files) with ``torch.set_num_threads(1)`` and prints, for valid and test, seqeval's entity-level
micro precision/recall/F1 (default mode = conlleval rules) next to token accuracy (which counts ``O``
tokens and is ~0.83 for an all-``O`` guess, so it is NOT an NER score), with epochs and wall time.

Measured (2-core AMD EPYC with AVX2 only, shared with other jobs; fp32, batch 32, lr 1e-4, 3 epochs, one
thread): test entity F1 0.8655 (P 0.858, R 0.873), token accuracy 0.9728 (all-O guess: 0.825); valid F1
0.878 / 0.901 / 0.906 after epochs 1 / 2 / 3; 42 min of training, 43 min in all. ``--autocast bf16`` is
1.3-1.8x faster on CPUs with AVX512-BF16 or AMX but ~10x SLOWER on AVX2-only CPUs such as this one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("EVOARENA_CONLL_DIR", REPO.parent / "shared/data/conll2003"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "configs/ner_conll2003_minilm.yaml"))
    ap.add_argument("--data-dir", default=str(DEFAULT_DATA))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--autocast", choices=["bf16", "off"], default="off")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--run-dir", default=str(REPO / "runs/bench_ner_minilm"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from evoarena.config import FinetuneConfig
    from evoarena.training.infra import runs
    from evoarena.training.infra.checks import load_checked
    from evoarena.training.stages import run_standalone

    overrides = [f"ner.data.data_dir={args.data_dir}", f"optim.epochs={args.epochs}", f"optim.lr={args.lr}",
                 f"optim.batch_size={args.batch_size}", f"ner.encoder.autocast='{args.autocast}'",
                 f"threads={args.threads}", *args.set]
    cfg = load_checked(args.config, FinetuneConfig, overrides)
    run_dir = Path(args.run_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    runs.create_run(run_dir, cfg)
    t0 = time.perf_counter()
    res = run_standalone(cfg, run_dir)
    wall = time.perf_counter() - t0

    print(f"\nCoNLL-2003 NER, {res['encoder']}, {res['epochs']:.0f} epochs x {res['train_sentences']} "
          f"sentences, batch {res['batch_size']}, lr {res['lr']}, autocast {res['autocast']}, "
          f"{res['threads']} thread(s)")
    head = ("split", "entity P", "entity R", "entity F1", "token acc", "all-O acc")
    print(f"{head[0]:<6} {head[1]:>9} {head[2]:>9} {head[3]:>10} {head[4]:>10} {head[5]:>10}")
    for name in ("valid", "test"):
        r = res[name]
        print(f"{name:<6} {r['entity_precision']:>9.4f} {r['entity_recall']:>9.4f} {r['entity_f1']:>10.4f} "
              f"{r['token_accuracy']:>10.4f} {res[name + '_all_o_baseline_token_accuracy']:>10.4f}")
    print("test F1 per type: " + ", ".join(f"{t} {v['f1']:.4f}" for t, v in res["test"]["per_type"].items()))
    epochs = ", ".join(f"{h['epoch']:.0f}: {h['entity_f1']:.4f}" for h in res["history"])
    print(f"valid F1 after each epoch: {epochs}")
    print(f"training {res['train_wall_s'] / 60:.1f} min, whole stage {wall / 60:.1f} min wall; "
          f"results in {run_dir / 'results.json'}")
    summary = {"test_entity_f1": res["test"]["entity_f1"],
               "test_token_accuracy": res["test"]["token_accuracy"],
               "valid_entity_f1": res["valid"]["entity_f1"], "epochs": res["epochs"],
               "train_wall_s": res["train_wall_s"], "wall_s": wall}
    print(json.dumps(summary))
    return 0 if res["test"]["entity_f1"] >= 0.86 else 1


if __name__ == "__main__":
    sys.exit(main())
