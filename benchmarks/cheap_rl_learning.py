"""Learning per second of wall time: PPO with full fine-tuning against the cheap RL path (encoder frozen, pooled
outputs cached per text, MLP policy and value heads), both from the same behaviour clone, same seeds.

Run:  .venv/bin/python benchmarks/cheap_rl_learning.py --pipeline configs/quickstart.yaml \\
          --clone runs/quickstart/stages/02_finetune/checkpoint [--seeds 0 1] [--updates full=30 cheap=90] \\
          [--eval-every 5] [--eval-episodes 50] [--out docs/results/cheap_rl/quickstart]

The PPO settings are the ``train`` stage of ``--pipeline`` (its world, seats, PPO hyperparameters, seed and
threads); only the encoder's train mode, the number of updates and the evaluation schedule change. The clone is
the pipeline's finetune checkpoint (its heads are the ones both modes train, so train it with the shipped
``head_hidden``). Each mode is evaluated every ``--eval-every`` updates on the same fixed games (greedy, against
the stage's eval opponents, evaluation time not counted); the x axis is training seconds: CPU seconds of the
process over rollouts and updates (``perf/cpu_seconds``; with one thread, robust to other jobs on the machine), or
env + forward + learn wall seconds for runs that do not log it.
Printed: each curve, and at the time full fine-tuning needed for its updates,
the score of each mode (the cheap path's last evaluation within that time). ``--out`` writes ``curves.json`` and
``curves.png``. Modes run alternately (full, cheap, full, ...), so load on a shared machine falls on both alike.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from evoarena.config import TrainConfig, validate_config
from evoarena.training.stages import run_standalone

MODES = {"full": {"train_mode": "full"}, "cheap": {"train_mode": "frozen"}}


def stage_config(pipeline: dict[str, Any], clone: str, mode: str, seed: int, updates: int, eval_every: int,
                 eval_episodes: int) -> TrainConfig:
    """The pipeline's ``train`` stage as a standalone PPO config starting from ``clone`` in ``mode``."""
    data = copy.deepcopy(next(s for s in pipeline["stages"] if s["kind"] == "train"))
    data.pop("kind")
    data.pop("init_from", None)
    data["name"] = f"{mode}_{seed}"
    data.update(seed=seed, threads=pipeline.get("threads", 1), total_updates=updates, checkpoint_every=10_000,
                transcript_every=0)
    data.setdefault("env", pipeline["env"])
    data["eval"] = {**data.get("eval", {}), "every": eval_every, "episodes": eval_episodes}
    for learner in data["policies"].values():
        policy = learner["policy"]
        policy["init_from"] = clone
        policy["encoder"] = {**policy.get("encoder", {}), **MODES[mode]}
    return validate_config(data, TrainConfig, source=f"{mode} seed {seed}")


def curve(cfg: TrainConfig) -> dict[str, Any]:
    """Run PPO; (update, training seconds, eval score) at update 0 and every evaluation, and decisions/s."""
    with tempfile.TemporaryDirectory() as tmp:
        res = run_standalone(cfg, Path(tmp), progress=False)
        acc = EventAccumulator(str(Path(tmp) / "tb"), size_guidance={"scalars": 0})
        acc.Reload()
        tags = acc.Tags()["scalars"]

        def clock(parts: tuple[str, ...]) -> np.ndarray:
            per_update = sum(np.array([e.value for e in acc.Scalars(f"perf/{k}_seconds")]) for k in parts)
            return np.concatenate([[0.0], np.cumsum(per_update)])

        wall = clock(("env", "forward", "learn"))
        seconds = clock(("cpu",)) if "perf/cpu_seconds" in tags else wall

    def points(sec: np.ndarray) -> list[tuple[int, float, float | None]]:
        return [(0, 0.0, None)] + [(int(e["update"]), float(sec[int(e["update"])]), float(e["score"]))
                                   for e in res["evals"]]

    return {"points": points(seconds), "points_wall": points(wall),
            "decisions_per_s": res["decisions"] / float(seconds[-1]), "train_seconds": float(seconds[-1])}


def score_at(points: list[tuple[int, float, float | None]], t: float) -> float:
    """The score of the last evaluation within ``t`` training seconds."""
    return [s for _, sec, s in points if s is not None and sec <= t + 1e-9][-1]


def plot(results: dict[str, dict[int, dict[str, Any]]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for (mode, runs), color in zip(results.items(), ("tab:blue", "tab:orange")):
        for i, run in enumerate(runs.values()):
            pts = [(sec, s) for _, sec, s in run["points"] if s is not None]
            ax.plot(*zip(*pts), marker="o", ms=3, color=color, alpha=0.9 if i == 0 else 0.5,
                    label=f"{mode} ({run['decisions_per_s']:.0f} dec/s)" if i == 0 else None)
    ax.set_xlabel("training seconds (rollouts + updates, 1 thread)")
    ax.set_ylabel("greedy eval score")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", required=True, help="a pipeline config with a train stage")
    parser.add_argument("--clone", required=True, help="the behaviour-cloned checkpoint both modes start from")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--updates", nargs="*", default=["full=30", "cheap=90"], help="MODE=UPDATES")
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--out", default=None, help="folder for curves.json and curves.png")
    args = parser.parse_args()
    pipeline = yaml.safe_load(Path(args.pipeline).read_text())
    updates = {k: int(v) for k, v in (u.split("=") for u in args.updates)}
    torch.set_num_threads(int(pipeline.get("threads", 1)))
    results: dict[str, dict[int, dict[str, Any]]] = {m: {} for m in updates}
    for seed in args.seeds:
        for mode, n in updates.items():
            cfg = stage_config(pipeline, args.clone, mode, seed, n, args.eval_every, args.eval_episodes)
            run = results[mode][seed] = curve(cfg)
            print(f"{mode} seed {seed}: {run['decisions_per_s']:.0f} dec/s; (update, train s, score): "
                  + ", ".join(f"({u}, {sec:.0f}, {'-' if s is None else f'{s:.2f}'})" for u, sec, s in run["points"]),
                  flush=True)
    for seed in args.seeds if {"full", "cheap"} <= set(results) else []:
        t = results["full"][seed]["train_seconds"]
        got = {m: score_at(results[m][seed]["points"], t) for m in results}
        print(f"seed {seed}: at {t:.0f} training seconds (full fine-tuning's {updates['full']} updates): "
              + ", ".join(f"{m} {s:.3f}" for m, s in got.items())
              + f"; cheap at its end ({results['cheap'][seed]['train_seconds']:.0f} s): "
              + f"{score_at(results['cheap'][seed]['points'], float('inf')):.3f}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "curves.json").write_text(json.dumps({"pipeline": args.pipeline, "clone": args.clone,
                                                     "updates": updates, "results": results}, indent=1))
        plot(results, f"{Path(args.pipeline).stem}: PPO from the clone, full vs cheap", out / "curves.png")
        print(f"wrote {out / 'curves.json'} and {out / 'curves.png'}")


if __name__ == "__main__":
    main()
