"""Does a negotiator beat its teacher? Scores of a candidate and a reference agent against the scripted
pool, and head to head, on fixed evaluation sets with common random numbers.

Run:  .venv/bin/python benchmarks/negotiation_vs_teacher.py \
          --candidate ckpt:runs/ppo_negotiation/stages/01_train/best/policies/main \
          --reference ckpt:runs/bc_negotiation/stages/01_finetune/checkpoint --seed 2000000 --episodes 500

Every match is played in both seat orders; the first mover is drawn from each episode's seed, so
both first movers occur, and candidate and reference see exactly the same contexts (episode ``i`` of
every match uses seed ``seed + i``). With the defaults: 4 opponents x 2 seat orders x 500 = 4,000
games per agent against the pool, and 2 x 500 = 1,000 head-to-head games (``--h2h-episodes`` to change).
Use a ``--seed`` never used to pick checkpoints to confirm a result. Prints mean score +- 95% CI,
agreement, and the paired difference candidate - reference with its 95% CI.
"""

from __future__ import annotations

import argparse

import numpy as np

from evoarena.agents import make_agent
from evoarena.agents.match import play
from evoarena.bench.stats import mean_ci

POOL = ["scripted:greedy", "scripted:fair", "scripted:conceder", "scripted:boulware"]
ENV = "negotiation_v0"


def scores_vs(agent_spec: str, opponent: str, episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, agreements) of ``agent_spec`` in both seat orders against ``opponent``, concatenated."""
    scores, agree = [], []
    for seat in (0, 1):
        seats = [agent_spec, opponent] if seat == 0 else [opponent, agent_spec]
        seats = [make_agent(s, ENV, seed=seed) for s in seats]
        res = play(ENV, seats, episodes=episodes, seed=seed, num_envs=256)
        scores.append(res.returns[f"player_{seat}"])
        agree.append(np.array([m["agreement"] for m in res.metrics]))
    return np.concatenate(scores), np.concatenate(agree)


def head_to_head(a: str, b: str, episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores of ``a`` and ``b`` in the same games, both seat orders."""
    sa, sb = [], []
    for order in ((a, b), (b, a)):
        res = play(ENV, [make_agent(s, ENV, seed=seed) for s in order], episodes=episodes, seed=seed, num_envs=256)
        ia = 0 if order[0] == a else 1
        sa.append(res.returns[f"player_{ia}"])
        sb.append(res.returns[f"player_{1 - ia}"])
    return np.concatenate(sa), np.concatenate(sb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", required=True, help="agent spec, e.g. ckpt:PATH")
    parser.add_argument("--reference", default="scripted:conceder", help="agent spec of the teacher/parent")
    parser.add_argument("--episodes", type=int, default=500, help="per opponent and seat order")
    parser.add_argument("--h2h-episodes", type=int, default=500, help="head to head, per seat order")
    parser.add_argument("--seed", type=int, default=2_000_000)
    args = parser.parse_args()
    rows = {}
    for who in (args.candidate, args.reference):
        parts = [scores_vs(who, opp, args.episodes, args.seed) for opp in POOL]
        rows[who] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                     {opp: float(p[0].mean()) for opp, p in zip(POOL, parts)})
    n = len(rows[args.candidate][0])
    print(f"against the pool {POOL}: {n} games each (both seats, common random numbers, seed {args.seed})")
    for who, (sc, ag, per) in rows.items():
        m, h = mean_ci(sc)
        detail = "  ".join(f"{k.split(':')[1]} {v:.2f}" for k, v in per.items())
        print(f"  {who:70s} score {m:.3f} +- {h:.3f}  agreement {ag.mean():.3f}  [{detail}]")
    diff = rows[args.candidate][0] - rows[args.reference][0]
    m, h = mean_ci(diff)
    print(f"  paired difference candidate - reference: {m:+.3f} +- {h:.3f}")
    cand, ref = head_to_head(args.candidate, args.reference, args.h2h_episodes, args.seed + 10_000_000)
    m, h = mean_ci(cand - ref)
    print(f"head to head ({len(cand)} games): candidate {cand.mean():.3f} vs reference {ref.mean():.3f}; "
          f"difference {m:+.3f} +- {h:.3f}")


if __name__ == "__main__":
    main()
