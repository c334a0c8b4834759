"""Agent-steps per second of every evoarena world with random legal actions, text rendering
included, next to PettingZoo's own ``rps_v2`` and ``tictactoe_v3`` measured in the same run.

Run:  .venv/bin/python benchmarks/env_throughput.py [--seconds 3]

It installs PettingZoo's classic-games dependency (pygame-ce) into the current environment if
it is missing (only this benchmark needs it). Counts:
- agent-steps: one per live agent per parallel step (one per ``step`` call in AEC form);
- decisions: agent-steps where the agent had more than one legal action (turn-based worlds
  give waiting agents a single legal ``wait``).
Expect on a 2-core laptop CPU: every evoarena world >= tictactoe_v3 in agent-steps/s (the target).
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import time

import numpy as np


def _ensure_pygame() -> None:
    try:
        importlib.import_module("pygame")
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "pygame-ce>=2.3"])


def bench_parallel(env, seconds: float, rng: np.random.Generator) -> tuple[float, float]:
    """(agent-steps/s, decisions/s) of a ParallelEnv with random legal actions."""
    steps = decisions = 0
    seed = 0
    obs, _ = env.reset(seed=seed)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(200):
            if not env.agents:
                seed += 1
                obs, _ = env.reset(seed=seed)
            actions = {}
            for a in env.agents:
                o = obs[a]
                if isinstance(o, dict) and "action_mask" in o:
                    legal = np.flatnonzero(o["action_mask"])
                    decisions += len(legal) > 1
                    actions[a] = int(legal[rng.integers(len(legal))])
                else:
                    decisions += 1
                    actions[a] = int(env.action_space(a).sample())
            steps += len(actions)
            obs, *_ = env.step(actions)
    dt = time.perf_counter() - t0
    return steps / dt, decisions / dt


def bench_aec(env, seconds: float, rng: np.random.Generator) -> tuple[float, float]:
    """(agent-steps/s, decisions/s) of an AEC env with random legal actions."""
    steps = decisions = 0
    seed = 0
    env.reset(seed=seed)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(200):
            if not env.agents:
                seed += 1
                env.reset(seed=seed)
            obs, _, term, trunc, _ = env.last()
            if term or trunc:
                action = None
            else:
                legal = np.flatnonzero(obs["action_mask"])
                decisions += len(legal) > 1
                action = int(legal[rng.integers(len(legal))])
            env.step(action)
            steps += 1
    dt = time.perf_counter() - t0
    return steps / dt, decisions / dt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per world")
    args = parser.parse_args()
    _ensure_pygame()
    from pettingzoo.classic import rps_v2, tictactoe_v3

    from evoarena.envs import list_envs, make

    rng = np.random.default_rng(0)
    rows = [("rps_v2 (pettingzoo)", *bench_parallel(rps_v2.parallel_env(), args.seconds, rng)),
            ("tictactoe_v3 (pettingzoo)", *bench_aec(tictactoe_v3.env(), args.seconds, rng))]
    for env_id in list_envs():
        rows.append((env_id, *bench_parallel(make(env_id), args.seconds, rng)))
    ttt = rows[1][1]
    print(f"{'world':28s} {'agent-steps/s':>14s} {'decisions/s':>12s} {'vs tictactoe':>13s}")
    for name, sps, dps in rows:
        print(f"{name:28s} {sps:14,.0f} {dps:12,.0f} {sps / ttt:12.2f}x")
    slow = [n for n, s, _ in rows[2:] if s < ttt]
    print("target (each world >= tictactoe_v3 agent-steps/s):", "MET" if not slow else f"NOT MET for {slow}")


if __name__ == "__main__":
    main()
