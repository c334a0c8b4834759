"""The evaluate stage: every earlier stage's agent, ``random`` and the world's scripted strategies play the
same games against named opponents; the evolution table and paired differences go to ``results.json``.

Rows are agents (one per stage of the chain, in order, then the baselines), columns the opponents: the
pool the learner trained against, then the ``unseen`` ones. Every cell plays the same episode seeds
(``eval_seed + i``) in every seat order, so two rows differ only by the agent (common random numbers)
and a stage's gain over the previous one is a paired difference game by game. An encoder-only stage
(pretrain, NER) is evaluated as the policy the next stage builds on it, with untrained heads.

TensorBoard: ``evaluate/<row>/<column>/score`` and ``evaluate/<row>/pool_score`` (and ``unseen_score``)
at the stage's step, agents spelt by :func:`evoarena.agents.spec_tag` (``eval/`` holds the learners' own
evaluations while they train); one transcript per stage's agent and opponent under
``episodes/<row>/<column>``. Each stage row records which checkpoint it is and how it was chosen. The
per-game returns are kept in ``stages/NN_evaluate/returns.json``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evoarena.agents import make_agent, spec_tag
from evoarena.agents.learned import PolicyAgent
from evoarena.agents.match import mean_ci, play
from evoarena.config import EvaluateConfig, PolicyConfig
from evoarena.envs import describe, make
from evoarena.storage import atomic_write_text
from evoarena.training.infra import runs
from evoarena.training.infra.progress import progress_bar
from evoarena.training.protocol import StageAgent, StageContext, StageKind

SELF = "self"


@dataclass
class Row:
    name: str
    label: str
    spec: str | None = None  #: a baseline's agent spec
    policies: dict[str, Any] = field(default_factory=dict)  #: role -> policy (learned rows)
    stage: str | None = None
    teacher: str | None = None
    source: str = ""  #: which checkpoint a learned row is and how it was chosen


class CountingAgent:
    """Wraps an agent and counts the actions it takes (the action distribution of a row)."""

    def __init__(self, agent: Any, counts: Counter) -> None:
        self._agent, self.counts = agent, counts

    def __getattr__(self, name: str) -> Any:
        return getattr(self._agent, name)

    def act_batch(self, obs_list: list[dict[str, Any]]) -> list[int]:
        actions = self._agent.act_batch(obs_list)
        self.counts.update(int(a) for a in actions)
        return actions

    def act(self, obs: dict[str, Any]) -> int:
        return self.act_batch([obs])[0]


def _fresh_policy(agent: StageAgent, cfg: EvaluateConfig, folder: Path) -> dict[str, Any]:
    """role -> the policy config of ``agent.fresh_policy`` on the encoder ``agent.checkpoints['*']``
    (untrained heads, seeded by ``cfg.seed``), saved under ``folder`` so it is an agent anyone can load."""
    from evoarena.policies.actor_critic import build_policy
    from evoarena.policies.io import load_policy, save_checkpoint

    info = describe(cfg.env.id, cfg.env.kwargs)
    by_role = {role: info.agent_of(role) for role in info.num_actions}
    out = {}
    for role, seat in by_role.items():
        target = folder / "agents" / agent.name / role
        if not (target / "policy.json").is_file():
            torch.manual_seed(cfg.seed)
            pcfg = PolicyConfig.model_validate({**(agent.fresh_policy or {}),
                                                "init_from": agent.checkpoints.get("*")})  # none: zero-shot
            policy = build_policy(pcfg, cfg.env.id, agent=seat, env_kwargs=cfg.env.kwargs)
            if policy.standardizes:
                policy.calibrate(_random_play_obs(cfg, seat), seed=cfg.seed)
            what = "encoder with untrained heads" if agent.checkpoints else "zero-shot: built without training"
            save_checkpoint(target, policy, {"stage": "evaluate", "what": what,
                                             "encoder": agent.checkpoints.get("*")})
        out[role] = load_policy(target)
    return out


def _random_play_obs(cfg: EvaluateConfig, agent: str, episodes: int = 64) -> list[dict[str, Any]]:
    """Observations of ``agent`` in random play (seeds below the evaluation seeds): calibration texts."""
    rng = np.random.default_rng(cfg.seed)
    env = make(cfg.env.id, **cfg.env.kwargs)
    out = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=cfg.seed * 100_003 + ep)
        while env.agents:
            if agent in obs and obs[agent]["action_mask"].sum() > 1:
                out.append(obs[agent])
            acts = {a: int(rng.choice(np.flatnonzero(obs[a]["action_mask"]))) for a in env.agents}
            obs, *_ = env.step(acts)
    env.close()
    return out


def _relative(path: str, run_dir: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(run_dir.resolve()))
    except ValueError:
        return path


def describe_source(agent: StageAgent, results: dict[str, Any], run_dir: Path) -> str:
    """Which checkpoint a stage's agent is and how it was chosen, from the folder and the stage's results
    (``results``: the run's results.json)."""
    paths = sorted(set(agent.checkpoints.values()))
    where = ", ".join(f"`{_relative(p, run_dir)}`" for p in paths)
    mine = results.get(agent.key, {})
    if agent.fresh_policy is not None and not paths:
        return "as shipped: built from its policy config without any training (no checkpoint; seeded heads)"
    if agent.fresh_policy is not None:
        return f"the encoder {where} at its last step, with untrained (seeded) policy and value heads"
    if any(Path(p).parts[-3:-2] == ("best",) for p in paths) and mine.get("best_update") is not None:
        evals = mine.get("evals") or []
        return (f"{where}: best greedy eval score of {len(evals)} evaluations during training (update "
                f"{mine['best_update']} of {mine.get('updates')}), on other seeds than this table's; against "
                f"opponents this table also plays, in a world whose games do not depend on the seed (e.g. "
                f"deterministic strategies in dilemma_v0), that choice is in-sample (`hand_on: final` avoids it)")
    if any(Path(p).parts[-3:-2] == ("averaged",) for p in paths) and mine.get("averaged_updates"):
        return (f"{where}: the average of the weights of the last {mine['averaged_updates']} updates (of "
                f"{mine.get('updates')}); no checkpoint selection")
    if "updates" in mine:
        return f"{where}: the last update ({mine['updates']}); no checkpoint selection"
    return f"{where}: the stage's final checkpoint"


def zero_shot_agents(cfg: EvaluateConfig) -> list[StageAgent]:
    """The agents of ``cfg.zero_shot``: policies built without training (the first rows of the table)."""
    from evoarena.policies.llm import model_title

    return [StageAgent(name, f"zero_shot:{name}", f"zero-shot {model_title(pc)} as shipped, no training", {},
                       fresh_policy=pc.model_dump(mode="json", exclude_unset=True))
            for name, pc in cfg.zero_shot.items()]


def build_rows(cfg: EvaluateConfig, stage_agents: list[StageAgent], folder: Path) -> list[Row]:
    """The table's rows: each stage's agent (in chain order), then ``random`` and every scripted strategy."""
    from evoarena.agents import list_strategies
    from evoarena.policies.io import load_policy

    rows = []
    for sa in stage_agents:
        if not sa.checkpoints and sa.fresh_policy is None:
            continue
        if sa.fresh_policy is not None:
            policies = _fresh_policy(sa, cfg, folder)
        else:
            policies = {role: load_policy(path) for role, path in sa.checkpoints.items()}
        rows.append(Row(sa.name, sa.label, policies=policies, stage=sa.key, teacher=sa.teacher,
                        source=sa.source))
    if cfg.baselines:
        rows.append(Row("random", "uniform over legal actions", spec="random"))
        for s in list_strategies(cfg.env.id):
            if s != "random":
                rows.append(Row(f"scripted:{s}", "scripted strategy", spec=f"scripted:{s}"))
    return rows


def seat_orders(cfg: EvaluateConfig) -> tuple[list[str], dict[str, str], list[str]]:
    """(agents, agent -> role, focus seats: where the evaluated row sits, one seat order each)."""
    info = describe(cfg.env.id, cfg.env.kwargs)
    agents, roles = list(info.agents), dict(info.roles)
    focus = [agents[0]]
    if cfg.both_seats and len(agents) == 2 and roles[agents[0]] == roles[agents[1]]:
        focus.append(agents[1])
    return agents, roles, focus


def _row_agent(row: Row, role: str, cfg: EvaluateConfig) -> Any:
    if row.spec is not None:
        return make_agent(row.spec, cfg.env.id, seed=cfg.eval_seed + 7919)
    policy = row.policies.get(role) or next(iter(row.policies.values()))
    return PolicyAgent(policy, greedy=cfg.greedy, seed=cfg.eval_seed, name=row.name)


def play_cell(row: Row, column: str, cfg: EvaluateConfig, counts: Counter, record: bool = False
              ) -> dict[str, Any]:
    """All seat orders of ``row`` against ``column``: the row's per-game returns (seat orders
    concatenated, in a fixed order), the world's mean metrics and one transcript."""
    agents, roles, focus = seat_orders(cfg)
    returns, metrics, transcript = [], [], None
    deals: dict[str, list[np.ndarray]] = {"agreement": [], "pareto_optimal": []}
    for seat in (agents if column == SELF else focus):
        seats: dict[str, Any] = {}
        for a in agents:
            if column == SELF or a == seat:
                seats[a] = CountingAgent(_row_agent(row, roles[a], cfg), counts)
            else:
                seats[a] = column
        res = play(cfg.env.id, seats, episodes=cfg.episodes, seed=cfg.eval_seed, env_kwargs=cfg.env.kwargs,
                   num_envs=min(256, cfg.episodes), record=1 if record and transcript is None else 0)
        returns.append(res.returns[seat] if column != SELF else np.mean([res.returns[a] for a in agents], axis=0))
        metrics.append(res.mean_metrics())
        for key, flags in deals.items():
            if res.metrics and key in res.metrics[0]:
                flags.append(np.array([m[key] for m in res.metrics], dtype=np.float64))
        if res.transcripts and transcript is None:
            transcript = res.transcripts[0]
        if column == SELF:
            break
    keys = sorted({k for m in metrics for k in m})
    mean_metrics = {k: float(np.mean([m[k] for m in metrics if k in m])) for k in keys}
    per_game = {k: np.concatenate(v) for k, v in deals.items() if v and len(v) == len(returns)}
    return {"returns": np.concatenate(returns), "metrics": mean_metrics, "transcript": transcript,
            "deals": per_game if "agreement" in per_game else None}


def deal_metrics(returns: np.ndarray, deals: dict[str, np.ndarray]) -> dict[str, Any]:
    """Lewis et al. (2017)'s view of a negotiator's games: its mean score over all games and over the games
    that ended in a deal, the share of games agreed, and the share of deals that were Pareto-optimal."""
    agreed = np.asarray(deals["agreement"]) > 0.5
    returns = np.asarray(returns, dtype=np.float64)
    pareto = np.asarray(deals.get("pareto_optimal", np.zeros_like(returns))) > 0.5
    n_agreed = int(agreed.sum())
    return {"score": float(returns.mean()) if len(returns) else float("nan"),
            "score_agreed": float(returns[agreed].mean()) if n_agreed else None,
            "agreed": float(agreed.mean()) if len(agreed) else float("nan"),
            "pareto_of_agreed": float((pareto & agreed).sum() / n_agreed) if n_agreed else None,
            "games": int(len(returns)), "agreed_games": n_agreed}


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean of ``a - b`` game by game with its 95% interval."""
    mean, half = mean_ci(np.asarray(a) - np.asarray(b))
    return {"mean": mean, "ci95": half, "low": mean - half, "high": mean + half, "games": int(len(a))}


def _evaluate_row(row: Row, cfg: EvaluateConfig, columns: list[str], pool: list[str], unseen: list[str],
                  action_names: list[str], writer: Any, update: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One row of the table: the row's cells (score with interval, the world's metrics, deal metrics where the
    world has deals, a transcript), its pool and unseen groups, the actions it took; and its per-game returns."""
    counts: Counter = Counter()
    cells, games, deals = {}, {}, {}
    for col in columns:
        cell = play_cell(row, col, cfg, counts, record=cfg.transcripts and row.stage is not None)
        mean, half = mean_ci(cell["returns"])
        cells[col] = {"mean": mean, "ci95": half, "games": int(len(cell["returns"])), "metrics": cell["metrics"]}
        games[col] = cell["returns"]
        if cell["deals"] is not None:
            deals[col] = cell["deals"]
            cells[col]["deals"] = deal_metrics(cell["returns"], cell["deals"])
        if cell["transcript"]:
            cells[col]["transcript"] = cell["transcript"]
            writer.add_text(f"episodes/{spec_tag(row.name)}/{spec_tag(col)}", f"```\n{cell['transcript']}\n```", 0)
        writer.add_scalar(f"evaluate/{spec_tag(row.name)}/{spec_tag(col)}/score", mean, 0)
        update(1, info=f"{row.name} vs {col}: {mean:.2f}")
    entry: dict[str, Any] = {"label": row.label, "stage": row.stage, "cells": cells, "source": row.source,
                             "actions": {(action_names[a] if a < len(action_names) else str(a)): n
                                         for a, n in sorted(counts.items())}}
    for group, cols in (("pool", pool or columns), ("unseen", unseen)):
        if cols:
            allg = np.concatenate([games[c] for c in cols])
            mean, half = mean_ci(allg)
            metrics = {k: float(np.mean([cells[c]["metrics"].get(k, np.nan) for c in cols]))
                       for k in cells[cols[0]]["metrics"]}
            entry[group] = {"mean": mean, "ci95": half, "games": int(len(allg)), "metrics": metrics}
            if all(c in deals for c in cols):
                entry[group]["deals"] = deal_metrics(allg, {k: np.concatenate([deals[c][k] for c in cols])
                                                            for k in deals[cols[0]]})
            writer.add_scalar(f"evaluate/{spec_tag(row.name)}/{group}_score", mean, 0)
    return entry, games


def run_evaluate(cfg: EvaluateConfig, ctx: StageContext) -> dict[str, Any]:
    """The evolution table of the chain's agents (``ctx.earlier``; + baselines) against the pool and unseen
    opponents."""
    import time

    run_dir, folder = ctx.run_dir, ctx.folder()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    world = make(cfg.env.id, **cfg.env.kwargs)
    _, _, focus = seat_orders(cfg)
    world.reset(seed=cfg.eval_seed)
    action_names = list(world.action_names(focus[0]))
    world.close()
    pool = list(dict.fromkeys(cfg.opponents))
    unseen = [u for u in dict.fromkeys(cfg.unseen) if u not in pool]
    columns = pool + unseen or [SELF]
    done = runs.read_results(run_dir)
    stage_agents = zero_shot_agents(cfg) + list(ctx.earlier)
    for sa in stage_agents:
        sa.source = sa.source or describe_source(sa, done, run_dir)
    rows = build_rows(cfg, stage_agents, folder)
    table: dict[str, Any] = {}
    per_game: dict[str, dict[str, list[float]]] = {}
    writer = ctx.writer(purge_step=runs.resume_purge_step(ctx.resume, 0))  # a resume redoes it all
    with progress_bar(ctx.describe("evaluate"), len(rows) * len(columns), unit="matchups",
                      enabled=ctx.progress) as update:
        for row in rows:
            table[row.name], games = _evaluate_row(row, cfg, columns, pool, unseen, action_names, writer, update)
            per_game[row.name] = {c: games[c].tolist() for c in columns}
    writer.close()
    stage_rows = [r for r in rows if r.stage is not None]
    gains = []
    for prev, cur in zip(stage_rows, stage_rows[1:]):
        gains.append(_gain(cur.name, prev.name, per_game, pool or columns, unseen))
    for r in stage_rows:
        for later in stage_rows[stage_rows.index(r) + 1:]:
            if r.teacher and r.teacher in per_game:
                gains.append(_gain(later.name, r.teacher, per_game, pool or columns, unseen, kind="vs teacher"))
    atomic_write_text(folder / "returns.json", json.dumps(per_game))
    results = {"env": cfg.env.id, "env_kwargs": cfg.env.kwargs, "pool": pool, "unseen": unseen,
               "columns": columns, "first_seat": focus[0], "episodes_per_seat": cfg.episodes,
               "eval_seed": cfg.eval_seed,
               "rows": table, "stage_rows": [r.name for r in stage_rows], "gains": gains,
               "wall_s": time.perf_counter() - t0}
    gains_text = "; ".join(f"{g['agent']} over {g['over']} {_interval(g['pool'])}"
                           + (f" / {_interval(g['unseen'])}" if g.get("unseen") else "") for g in gains)
    results["summary"] = (f"{len(rows)} agents x {len(columns)} opponents ({len(pool)} pool, {len(unseen)} unseen), "
                          f"{cfg.episodes} games per seat order, {results['wall_s']:.0f} s; paired gains per game, "
                          f"pool" + (" / unseen" if unseen else "") + f" (95% CI): {gains_text}")
    ctx.write_results(results)
    return results


def _gain(agent: str, over: str, per_game: dict[str, dict[str, list[float]]], pool: list[str],
          unseen: list[str], kind: str = "over previous stage") -> dict[str, Any]:
    out: dict[str, Any] = {"agent": agent, "over": over, "kind": kind}
    for group, cols in (("pool", pool), ("unseen", unseen)):
        if cols:
            a = np.concatenate([per_game[agent][c] for c in cols])
            b = np.concatenate([per_game[over][c] for c in cols])
            out[group] = paired(a, b)
    return out


def _interval(d: dict[str, float]) -> str:
    return f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"


def evolution_words(results: dict[str, Any]) -> list[str]:
    """Each stage's gain over the previous one (and over its teacher) in words: the paired mean difference
    in score per game on the pool and on the unseen opponents, each with its 95% interval."""
    out = []
    for g in results.get("gains", []):
        over = f"over {g['over']}" if g["kind"] == "over previous stage" else f"over its teacher {g['over']}"
        text = f"{g['agent']} {over}: pool {_interval(g['pool'])}"
        if g.get("unseen"):
            text += f", unseen {_interval(g['unseen'])}"
        out.append(text + f" points per game (95% CI, {g['pool']['games']} paired games)")
    return out


class EvaluateStage(StageKind):
    """``kind: evaluate``: the chain's agents, random and the scripted strategies on the same games."""

    name = kind = "evaluate"
    config = EvaluateConfig
    makes_checkpoint = False
    takes_init = False

    def run(self, cfg: EvaluateConfig, ctx: StageContext) -> dict[str, Any]:
        return run_evaluate(cfg, ctx)

    def env(self, data: dict[str, Any]) -> dict[str, Any] | None:
        return data.get("env")

    def length(self, results: dict[str, Any]) -> int:
        return 0


STAGE = EvaluateStage()
