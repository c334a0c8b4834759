"""What both PPO backends (:mod:`evoarena.training.rl.ppo`, :mod:`evoarena.training.rl.sb3_backend`) record: the
trainer state (:class:`TrainerState`, ``trainer_state.json``), greedy evaluations while training and which one is
the best (its checkpoint is ``best``), the ``perf/`` scalars of an update, the run's hparams, the results written
to ``results.json`` and their summary line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from evoarena.agents import spec_tag
from evoarena.agents.learned import PolicyAgent
from evoarena.agents.match import play
from evoarena.config import TrainConfig
from evoarena.training.rl.seats import seat_of

# --------------------------------------------------------------------------- the trainer state


@dataclass
class TrainerState:
    """What a PPO run carries from update to update besides weights, written as ``trainer_state.json`` of its
    checkpoints (:meth:`to_json`; the keys of the dict the stage used to write, in its order) and read back on
    ``--resume`` (:meth:`from_json`: a key an older run lacks takes its default; one this class does not know is
    kept and written again)."""

    update: int = 0  #: updates done
    decisions: int = 0  #: learner decisions collected so far
    episodes: int = 0  #: episodes collected so far
    nan_streak: int = 0  #: updates in a row with a non-finite loss
    baselines: dict[str, float] = field(default_factory=dict)  #: learner -> running mean return (advantage: baseline)
    best_score: float | None = None  #: the best greedy eval score so far
    evals: list[dict[str, Any]] = field(default_factory=list)  #: every greedy evaluation, with its update
    best_update: int | None = None  #: the update of ``best_score``
    rollout: dict[str, Any] | None = None  #: the rollout's state (env seeds, episode counter)
    update_rng: dict[str, Any] | None = None  #: the minibatch generator's bit-generator state
    torch_rng: list[int] | None = None  #: torch's CPU random state
    seats: dict[str, Any] | None = None  #: the seat planner's state
    league: dict[str, Any] | None = None  #: the league's state (with a ``league:`` block)
    averaged_evals: list[dict[str, Any]] = field(default_factory=list)  #: the weight averages' eval scores
    final_eval: dict[str, Any] | None = None  #: the evaluation after the last update (once done)
    backend: str | None = None  #: ``sb3`` for that backend's runs
    extra: dict[str, Any] = field(default_factory=dict)  #: keys of a trainer_state.json this class does not know

    #: written even when None or empty (the others are left out then, as the stage always did)
    ALWAYS = ("update", "decisions", "episodes", "nan_streak", "baselines", "best_score", "evals")

    def to_json(self) -> dict[str, Any]:
        """The JSON data of ``trainer_state.json``."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out = {k: v for k, v in out.items() if k in self.ALWAYS or v not in (None, [])}
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainerState:
        """The state a ``trainer_state.json`` holds."""
        names = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in data.items() if k in names},
                   extra={k: v for k, v in data.items() if k not in names})


# --------------------------------------------------------------------------- evaluation while training


