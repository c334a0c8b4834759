"""Evaluate a saved agent (any checkpoint folder) against every scripted strategy of its world.

Run:     python examples/evaluate_saved_agent.py CHECKPOINT [--episodes 100]
         e.g. python examples/evaluate_saved_agent.py models/dilemma/ppo
Expect:  one line per strategy: the agent's mean return against it (both seats) with its 95% interval,
         and the strategy's own score against it; then the agent's mean over all strategies.
"""

from __future__ import annotations

import argparse

import numpy as np

from evoarena.agents import list_strategies, make_agent
from evoarena.bench import mean_ci, play
from evoarena.policies.io import read_policy_json


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args(argv)

    meta = read_policy_json(args.checkpoint)
    env_id, kwargs = meta["env_id"], meta.get("env_kwargs", {})
    spec = f"ckpt:{args.checkpoint}"
    agent = make_agent(spec, env_id)
    scores = {}
    for strategy in list_strategies(env_id):
        mine, theirs = [], []
        for order in ((agent, f"scripted:{strategy}"), (f"scripted:{strategy}", agent)):
            res = play(env_id, list(order), episodes=args.episodes, seed=2_000_000, env_kwargs=kwargs)
            me, other = res.agents if order[0] is agent else res.agents[::-1]
            mine.append(res.returns[me])
            theirs.append(res.returns[other])
        mean, half = mean_ci(np.concatenate(mine))
        scores[strategy] = mean
        print(f"{strategy:>24}: agent {mean:7.2f} +- {half:.2f}   strategy {np.concatenate(theirs).mean():7.2f}")
    print(f"{'mean':>24}: agent {np.mean(list(scores.values())):7.2f}")
    return scores


if __name__ == "__main__":
    main()
