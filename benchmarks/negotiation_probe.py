"""What does a negotiator's policy see? Linear probes of the features its heads read.

Run:  .venv/bin/python benchmarks/negotiation_probe.py ckpt:runs/evolution_negotiation/stages/02_finetune/checkpoint \
          ckpt:runs/evolution_negotiation/stages/03_train/checkpoint --episodes 300 --seed 3000000

Each agent (greedy) plays ``--episodes`` games in both seat orders against every opponent of the pool; at each
of its decisions the probe records the features its policy and value heads read (the encoder's pooled output of
the observation's text, standardised as the heads see it) and the world's numeric facts of that moment
(``obs["features"]``, never shown to a text policy). A ridge regression per target is fitted on the
decisions of ``--episodes`` games per opponent and seat order, its penalty chosen on a quarter as many other
games, and scored on half as many others again (three disjoint sets of seeds): the held-out R^2 says how much
of a fact the heads could use. A frozen encoder cannot give the
heads a fact its features dropped, whatever PPO does.

Targets: ``opp_concession`` (the opponent's latest offer's value to me minus its first's, on decisions where it
has offered at least twice), ``offer_counts`` (the items its standing offer gives me, the mean R^2 of the three
counts), ``offer_value`` and ``turn`` (controls that every encoder should keep).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from evoarena.agents import make_agent
from evoarena.agents.learned import PolicyAgent
from evoarena.agents.match import play
from evoarena.envs.base import only_legal
from evoarena.envs.negotiation import FEATURE_NAMES

ENV = "negotiation_v0"
POOL = ["scripted:greedy", "scripted:fair", "scripted:conceder", "scripted:boulware"]
F = {name: i for i, name in enumerate(FEATURE_NAMES)}
ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
SET_STRIDE = 100_000  #: the fit, penalty and held-out games start at seed, seed + SET_STRIDE, seed + 2 * SET_STRIDE
TARGETS = ("opp_concession", "offer_counts", "offer_value", "turn")


class RecordingAgent(PolicyAgent):
    """A policy agent that keeps, for each decision it makes, its heads' input and the numeric facts."""

    def __init__(self, inner: PolicyAgent) -> None:
        super().__init__(inner.policy, greedy=True, seed=0, name=inner.name)
        self.head_inputs: list[np.ndarray] = []
        self.facts: list[np.ndarray] = []

    def act_batch(self, obs_list: Sequence[dict[str, Any]]) -> list[int]:
        asked = [o for o in obs_list if only_legal(o) is None]
        if asked:
            self.head_inputs.append(head_input(self.policy, asked))
            self.facts.extend(np.asarray(o["features"], dtype=np.float64) for o in asked)
        return super().act_batch(obs_list)


@torch.no_grad()
def head_input(policy, obs_list: Sequence[dict[str, Any]]) -> np.ndarray:
    """The features the policy's heads read for each observation (standardised pooled encoder output)."""
    policy.eval()
    feats, rows, _ = policy.encode_obs(obs_list)
    return policy._split_standardize(feats, rows).float().cpu().numpy()


def targets(facts: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per target, ``(values [N, k], which decisions have it [N] bool)``."""
    counts = facts[:, [F["offer_get_book"], F["offer_get_hat"], F["offer_get_ball"]]]
    return {
        "opp_concession": (facts[:, [F["opp_concession"]]], facts[:, F["opp_num_offers"]] >= 2),
        "offer_counts": (counts, facts[:, F["has_offer"]] > 0.5),
        "offer_value": (facts[:, [F["offer_value"]]], facts[:, F["has_offer"]] > 0.5),
        "turn": (facts[:, [F["turn"]]], np.ones(len(facts), dtype=bool)),
    }


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(weights, x_mean, y_mean)`` of ridge regression on centred data (penalty ``alpha``, no penalty on the bias)."""
    xm, ym = x.mean(0), y.mean(0)
    xc = x - xm
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - ym))
    return w, xm, ym


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean over the columns of 1 - SSE / SST (columns with no variance are skipped)."""
    sst = ((y - y.mean(0)) ** 2).sum(0)
    keep = sst > 1e-12
    if not keep.any():
        return float("nan")
    return float(np.mean(1.0 - ((y - pred) ** 2).sum(0)[keep] / sst[keep]))


def probe(x: Sequence[np.ndarray], y: Sequence[np.ndarray]) -> tuple[float, float]:
    """``(held-out R^2, chosen alpha)`` from the three sets (fit, choose the penalty, held out) of ``(x, y)``."""
    def score(alpha: float, fit_x: np.ndarray, fit_y: np.ndarray, on: int) -> float:
        w, xm, ym = ridge_fit(fit_x, fit_y, alpha)
        return r2(y[on], (x[on] - xm) @ w + ym)

    alpha = max(ALPHAS, key=lambda a: score(a, x[0], y[0], 1))
    return score(alpha, np.concatenate(x[:2]), np.concatenate(y[:2]), 2), alpha


def record(spec: str, episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(head inputs [N, H], facts [N, F])`` of the agent's decisions in ``episodes`` games per seat order against
    each pool opponent (games ``seed, seed + 1, ...``)."""
    inner = make_agent(spec, ENV, seed=seed)
    if not isinstance(inner, PolicyAgent):
        raise SystemExit(f"negotiation_probe: {spec} is not a learned policy (ckpt:PATH); nothing to probe")
    agent = RecordingAgent(inner)
    for opponent in POOL:
        for seat in (0, 1):
            seats = [agent, make_agent(opponent, ENV, seed=seed)]
            play(ENV, seats if seat == 0 else seats[::-1], episodes=episodes, seed=seed, num_envs=episodes)
    return np.concatenate(agent.head_inputs).astype(np.float64), np.stack(agent.facts)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("agents", nargs="+", help="ckpt:PATH of negotiation_v0 policies")
    ap.add_argument("--episodes", type=int, default=300, help="games per opponent and seat order")
    ap.add_argument("--seed", type=int, default=3_000_000)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    sizes = (args.episodes, max(args.episodes // 4, 1), max(args.episodes // 2, 1))  # fit, penalty, held out
    for spec in args.agents:
        sets = [record(spec, n, args.seed + k * SET_STRIDE) for k, n in enumerate(sizes)]
        cells = []
        for name in TARGETS:
            xs, ys = [], []
            for x, facts in sets:
                y, has = targets(facts)[name]
                xs.append(x[has])
                ys.append(y[has])
            score, alpha = probe(xs, ys)
            cells.append(f"{name} {score:.3f} (alpha {alpha:g})")
        n = sum(len(x) for x, _ in sets)
        print(f"{spec}: {n} decisions, {sets[0][0].shape[1]} features; held-out R^2: " + ", ".join(cells))


if __name__ == "__main__":
    main()