def eval_matchups(cfg: TrainConfig, agents: list[str], roles: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """(label, agent -> "learner:NAME" | spec) for every opponent and seat order of the eval config."""
    base = {a: seat_of(a, cfg.seats) for a in agents}
    learner_seats = {a: s.policy for a, s in base.items() if s.policy}
    others = [a for a in agents if a not in learner_seats]
    opponents = cfg.eval.opponents or ([""] if not others else [])
    if not opponents and others:
        fixed = [base[a].agent for a in others if base[a].agent]
        opponents = fixed[:1]
    out = []
    for opp in opponents:
        seats = {a: f"learner:{p}" for a, p in learner_seats.items()}
        for a in others:
            seats[a] = opp
        label = opp or "self"
        out.append((label, seats))
        if cfg.eval.both_seats and len(agents) == 2 and others and roles[agents[0]] == roles[agents[1]]:
            out.append((f"{label}/swapped", {agents[0]: seats[agents[1]], agents[1]: seats[agents[0]]}))
    return out


def evaluate(cfg: TrainConfig, learners: dict[str, Any], agents: list[str], roles: dict[str, str]
             ) -> dict[str, Any]:
    """Greedy learners against every eval opponent, both seat orders; per opponent the learners' mean
    return and the world's metrics, plus ``score``: the learners' mean return over all matches."""
    results: dict[str, Any] = {}
    scores = []
    for label, seats in eval_matchups(cfg, agents, roles):
        objs: dict[str, Any] = {}
        for a, who in seats.items():
            if who.startswith("learner:"):
                name = who.split(":", 1)[1]
                objs[a] = PolicyAgent(learners[name], greedy=cfg.eval.greedy, seed=cfg.eval.seed, name=name)
            else:
                objs[a] = who
        res = play(cfg.env.id, objs, episodes=cfg.eval.episodes, seed=cfg.eval.seed, env_kwargs=cfg.env.kwargs,
                   num_envs=min(256, cfg.eval.episodes))
        learner_agents = [a for a, w in seats.items() if w.startswith("learner:")]
        ret = float(np.mean([res.returns[a].mean() for a in learner_agents]))
        scores.append(ret)
        results[label] = {"learner_return": ret, **res.mean_metrics()}
    results["score"] = float(np.mean(scores)) if scores else float("nan")
    return results


def eval_tag(label: str) -> str:
    """The TensorBoard group of an eval matchup label: the opponent spelt by :func:`spec_tag` as in every
    stage (``scripted:tit_for_tat/swapped`` -> ``scripted_tit_for_tat/swapped``)."""
    base, swapped = (label[: -len("/swapped")], "/swapped") if label.endswith("/swapped") else (label, "")
    return spec_tag(base) + swapped


def log_eval(writer: Any, step: int, res: dict[str, Any]) -> None:
    """eval/<opponent>/<metric> and eval/score of an :func:`evaluate` result (the learner's evaluations
    while training; the evaluate stage's rows are under ``evaluate/``)."""
    for label, vals in res.items():
        if isinstance(vals, dict):
            for k, v in vals.items():
                writer.add_scalar(f"eval/{eval_tag(label)}/{k}", v, step)
    writer.add_scalar("eval/score", res["score"], step)


def record_eval(writer: Any, state: TrainerState, update: int, res: dict[str, Any]) -> None:
    """Log an :func:`evaluate` result of ``update`` and append it to ``state.evals``."""
    log_eval(writer, update, res)
    state.evals.append({"update": update, **res})


def new_best(state: TrainerState, update: int, res: dict[str, Any]) -> bool:
    """Whether ``res`` beats ``state``'s best score (the first evaluation always does); if so it becomes the best
    (``best_score``, ``best_update``) and the caller saves the checkpoint ``best``."""
    if state.best_score is not None and not res["score"] > state.best_score:
        return False
    state.best_score, state.best_update = res["score"], update
    return True


# --------------------------------------------------------------------------- scalars and results


def log_perf(writer: Any, update: int, cpu_seconds: float, seconds: dict[str, float], decisions_per_second: float,
             decisions: int) -> None:
    """An update's ``perf/`` scalars: ``cpu_seconds`` (this process, all threads), ``NAME_seconds`` of each
    phase in ``seconds``, ``decisions_per_second`` and ``decisions`` (so far)."""
    writer.add_scalar("perf/cpu_seconds", cpu_seconds, update)
    for phase, value in seconds.items():
        writer.add_scalar(f"perf/{phase}_seconds", value, update)
    writer.add_scalar("perf/decisions_per_second", decisions_per_second, update)
    writer.add_scalar("perf/decisions", decisions, update)


def log_hparams(writer: Any, cfg: TrainConfig, total_updates: int, metrics: dict[str, float], **extra: Any) -> None:
    """The run's hparams (the world, seed, lr, ent_coef, ``extra``, episodes per update, updates) with
    ``metrics`` (a non-finite one as 0), under the run name ``hparams``."""
    hparams = {"env": cfg.env.id, "seed": cfg.seed, "lr": cfg.ppo.lr, "ent_coef": cfg.ppo.ent_coef, **extra,
               "episodes_per_update": cfg.episodes_per_update, "total_updates": total_updates}
    writer.add_hparams(hparams, {k: (v if math.isfinite(v) else 0.0) for k, v in metrics.items()}, run_name="hparams")


def ppo_results(cfg: TrainConfig, stage: Path, state: TrainerState, updates: int, final_eval: dict[str, Any],
                rollout_return: dict[str, float], **extra: Any) -> dict[str, Any]:
    """The results of a finished PPO stage (both backends; ``extra`` keys added, the summary line not yet):
    counts, the evaluations and the best one, the last rollout returns, the checkpoints and which one is handed
    on."""
    return {"updates": updates, "decisions": state.decisions, "episodes": state.episodes,
            "final_eval": final_eval, "best_score": state.best_score, "best_update": state.best_update,
            "evals": state.evals, "rollout_return": rollout_return, **extra,
            "checkpoint": str(stage / "checkpoint"), "best_checkpoint": str(stage / "best"), "hand_on": cfg.hand_on}


def ppo_summary(results: dict[str, Any]) -> str:
    """One line a person reads: updates and episodes, then the greedy eval score (the learners' mean return
    against the eval opponents) at update 0, at the end, and its best with the update it came at."""
    evals = results.get("evals") or []
    line = f"PPO {results['updates']} updates, {results['episodes']:,} episodes; eval score (mean return vs the " \
           f"eval opponents)"
    if evals and evals[0].get("update") == 0:
        line += f" {evals[0]['score']:.2f} at update 0 ->"
    line += f" {results['final_eval']['score']:.2f} at update {results['updates']}"
    if results.get("best_update") is not None:
        handed = {"final": "; the final update is handed on", "averaged": ""}.get(results.get("hand_on"), "")
        line += f"; best {results['best_score']:.2f} at update {results['best_update']} (the checkpoint `best`{handed})"
    averaged = results.get("averaged_evals") or []
    if averaged:
        handed = " (handed on)" if results.get("hand_on") == "averaged" else ""
        line += (f"; the average of the last {results['averaged_updates']} updates' weights{handed} "
                 f"{averaged[-1]['score']:.2f}")
    return line
