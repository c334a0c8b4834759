"""Transfer from NER into signalling: the learning curves of two pipeline runs side by side.

Run:     evoarena run configs/transfer_ner_signaling.yaml --run-dir runs/transfer_ner
         evoarena run configs/transfer_none_signaling.yaml --run-dir runs/transfer_none
         python benchmarks/transfer_report.py runs/transfer_ner runs/transfer_none --out docs/results
Writes:  OUT/transfer.md (the figures: greedy listener accuracy at every evaluation, final and best, wall time
         per stage, NER F1 of the transfer run) and OUT/transfer.png (both curves on the PPO update axis).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evoarena.bench.scalars import read_scalars


def curve(run_dir: Path) -> tuple[list[int], list[float], int]:
    """(PPO updates, greedy eval score, step offset of the PPO stage) of a run folder."""
    state = json.loads((run_dir / "pipeline.json").read_text())["stages"]
    train = next(v for v in state.values() if v["kind"] == "train")
    pts = read_scalars(run_dir / "tb").get("eval/score", [])
    off = int(train["step_offset"])
    return [s - off for s, _ in pts if s >= off], [v for s, v in pts if s >= off], off


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("with_ner")
    parser.add_argument("without_ner")
    parser.add_argument("--out", default="docs/results")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {"MiniLM + NER fine-tuning": Path(args.with_ner), "MiniLM (no NER stage)": Path(args.without_ner)}
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    lines = ["# Transfer: NER fine-tuning -> signalling agents", "",
             "Both runs: `signaling_v0` (vocab `words`, 2-token messages, 4 candidates, chance 0.25), speaker and "
             "listener policies on all-MiniLM-L6-v2 with a frozen encoder (heads trained by PPO), identical PPO "
             "settings and seeds; the only difference is the NER stage before PPO. Score: greedy listener "
             "accuracy over the training evaluation's games.", "",
             "| run | " + "accuracy by PPO update | final | best | stage wall times |", "|---|---|---|---|---|"]
    for label, run_dir in runs.items():
        xs, ys, _ = curve(run_dir)
        ax.plot(xs, ys, marker="o", label=label)
        state = json.loads((run_dir / "pipeline.json").read_text())["stages"]
        walls = ", ".join(f"{v['name']} {v.get('wall_s', 0):.0f} s" for v in state.values())
        pts = ", ".join(f"{x}: {y:.3f}" for x, y in zip(xs, ys))
        lines.append(f"| {label} (`{run_dir}`) | {pts} | {ys[-1]:.3f} | {max(ys):.3f} | {walls} |")
    results = json.loads((runs["MiniLM + NER fine-tuning"] / "results.json").read_text())
    ner = next((v for v in results.values() if isinstance(v, dict) and v.get("task") == "ner"), None)
    if ner:
        test = ner.get("test", {})
        lines += ["", f"NER stage of the transfer run: test entity F1 {test.get('entity_f1', float('nan')):.3f}, "
                      f"token accuracy {test.get('token_accuracy', float('nan')):.3f} "
                      f"({ner.get('summary', '')[:300]})."]
    ax.axhline(0.25, color="grey", ls=":", lw=1, label="chance")
    ax.set_xlabel("PPO update")
    ax.set_ylabel("greedy listener accuracy")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "transfer.png", dpi=90)
    lines += ["", "![both learning curves](transfer.png)", ""]
    (out / "transfer.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
