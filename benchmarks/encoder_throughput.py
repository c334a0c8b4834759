"""Encoder throughput with and without per-batch dedupe of repeated texts, measured side by side.

Run:  .venv/bin/python benchmarks/encoder_throughput.py [--threads 1]

Prints texts/s of the tiny encoder (hidden 128, 2 layers) on 256 observation texts from random play
in every world (forward, and forward+backward), with dedupe (each distinct text encoded once) and
without, and their ratio; MiniLM forward on 64 texts; and one ``act`` of a scoring-head policy on 64
negotiation observations x 127 action texts. Expect the dedupe ratio to track how often texts repeat
(about 1.1-1.2x for 256 random-play texts, far more for the scoring head's action texts).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from evoarena.config import EncoderConfig, PolicyConfig
from evoarena.envs import list_envs, make
from evoarena.policies.actor_critic import build_policy
from evoarena.policies.corpus import world_corpus
from evoarena.policies.encoder import build_encoder
from evoarena.policies.wordpiece import train_wordpiece


def world_texts(n: int, seed: int = 0) -> list[str]:
    """Observation texts of random legal play, cycling through the worlds."""
    rng = np.random.default_rng(seed)
    out: list[str] = []
    while len(out) < n:
        for env_id in list_envs():
            env = make(env_id)
            obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
            while env.agents and len(out) < n:
                out += [obs[a]["text"] for a in env.agents]
                obs, *_ = env.step({a: int(rng.choice(np.flatnonzero(obs[a]["action_mask"]))) for a in env.agents})
    return out[:n]


def texts_per_second(enc, texts: list[str], dedupe: bool, reps: int, grad: bool = False) -> float:
    """Best-of-``reps`` texts/s (tokenization caches cleared every repetition)."""

    def run() -> None:
        enc.clear_cache()
        if grad:
            enc.encode(texts, dedupe=dedupe).sum().backward()
        else:
            with torch.no_grad():
                enc.encode(texts, dedupe=dedupe)

    run()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
    return len(texts) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts = world_texts(256)
    tok = train_wordpiece(world_corpus(), 2000)
    torch.manual_seed(0)
    enc = build_encoder(EncoderConfig(device="cpu"), tokenizer=tok)
    print(f"tiny encoder, 256 texts ({len(set(texts))} distinct), {args.threads} thread(s)")
    for grad in (False, True):
        on = texts_per_second(enc, texts, True, 3, grad)
        off = texts_per_second(enc, texts, False, 3, grad)
        what = "forward+backward" if grad else "forward"
        print(f"  {what:17s} dedupe {on:7.0f} texts/s   no dedupe {off:7.0f} texts/s   ratio {on / off:5.2f}x")
    m = build_encoder(EncoderConfig(preset="minilm", device="cpu"))
    t64 = texts[:64]
    on, off = texts_per_second(m, t64, True, 3), texts_per_second(m, t64, False, 3)
    print(f"minilm forward, 64 texts ({len(set(t64))} distinct): dedupe {on:6.0f} texts/s   no dedupe {off:6.0f}"
          f"   ratio {on / off:5.2f}x")
    env, rng, obs_list = make("negotiation_v0"), np.random.default_rng(0), []
    while len(obs_list) < 64:
        obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
        while env.agents and len(obs_list) < 64:
            for a in env.agents:
                if obs[a]["action_mask"].sum() > 1:
                    obs_list.append(dict(obs[a], action_names=env.action_names(a)))
            obs, *_ = env.step({a: int(rng.choice(np.flatnonzero(obs[a]["action_mask"]))) for a in env.agents})
    pol = build_policy(PolicyConfig(head="scoring", encoder=EncoderConfig(device="cpu")), "negotiation_v0",
                       tokenizer=tok)
    distinct = len({o["text"] for o in obs_list} | {n for o in obs_list for n in o["action_names"]})
    pol.act(obs_list)
    t = time.perf_counter()
    for _ in range(3):
        pol.act(obs_list)
    dt = (time.perf_counter() - t) / 3
    print(f"scoring head: 64 negotiation obs x 127 action texts ({64 * 128} texts, {distinct} distinct): "
          f"{dt * 1000:.0f} ms per act (each distinct text encoded once)")


if __name__ == "__main__":
    main()
