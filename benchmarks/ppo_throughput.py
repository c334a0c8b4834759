"""Decisions per second of multi-agent PPO with the tiny encoder, per world, split into env, forward
(policy inference in rollouts) and learn (PPO epochs) time.

Run:  .venv/bin/python benchmarks/ppo_throughput.py [--updates 3] [--episodes 256] [--threads 2] [--curve]
                 [--autocast auto|bf16|off] [--top-k K]
      .venv/bin/python benchmarks/ppo_throughput.py --worlds --mfu          # MFU only
      .venv/bin/python benchmarks/ppo_throughput.py --compare-modes [--rounds 3]  # full vs cheap RL, negotiation

Each world runs the real ``evoarena train`` path (``run_standalone``) into a temporary run folder and the
figures are read back from its TensorBoard ``perf/`` scalars (the first update, which includes
warm-up, is dropped). The tiny encoder is randomly initialised (its tokenizer is trained on world text);
speed does not depend on the weights. Expect on a 2-core laptop CPU, 1 thread, nothing else running:
hundreds to a few thousand decisions/s; forward and learn dominate, env time is small.

``--compare-modes`` runs negotiation with full fine-tuning and with the cheap RL path the shipped configs use
(:data:`CHEAP`: encoder frozen, pooled outputs cached per text, MLP policy and value heads) alternately,
``--rounds`` times each, in one process, and prints the decisions/s of each (summed over the rounds, warm-up
updates dropped; also per CPU second of the process, ``perf/cpu_seconds``), where their time goes and
``speedup X`` = cheap / full (wall) and the same per CPU second. Alternating makes the ratio robust
to other jobs on a shared machine; the absolute figures are not.

``--curve`` also prints each timed update's mean rollout return (a fixed-seed learning curve, to show that
speed work did not change what is learned). ``--mfu`` measures the learn phase's model FLOP utilisation
(MFU) for ``tiny`` and ``minilm`` at minibatch 256: the FLOPs of one PPO minibatch step (forward +
backward, counted by ``torch.utils.flop_counter`` on negotiation texts) per second, against the matmul
peak of this machine measured in the same run (the best of a few large fp32 matmuls, bf16 too on CUDA).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from evoarena.config import PolicyConfig, PPOConfig, TrainConfig, validate_config
from evoarena.envs import make
from evoarena.policies import build_policy
from evoarena.training.rl.learners import prepare_for_rl
from evoarena.training.rl.rollout import LearnerBatch
from evoarena.training.rl.update import ppo_update
from evoarena.training.stages import run_standalone

TINY = {"encoder": {"preset": "tiny", "autocast": "auto"}}
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


#: the cheap RL path of configs/quickstart.yaml and the negotiation configs: encoder frozen (pooled outputs
#: cached per text, each unseen text encoded once in a batched call), separate MLP policy and value heads
CHEAP = {"head_hidden": 256, "encoder": {"train_mode": "frozen"}}


def with_mode(world: str, mode: str) -> dict:
    """``WORLDS[world]`` with every learner's policy in ``mode`` (``full`` as is, ``cheap``: :data:`CHEAP`)."""
    spec = copy.deepcopy(WORLDS[world])
    if mode == "cheap":
        for learner in spec["policies"].values():
            pol = learner["policy"]
            pol.update(head_hidden=CHEAP["head_hidden"], encoder={**pol["encoder"], **CHEAP["encoder"]})
    return spec


def measure(world: str, updates: int, episodes: int, threads: int, mode: str = "full") -> dict[str, float]:
    data = {**with_mode(world, mode), "num_envs": episodes, "episodes_per_update": episodes,
            "total_updates": updates + 1,
            "threads": threads, "checkpoint_every": 1000, "transcript_every": 0,
            "eval": {"every": 0, "episodes": 1}, "ppo": {"epochs": 2, "minibatch_size": 512, "log_kl_ref": False}}
    cfg = validate_config(data, TrainConfig, source=world)
    with tempfile.TemporaryDirectory() as tmp:
        run_standalone(cfg, Path(tmp), progress=False)
        acc = EventAccumulator(str(Path(tmp) / "tb"))
        acc.Reload()

        def tail(tag: str) -> np.ndarray:
            return np.array([e.value for e in acc.Scalars(tag)][1:])

        env, fwd, learn = tail("perf/env_seconds"), tail("perf/forward_seconds"), tail("perf/learn_seconds")
        cpu = tail("perf/cpu_seconds")
        decisions = np.diff([e.value for e in acc.Scalars("perf/decisions")])
        curve = [round(e.value, 4) for e in acc.Scalars("rollout/main/episode_return")] \
            if "rollout/main/episode_return" in acc.Tags()["scalars"] else []
    total = env.sum() + fwd.sum() + learn.sum()
    return {"decisions/s": decisions.sum() / total, "decisions": decisions.sum(), "seconds": total,
            "cpu s": cpu.sum(),
            "env s": env.sum(), "forward s": fwd.sum(), "learn s": learn.sum(), "env %": 100 * env.sum() / total,
            "forward %": 100 * fwd.sum() / total, "learn %": 100 * learn.sum() / total,
            "decisions/update": decisions.mean(), "curve": curve}


