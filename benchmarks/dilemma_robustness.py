"""Is a dilemma agent at least as robust as ``tit_for_tat``? Held-out checks of issue 24, none trained against.

For each agent: its mean score per game against each unseen strategy of the quickstart and against
``scripted:tester`` (both seat orders), next to ``tit_for_tat``'s on the same games, and whether it is no lower
than tit_for_tat's minus ``--margin`` (1 point per game); with ``--exploit``, its score under a learned exploiter
next to tit_for_tat's under the same budget (``evoarena exploit``).

Run:  .venv/bin/python benchmarks/dilemma_robustness.py ckpt:models/dilemma/ppo [ckpt:...] [--exploit]
"""

from __future__ import annotations

import argparse

import numpy as np

from evoarena.agents.match import mean_ci, play

KWARGS = {"num_agents": 2, "rounds": 20, "game": "prisoners"}
OPPONENTS = ["scripted:tit_for_two_tats", "scripted:two_tits_for_tat", "scripted:alternator",
             "scripted:soft_majority", "scripted:hard_majority", "scripted:joss", "scripted:tester"]
REFERENCE = "scripted:tit_for_tat"


def score(agent: str, opponent: str, episodes: int, seed: int) -> np.ndarray:
    """Per-game returns of ``agent`` against ``opponent``, half the games in each seat."""
    half = max(1, episodes // 2)
    a = play("dilemma_v0", [agent, opponent], half, seed=seed, env_kwargs=KWARGS).returns["player_0"]
    b = play("dilemma_v0", [opponent, agent], half, seed=seed + half, env_kwargs=KWARGS).returns["player_1"]
    return np.concatenate([a, b])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("agents", nargs="+")
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=3_000_000)
    ap.add_argument("--margin", type=float, default=1.0)
    ap.add_argument("--exploit", action="store_true", help="also the exploiter check (evoarena exploit)")
    ap.add_argument("--budget", type=int, default=40)
    args = ap.parse_args()
    ref = {o: score(REFERENCE, o, args.episodes, args.seed) for o in OPPONENTS}
    failures = 0
    for agent in args.agents:
        print(f"\n{agent}: mean score per game (95% CI), against tit_for_tat's on the same games")
        for o in OPPONENTS:
            (m, ci), (rm, rci) = mean_ci(score(agent, o, args.episodes, args.seed)), mean_ci(ref[o])
            ok = m >= rm - args.margin
            failures += not ok
            print(f"  {o:<28} {m:7.2f} +- {ci:5.2f}   tit_for_tat {rm:7.2f} +- {rci:5.2f}   {'ok' if ok else 'BELOW'}")
        if args.exploit:
            from evoarena.bench.exploit import exploit, summary_line

            mine = exploit(agent, "dilemma_v0", budget=args.budget, env_kwargs=KWARGS)
            theirs = exploit(REFERENCE, "dilemma_v0", budget=args.budget, env_kwargs=KWARGS)
            ok = mine.agent_score >= theirs.agent_score
            failures += not ok
            print(f"  {summary_line(mine, theirs)}   {'ok' if ok else 'BELOW'}")
    print(f"\nrobustness: {failures} check(s) below tit_for_tat")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
