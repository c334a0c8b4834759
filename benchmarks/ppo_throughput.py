"""Decisions per second of multi-agent PPO with the tiny encoder, per world, split into env, forward
(policy inference in rollouts) and learn (PPO epochs) time.

Run:  .venv/bin/python benchmarks/ppo_throughput.py [--updates 3] [--episodes 256] [--threads 2]

Each world runs the real ``evoarena train`` path (``run_ppo``) into a temporary run folder and the
figures are read back from its TensorBoard ``perf/`` scalars (the first update, which includes
warm-up, is dropped). The tiny encoder is randomly initialised (its tokenizer is trained on world text);
speed does not depend on the weights. Expect on a 2-core laptop CPU, 1 thread, nothing else running:
hundreds to a few thousand decisions/s; forward and learn dominate, env time is small.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from evoarena.config import TrainConfig, validate_config
from evoarena.training.ppo import run_ppo

TINY = {"encoder": {"preset": "tiny", "autocast": "off"}}
WORLDS = {
    "dilemma_v0": {"env": {"id": "dilemma_v0"}, "policies": {"main": {"policy": TINY}},
                   "seats": {"player_0": {"policy": "main"}, "player_1": {"agent": "scripted:tit_for_tat"}}},
    "negotiation_v0": {"env": {"id": "negotiation_v0"}, "policies": {"main": {"policy": TINY}},
                       "seats": {"player_0": {"policy": "main"}, "player_1": {"agent": "scripted:conceder"}}},
    "signaling_v0": {"env": {"id": "signaling_v0", "kwargs": {"vocab": "symbols"}},
                     "policies": {"speaker": {"policy": {**TINY, "standardize": True}},
                                  "listener": {"policy": {**TINY, "head": "scoring", "standardize": True}}},
                     "seats": {"speaker": {"policy": "speaker"}, "listener_*": {"policy": "listener"}}},
}


def measure(world: str, updates: int, episodes: int, threads: int) -> dict[str, float]:
    data = {**WORLDS[world], "num_envs": episodes, "episodes_per_update": episodes, "total_updates": updates + 1,
            "threads": threads, "checkpoint_every": 1000, "transcript_every": 0,
            "eval": {"every": 0, "episodes": 1}, "ppo": {"epochs": 2, "minibatch_size": 512, "log_kl_ref": False}}
    cfg = validate_config(data, TrainConfig, source=world)
    with tempfile.TemporaryDirectory() as tmp:
        run_ppo(cfg, Path(tmp), progress=False)
        acc = EventAccumulator(str(Path(tmp) / "tb"))
        acc.Reload()

        def tail(tag: str) -> np.ndarray:
            return np.array([e.value for e in acc.Scalars(tag)][1:])

        env, fwd, learn = tail("perf/env_seconds"), tail("perf/forward_seconds"), tail("perf/learn_seconds")
        decisions = np.diff([e.value for e in acc.Scalars("perf/decisions")])
    total = env.sum() + fwd.sum() + learn.sum()
    return {"decisions/s": decisions.sum() / total, "env %": 100 * env.sum() / total,
            "forward %": 100 * fwd.sum() / total, "learn %": 100 * learn.sum() / total,
            "decisions/update": decisions.mean()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=3, help="timed updates per world (after one warm-up)")
    parser.add_argument("--episodes", type=int, default=256, help="episodes per update")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worlds", nargs="*", default=list(WORLDS))
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on the CPU (encoder.autocast: bf16)")
    args = parser.parse_args()
    if args.bf16:
        for spec in WORLDS.values():
            for learner in spec["policies"].values():
                learner["policy"]["encoder"]["autocast"] = "bf16"
    print(f"{'world':16s} {'decisions/s':>12s} {'env %':>7s} {'forward %':>10s} {'learn %':>8s} {'dec/update':>11s}")
    for world in args.worlds:
        r = measure(world, args.updates, args.episodes, args.threads)
        print(f"{world:16s} {r['decisions/s']:12.0f} {r['env %']:7.1f} {r['forward %']:10.1f} {r['learn %']:8.1f} "
              f"{r['decisions/update']:11.0f}")


if __name__ == "__main__":
    main()
