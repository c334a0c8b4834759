"""evoarena's PPO against Stable-Baselines3 (sb3-contrib ``MaskablePPO``) on the same worlds, the same tiny
transformer in the same train mode (frozen, as the shipped configs
train it: see ``TINY``), the same number of envs, the same number of decisions and matching hyperparameters.

Run:  .venv/bin/python benchmarks/compare_sb3.py [--seeds 0 1 2] [--updates 10] [--threads 1]

Worlds: ``negotiation_v0`` (one learner against the scripted pool boulware/conceder/fair/greedy, seats
shuffled) and ``dilemma_v0`` (10 rounds, both seats one shared learner policy). For every seed the two
trainers run one after the other (evoarena first, then SB3 with evoarena's decision count), so load on a
shared machine falls on both alike. Printed per world: decisions per second of each (training wall time
without evaluation), ``ratio`` = evoarena / SB3, and the final greedy score of each against the scripted
opponents (every opponent, both seats, ``--eval-episodes`` each on fixed seeds), medians over the seeds;
and where evoarena's time goes (env, tokenise, forward without tokenise, learn). ``--clock cpu`` (the default)
counts decisions per CPU second of the process over each trainer's updates (``perf/cpu_seconds``: rollouts and
training epochs, no set-up or evaluation): with one thread that is the trainer's own work whatever else runs on
a shared machine; ``--clock wall`` counts per wall second of the same loops. Both ratios are printed per seed.
Both trainers use the
same code for the encoder (:class:`~evoarena.policies.encoder.TextEncoder`) and the same evaluation.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from evoarena.agents.learned import PolicyAgent
from evoarena.agents.match import play
from evoarena.config import EncoderConfig, TrainConfig, validate_config
from evoarena.policies import load_policy
from evoarena.policies.hf_models import default_tiny_tokenizer
from evoarena.training.protocol import StageContext
from evoarena.training.rl.sb3_backend import run_sb3
from evoarena.training.stages import run_standalone

#: the policy both trainers train: the cheap RL path of the shipped configs (encoder frozen, MLP policy and value
#: heads). evoarena caches the frozen encoder's pooled output per text; SB3's features extractor is the same
#: frozen encoder, run on every batch as SB3 runs a features extractor (no gradients reach it).
TINY = {"kind": "transformer", "head_hidden": 256,
        "encoder": {"preset": "tiny", "autocast": "auto", "device": "cpu", "train_mode": "frozen"}}
NEGOTIATION_POOL = ["scripted:boulware", "scripted:conceder", "scripted:fair", "scripted:greedy"]
DILEMMA_OPPONENTS = ["scripted:tit_for_tat", "scripted:always_defect", "scripted:always_cooperate",
                     "scripted:pavlov"]
WORLDS: dict[str, dict[str, Any]] = {
    "negotiation_v0": {"env": {"id": "negotiation_v0"}, "policies": {"main": {"policy": TINY}},
                       "seats": {"player_0": {"policy": "main"},
                                 "player_1": {"pool": [{"agent": s} for s in NEGOTIATION_POOL]}},
                       "shuffle_seats": True, "episodes_per_update": 256},
    "dilemma_v0": {"env": {"id": "dilemma_v0", "kwargs": {"rounds": 10}}, "policies": {"main": {"policy": TINY}},
                   "seats": {"player_*": {"policy": "main"}}, "episodes_per_update": 64},
}
OPPONENTS = {"negotiation_v0": NEGOTIATION_POOL, "dilemma_v0": DILEMMA_OPPONENTS}
PPO = {"lr": 3e-4, "epochs": 2, "minibatch_size": 256, "clip": 0.2, "value_clip": 0.2, "ent_coef": 0.01,
       "vf_coef": 0.5, "gamma": 0.99, "gae_lambda": 0.95, "max_grad_norm": 1.0, "target_kl": None, "kl_coef": 0.0,
       "log_kl_ref": False}


def config(world: str, seed: int, updates: int, num_envs: int, threads: int, backend: str,
           n_steps: int | None = None) -> TrainConfig:
    data = {**WORLDS[world], "seed": seed, "num_envs": num_envs, "total_updates": updates, "threads": threads,
            "checkpoint_every": 10_000, "transcript_every": 0, "eval": {"every": 0, "episodes": 1},
            "ppo": {**PPO, "backend": backend, "sb3_n_steps": n_steps}}
    return validate_config(data, TrainConfig, source=f"{world}/{backend}")


def scalars(run_dir: Path) -> dict[str, np.ndarray]:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: np.array([e.value for e in acc.Scalars(t)]) for t in acc.Tags()["scalars"] if t.startswith("perf/")}


def score(world: str, checkpoint: Path, episodes: int, seed: int = 5_000_000) -> float:
    """Greedy mean return of the policy against every scripted opponent, in every seat."""
    policy = load_policy(checkpoint / "policies" / "main", device="cpu")
    kwargs = WORLDS[world]["env"].get("kwargs", {})
    rets = []
    for opp in OPPONENTS[world]:
        for seat in (0, 1):
            me = PolicyAgent(policy, greedy=True, seed=seed, name="learner")
            seats = [me, opp] if seat == 0 else [opp, me]
            res = play(world, seats, episodes=episodes, seed=seed, env_kwargs=kwargs, num_envs=min(256, episodes))
            rets.append(float(res.returns[f"player_{seat}"].mean()))
    return float(np.mean(rets))


def run_pair(world: str, seed: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        evo_dir = Path(tmp) / "evoarena"
        res = run_standalone(config(world, seed, args.updates, args.num_envs, args.threads, "evoarena"), evo_dir,
                      progress=False)
        perf = scalars(evo_dir)
        evo_cpu = perf["perf/cpu_seconds"].sum()
        env_s, fwd_s = perf["perf/env_seconds"].sum(), perf["perf/forward_seconds"].sum()
        tok_s, learn_s = perf["perf/tokenize_seconds"].sum(), perf["perf/learn_seconds"].sum()
        total = env_s + fwd_s + learn_s
        decisions = int(res["decisions"])
        score_evo = score(world, Path(res["checkpoint"]).parent / "checkpoint", args.eval_episodes)
        out["evoarena"] = {"wall dec/s": decisions / total, "cpu dec/s": decisions / evo_cpu, "score": score_evo,
                           "env %": 100 * env_s / total, "tokenise %": 100 * tok_s / total,
                           "forward %": 100 * (fwd_s - tok_s) / total, "learn %": 100 * learn_s / total,
                           "decisions": decisions}
        slots = 1 if world == "negotiation_v0" else 2
        copies = min(args.num_envs, WORLDS[world]["episodes_per_update"])
        n_steps = max(1, round(decisions / args.updates / (copies * slots)))
        sb3_dir = Path(tmp) / "sb3"
        sb3_cfg = config(world, seed, args.updates, args.num_envs, args.threads, "sb3", n_steps)
        res = run_sb3(sb3_cfg, StageContext.standalone(sb3_dir, "train", progress=False), total_timesteps=decisions)
        perf = scalars(sb3_dir)
        sb3_cpu = perf["perf/cpu_seconds"].sum()
        total = perf["perf/rollout_seconds"].sum() + perf["perf/learn_seconds"].sum()
        out["sb3"] = {"wall dec/s": res["decisions"] / total, "cpu dec/s": res["decisions"] / sb3_cpu,
                      "decisions": int(res["decisions"]),
                      "score": score(world, Path(res["checkpoint"]), args.eval_episodes)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--updates", type=int, default=10, help="evoarena updates (SB3 gets the same decisions)")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-episodes", type=int, default=200, help="per opponent and seat")
    parser.add_argument("--worlds", nargs="*", default=list(WORLDS))
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                        help="decisions per CPU second of the trainer's process (robust to other jobs on a "
                             "shared machine) or per wall second of its training loop")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    default_tiny_tokenizer(EncoderConfig().vocab_size)  # trained once per process: not part of either trainer's time
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.num_envs} envs, decisions per {args.clock} "
          "second; this machine may be shared "
          "with other jobs, so the two trainers run alternately (evoarena, SB3, evoarena, ...) per seed")
    for world in args.worlds:
        rows = []
        for seed in args.seeds:
            r = run_pair(world, seed, args)
            for who in r.values():
                who["dec/s"] = who[f"{args.clock} dec/s"]
            rows.append(r)
            e, s = r["evoarena"], r["sb3"]
            other = "wall" if args.clock == "cpu" else "cpu"
            print(f"  {world} seed {seed}: evoarena {e['dec/s']:.0f} dec/s score {e['score']:.3f} | "
                  f"SB3 {s['dec/s']:.0f} dec/s score {s['score']:.3f} | decisions {e['decisions']} vs "
                  f"{s['decisions']} | ratio {e['dec/s'] / s['dec/s']:.2f} per {args.clock} second "
                  f"({e[f'{other} dec/s'] / s[f'{other} dec/s']:.2f} per {other} second)")

        def med(who: str, key: str, rows: list[dict[str, dict[str, float]]] = rows) -> float:
            return float(np.median([r[who][key] for r in rows]))

        ratio = float(np.median([r["evoarena"]["dec/s"] / r["sb3"]["dec/s"] for r in rows]))
        print(f"{world}: evoarena {med('evoarena', 'dec/s'):.0f} dec/s, SB3 {med('sb3', 'dec/s'):.0f} dec/s, "
              f"ratio {ratio:.2f}; final score evoarena {med('evoarena', 'score'):.3f}, "
              f"SB3 {med('sb3', 'score'):.3f} (medians over seeds {args.seeds})")
        print(f"  evoarena time: env {med('evoarena', 'env %'):.1f}%, tokenise {med('evoarena', 'tokenise %'):.1f}%, "
              f"forward {med('evoarena', 'forward %'):.1f}%, learn {med('evoarena', 'learn %'):.1f}%")


if __name__ == "__main__":
    main()
