"""A best response to a deterministic dilemma agent, by search: how far can an opponent push it down?

A greedy learned agent (and every deterministic scripted strategy) answers each history the same way, so an
opponent's whole game is a fixed plan of 20 moves, and the best response is the plan with the highest score for
the opponent. This searches a family of plans that holds every exploit seen in this world: cooperate except in
at most ``--max-defections`` rounds (the preemptive defection one round before the agent's own), or defect from
some round on (the tail). Per plan it plays one game in each seat order against the agent, all plans in one
batch per round; it prints the plan that pays the opponent most and what the agent scored there, next to the
same search against ``tit_for_tat`` (57 for it: the best plan defects in round 20 only).

A learned exploiter (``evoarena exploit``) can miss the preemption (it is one move in a thousand plans);
this search cannot miss it, but sees only its family of plans. Nothing here is trained: it measures.

Run:  .venv/bin/python benchmarks/dilemma_best_response.py ckpt:models/dilemma/ppo [ckpt:...]
"""

from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np

from evoarena.agents import make_agent
from evoarena.envs import make

KWARGS = {"num_agents": 2, "rounds": 20, "game": "prisoners"}
REFERENCE = "scripted:tit_for_tat"
COOPERATE, DEFECT = 0, 1


def plans(rounds: int, max_defections: int) -> list[tuple[int, ...]]:
    """Every plan with at most ``max_defections`` defections, and every 'defect from round j on' tail."""
    out = {tuple([COOPERATE] * rounds)}
    for k in range(1, max_defections + 1):
        for where in itertools.combinations(range(rounds), k):
            out.add(tuple(DEFECT if r in where else COOPERATE for r in range(rounds)))
    for j in range(rounds):
        out.add(tuple([COOPERATE] * j + [DEFECT] * (rounds - j)))
    return sorted(out)


def play_plans(spec: str, plan_list: list[tuple[int, ...]], agent_seat: int, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray]:
    """Scores of (the agent, the opponent) in one game per plan, the agent in seat ``agent_seat``."""
    agent = make_agent(spec, "dilemma_v0", seed=seed)
    agent.reset(seed)
    envs = [make("dilemma_v0", **KWARGS) for _ in plan_list]
    obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    names = envs[0].possible_agents
    me, them = names[agent_seat], names[1 - agent_seat]
    mine, theirs = np.zeros(len(plan_list)), np.zeros(len(plan_list))
    for r in range(KWARGS["rounds"]):
        moves = agent.act_batch([o[me] for o in obs])
        for i, env in enumerate(envs):
            o, rew, *_ = env.step({me: int(moves[i]), them: plan_list[i][r]})
            obs[i] = o
            mine[i] += rew[me]
            theirs[i] += rew[them]
    return mine, theirs


def best_response(spec: str, max_defections: int) -> tuple[float, float, tuple[int, ...]]:
    """(the opponent's best mean score over both seats, the agent's score there, the plan)."""
    plan_list = plans(KWARGS["rounds"], max_defections)
    (m0, t0), (m1, t1) = (play_plans(spec, plan_list, seat) for seat in (0, 1))
    theirs, mine = (t0 + t1) / 2, (m0 + m1) / 2
    best = int(np.argmax(theirs))
    return float(theirs[best]), float(mine[best]), plan_list[best]


def describe(plan: tuple[int, ...]) -> str:
    rounds = [str(r + 1) for r, a in enumerate(plan) if a == DEFECT]
    return f"defects in round(s) {', '.join(rounds)}" if rounds else "cooperates throughout"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("agents", nargs="+")
    ap.add_argument("--max-defections", type=int, default=3)
    args = ap.parse_args()
    if args.max_defections < 0:
        ap.error(f"--max-defections must be >= 0, got {args.max_defections}")
    n = len(plans(KWARGS["rounds"], args.max_defections))
    try:
        for spec in args.agents:  # every agent loads before the search starts: a bad spec fails at once, in a line
            make_agent(spec, "dilemma_v0", seed=0)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ref_them, ref_me, ref_plan = best_response(REFERENCE, args.max_defections)
    print(f"{n} plans per seat; {REFERENCE}: {ref_me:.1f} under its best response ({ref_them:.1f}, "
          f"{describe(ref_plan)})")
    below = 0
    for spec in args.agents:
        them, me, plan = best_response(spec, args.max_defections)
        ok = me >= ref_me
        below += not ok
        print(f"{spec}: {me:.1f} under its best response ({them:.1f}, {describe(plan)})   "
              f"{'ok' if ok else 'BELOW'} {REFERENCE}'s {ref_me:.1f}")
    return 1 if below else 0


if __name__ == "__main__":
    raise SystemExit(main())