def matmul_peak(device: torch.device, seconds: float = 0.5) -> tuple[float, str]:
    """The best measured matmul FLOP/s on ``device`` (fp32; on CUDA also bf16) and what reached it."""
    best, what = 0.0, ""
    dtypes = [torch.float32] + ([torch.bfloat16] if device.type == "cuda" else [])
    sizes = [(2048, 2048, 2048), (4096, 1024, 4096)] + ([(8192, 8192, 8192)] if device.type == "cuda" else [])
    for dtype in dtypes:
        for m, k, n in sizes:
            a = torch.randn(m, k, device=device, dtype=dtype)
            b = torch.randn(k, n, device=device, dtype=dtype)
            a @ b
            reps, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                a @ b
                reps += 1
                if device.type == "cuda":
                    torch.cuda.synchronize()
            rate = 2 * m * k * n * reps / (time.perf_counter() - t0)
            if rate > best:
                best, what = rate, f"{str(dtype).split('.')[-1]} {m}x{k}x{n}"
    return best, what


def negotiation_obs(n: int, seed: int = 0) -> list[dict]:
    """``n`` decision observations of ``negotiation_v0`` (random legal play, both seats)."""
    env = make("negotiation_v0")
    rng = np.random.default_rng(seed)
    out: list[dict] = []
    ep = 0
    while len(out) < n:
        obs, _ = env.reset(seed=seed + ep)
        ep += 1
        while env.agents:
            acts = {}
            for a in env.agents:
                legal = np.flatnonzero(obs[a]["action_mask"])
                if len(legal) > 1:
                    out.append(obs[a])
                acts[a] = int(rng.choice(legal))
            obs, *_ = env.step(acts)
    return out[:n]


