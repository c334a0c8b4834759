"""Run the whole chain from Python (pretrain -> clone tit_for_tat -> PPO -> evaluate) and read its results.

Run:     python examples/run_chain.py [--quick] [--run-dir runs/chain_example]
Expect:  the quickstart pipeline (configs/quickstart.yaml) in a run folder, then the pool score of each
         stage's agent and the paired gain of each stage over the previous one. With --quick (a few
         seconds per stage, for a smoke test) the numbers mean little; without it (about 5 minutes on a
         2-core CPU) the behaviour-cloned agent is far above the pre-trained one and PPO above the clone,
         as docs/guide/quickstart.md shows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from evoarena.bench.report import write_report
from evoarena.training.pipeline import run_pipeline

QUICK = ["stages.pretrain.steps=20", "stages.finetune.bc.train_episodes=60", "stages.finetune.optim.epochs=1",
         "stages.train.total_updates=2", "stages.train.episodes_per_update=32", "stages.train.num_envs=32",
         "stages.train.eval.episodes=2", "stages.evaluate.episodes=4"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds per stage (a smoke test)")
    parser.add_argument("--run-dir", default="runs/chain_example")
    parser.add_argument("--resume", action="store_true", help="continue the run folder where it stopped")
    args = parser.parse_args(argv)

    config = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
    results = run_pipeline(config, QUICK if args.quick else [], run_dir=args.run_dir, resume=args.resume)
    report = write_report(args.run_dir)

    ev = results["04_evaluate"]
    for name in ev["stage_rows"]:
        pool = ev["rows"][name]["pool"]
        print(f"{name:>10}: {pool['mean']:.2f} +- {pool['ci95']:.2f} per game against the pool")
    for gain in ev["gains"]:
        p = gain["pool"]
        print(f"{gain['agent']} over {gain['over']}: {p['mean']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}]")
    print(f"report: {report}")
    return results


if __name__ == "__main__":
    main()
