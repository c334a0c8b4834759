"""Make a world and watch scripted agents play it.

Run:     python examples/watch_scripted_match.py [--env dilemma_v0] [--agents scripted:tit_for_tat scripted:pavlov]
Expect:  one game's transcript, then the mean return of each seat over 100 games with its 95% interval.
         With the defaults (tit_for_tat vs suspicious_tit_for_tat, 20 rounds) both score 50.0 +- 0.0: the
         suspicious opening defection echoes back and forth forever.
"""

from __future__ import annotations

import argparse

from evoarena.bench import play, summarize
from evoarena.envs import make


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="dilemma_v0")
    parser.add_argument("--agents", nargs="+", default=["scripted:tit_for_tat", "scripted:suspicious_tit_for_tat"])
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args(argv)

    env = make(args.env)
    obs, _ = env.reset(seed=0)
    first = env.possible_agents[0]
    print(f"{first} reads: {obs[first]['text']!r}")
    print(f"{first} may do: {env.action_names(first)}")

    result = play(args.env, args.agents, episodes=args.episodes, seed=0, record=1)
    print(result.transcripts[0])
    summary = summarize(result)
    for seat, row in summary["seats"].items():
        print(f"{seat:>10} {row['agent']:<36} {row['mean_return']:8.3f} +- {row['ci95']:.3f}")
    print("metrics:", {k: round(v, 3) for k, v in summary["metrics"].items()})
    return summary


if __name__ == "__main__":
    main()