def learn_mfu(preset: str, batch: int, steps: int, peak: float, device: str) -> dict[str, float]:
    """MFU of PPO minibatch steps (batch ``batch``) with encoder ``preset``: counted FLOPs / time / ``peak``."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = PolicyConfig.model_validate({"encoder": {"preset": preset, "autocast": "off", "device": device}})
    policy = prepare_for_rl(build_policy(cfg, "negotiation_v0"))
    obs = negotiation_obs(batch * (steps + 1))
    pc = PPOConfig(epochs=1, minibatch_size=batch, normalize_advantage=True)
    opt = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=1e-5)
    rng = np.random.default_rng(0)

    def batch_of(chunk: list[dict]) -> LearnerBatch:
        lb = LearnerBatch()
        with torch.no_grad():
            out = policy.act(chunk, generator=torch.Generator().manual_seed(0))
        for o, a, lp, v in zip(chunk, out.actions, out.logp, out.values):
            lb.add(o, int(a), float(lp), float(v))
        lb.rewards = list(rng.normal(size=len(chunk)))
        lb.streams = [([i], 0.0) for i in range(len(chunk))]
        lb.finish(0.99, 0.95)
        return lb

    batches = [batch_of(obs[i * batch:(i + 1) * batch]) for i in range(steps + 1)]
    with FlopCounterMode(display=False) as counter:
        ppo_update(policy, opt, batches[0], pc, None, rng)  # also the warm-up
    flops_first = counter.get_total_flops()
    tokens = sum(len(x) for x in policy.encoder.token_ids([o["text"] for o in batches[0].obs]))
    sync = torch.cuda.synchronize if policy.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for lb in batches[1:]:
        ppo_update(policy, opt, lb, pc, None, rng)
    sync()
    dt = (time.perf_counter() - t0) / steps
    rate = flops_first / dt  # the texts of every batch have about the same lengths
    return {"GFLOP/step": flops_first / 1e9, "step ms": 1e3 * dt, "TFLOP/s": rate / 1e12,
            "MFU %": 100 * rate / peak, "tokens/step": tokens}


def compare_modes(rounds: int, updates: int, episodes: int, threads: int) -> float:
    """Full fine-tuning and :data:`CHEAP` on negotiation, alternated ``rounds`` times; prints and returns the
    speedup (cheap decisions/s over full decisions/s, each summed over its rounds)."""
    tot: dict[str, dict[str, float]] = {m: {"decisions": 0.0, "seconds": 0.0, "cpu s": 0.0, "env s": 0.0,
                                            "forward s": 0.0, "learn s": 0.0} for m in ("full", "cheap")}
    for r in range(rounds):
        for mode in ("full", "cheap"):
            res = measure("negotiation_v0", updates, episodes, threads, mode)
            for k in tot[mode]:
                tot[mode][k] += float(res[k])
            print(f"  round {r + 1} {mode:5s}: {res['decisions/s']:7.0f} dec/s")
    print(f"{'mode':6s} {'decisions/s':>12s} {'per CPU s':>10s} {'env %':>7s} {'forward %':>10s} {'learn %':>8s}")
    rate, cpu_rate = {}, {}
    for mode, t in tot.items():
        rate[mode], cpu_rate[mode] = t["decisions"] / t["seconds"], t["decisions"] / t["cpu s"]
        print(f"{mode:6s} {rate[mode]:12.0f} {cpu_rate[mode]:10.0f} {100 * t['env s'] / t['seconds']:7.1f} "
              f"{100 * t['forward s'] / t['seconds']:10.1f} {100 * t['learn s'] / t['seconds']:8.1f}")
    speedup = rate["cheap"] / rate["full"]
    print(f"speedup {speedup:.2f}")
    print(f"speedup per CPU second {cpu_rate['cheap'] / cpu_rate['full']:.2f}")
    return speedup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=3, help="timed updates per world (after one warm-up)")
    parser.add_argument("--episodes", type=int, default=256, help="episodes per update")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worlds", nargs="*", default=list(WORLDS))
    parser.add_argument("--autocast", choices=["auto", "bf16", "off"], default="auto",
                        help="encoder.autocast (auto: bf16 where a start-up probe measures it faster)")
    parser.add_argument("--top-k", type=int, default=0,
                        help="train only the top K encoder layers (train_mode top_k: cached frozen lower layers)")
    parser.add_argument("--compare-modes", action="store_true",
                        help="negotiation: full fine-tuning vs the cheap RL path, alternated; prints speedup X")
    parser.add_argument("--rounds", type=int, default=3, help="--compare-modes: alternations of the two modes")
    parser.add_argument("--curve", action="store_true", help="print each update's mean rollout return")
    parser.add_argument("--mfu", action="store_true", help="learn-phase MFU for tiny and minilm at batch 256")
    parser.add_argument("--mfu-presets", nargs="*", default=["tiny", "minilm"])
    parser.add_argument("--mfu-steps", type=int, default=3, help="timed minibatch steps per preset")
    parser.add_argument("--device", default="cpu", help="device of the MFU measurement (cpu, cuda)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); this machine may be shared with other jobs: "
          "wall times are upper bounds")
    for spec in WORLDS.values():
        for learner in spec["policies"].values():
            enc = learner["policy"]["encoder"] = dict(learner["policy"]["encoder"], autocast=args.autocast)
            if args.top_k:
                enc.update(train_mode="top_k", top_k=args.top_k)
    if args.compare_modes:
        compare_modes(args.rounds, args.updates, args.episodes, args.threads)
        return
    if args.worlds:
        print(f"{'world':16s} {'decisions/s':>12s} {'env %':>7s} {'forward %':>10s} {'learn %':>8s} "
              f"{'dec/update':>11s}")
    for world in args.worlds:
        r = measure(world, args.updates, args.episodes, args.threads)
        print(f"{world:16s} {r['decisions/s']:12.0f} {r['env %']:7.1f} {r['forward %']:10.1f} {r['learn %']:8.1f} "
              f"{r['decisions/update']:11.0f}")
        if args.curve:
            print(f"  rollout return per update: {r['curve']}")
    if args.mfu:
        device = torch.device(args.device)
        peak, what = matmul_peak(device)
        print(f"matmul peak measured now: {peak / 1e12:.3f} TFLOP/s ({what})")
        print(f"{'encoder':8s} {'batch':>5s} {'tokens':>7s} {'GFLOP/step':>11s} {'step ms':>8s} {'TFLOP/s':>8s} "
              f"{'MFU %':>6s}")
        for preset in args.mfu_presets:
            r = learn_mfu(preset, 256, args.mfu_steps, peak, args.device)
            print(f"{preset:8s} {256:5d} {r['tokens/step']:7d} {r['GFLOP/step']:11.2f} {r['step ms']:8.0f} "
                  f"{r['TFLOP/s']:8.3f} {r['MFU %']:6.1f}")


if __name__ == "__main__":
    main()
