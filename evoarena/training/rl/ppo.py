"""Stage ``train``: multi-agent PPO over ``num_envs`` copies of a world (CleanRL-shaped: the loop is
:func:`run_ppo`).

Seats (:mod:`evoarena.training.rl.seats`) map agents to learner policies, fixed agents, or weighted opponent
pools with snapshots of the learners. Each update: collect whole episodes (:mod:`evoarena.training.rl.rollout`),
compute advantages per decision stream, then PPO epochs per learner (:mod:`evoarena.training.rl.update`:
clipped surrogate, value loss, entropy bonus, KL penalty to a reference policy, target-KL early stop, gradient
clipping) under a linear LR decay. Logs to TensorBoard; evaluates greedy learners against named opponents and
keeps the best as ``best``; checkpoints atomically (:mod:`evoarena.training.rl.learners`); SIGINT saves and
prints the resume command; ``--resume`` continues to ``total_updates`` on one step axis. ``ppo.backend: sb3``
runs sb3-contrib's MaskablePPO instead (:mod:`evoarena.training.rl.sb3_backend`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from evoarena.config import ConfigError, PPOConfig, TrainConfig
from evoarena.training.infra import runs
from evoarena.training.infra.progress import progress_bar
from evoarena.training.protocol import StageContext
from evoarena.training.rl.league import League, exploiter_names
from evoarena.training.rl.learners import (
    blend_into,
    build_exploiter,
    build_learner,
    check_devices,
    drop_cached_outputs,
    frozen_copy,
    learner_ppo,
    load_training_checkpoint,
    prepare_for_rl,
    reference_policies,
    save_policies,
    save_training_checkpoint,
    stage_setup,
)
from evoarena.training.rl.ppo_records import (
    TrainerState,
    evaluate,
    log_hparams,
    log_perf,
    new_best,
    ppo_results,
    ppo_summary,
    record_eval,
)
from evoarena.training.rl.rollout import Rollout, RolloutResult, log_rollout
from evoarena.training.rl.seats import EXPLOITER_START, START, SeatPlanner
from evoarena.training.rl.update import ppo_update

MAX_NAN_UPDATES = 3
AVERAGE = "average_"  #: snapshot key prefix of the mains' weight averages


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. non-finite losses several updates in a row)."""


# --------------------------------------------------------------------------- the stage


@dataclass
class Trainer:
    """Everything a PPO run carries from update to update (built or resumed by :func:`start`)."""

    cfg: TrainConfig
    ctx: StageContext
    agents: list[str]
    roles: dict[str, str]
    learners: dict[str, Any]
    optimizers: dict[str, torch.optim.Optimizer]
    pcs: dict[str, PPOConfig]
    references: dict[str, Any]
    stored_stats: dict[str, bool]
    snapshots: dict[str, list[tuple[int, Any]]]
    planner: SeatPlanner
    rollout: Rollout
    rng: np.random.Generator
    state: TrainerState
    writer: Any = None
    last_summary: dict[str, float] = field(default_factory=dict)
    league: League | None = None

    def checkpoint(self, update: int, name: str = "checkpoint") -> None:
        """The learners, optimizers, snapshots and every random state, as ``stage/NAME``."""
        s = self.state
        s.update, s.rollout, s.update_rng = update, self.rollout.state(), self.rng.bit_generator.state
        s.torch_rng, s.seats = torch.get_rng_state().tolist(), self.planner.state()
        if self.league is not None:
            s.league = self.league.state()
        self.writer.flush()  # what was logged up to this checkpoint is on disk before the checkpoint is
        save_training_checkpoint(self.ctx.stage_dir, self.learners, self.optimizers, s.to_json(), self.snapshots,
                                 name=name)
        drop_cached_outputs([*self.learners.values(), *self.references.values(),
                             *(s for pool in self.snapshots.values() for _, s in pool)])

    def averages(self) -> dict[str, Any]:
        """Each main's weight average so far (``average_from``), by main."""
        return {k[len(AVERAGE):]: pool[0][1] for k, pool in self.snapshots.items() if k.startswith(AVERAGE) and pool}

    def run_eval(self, update: int) -> dict[str, Any]:
        """Greedy learners against the eval opponents; a new best score is checkpointed as ``best``. Weight
        averages, once they exist, play the same games (``eval_averaged/score``)."""
        res = evaluate(self.cfg, self.learners, self.agents, self.roles)
        record_eval(self.writer, self.state, update, res)
        if self.averages():
            avg = evaluate(self.cfg, self.averages(), self.agents, self.roles)
            self.writer.add_scalar("eval_averaged/score", avg["score"], update)
            self.state.averaged_evals.append({"update": update, "score": avg["score"]})
        if new_best(self.state, update, res):
            self.checkpoint(update, name="best")
        return res


def uses_start(cfg: TrainConfig) -> bool:
    """Whether a pool of ``cfg`` has a ``start`` entry (the learner's starting weights as an opponent)."""
    return any(e.agent == "start" for s in cfg.seats.values() for e in s.pool or [])


def start(cfg: TrainConfig, ctx: StageContext) -> Trainer:
    """A new run's learners (built or from ``init_from``), or a resumed run's from its checkpoint, with their
    optimizers, references, seat planner, rollout and random states."""
    stage, agents, roles = stage_setup(cfg, ctx)
    torch.manual_seed(cfg.seed)
    snapshots: dict[str, list[tuple[int, Any]]] = {}
    if ctx.resume and (stage / "checkpoint" / "trainer_state.json").is_file():
        learners, optim_states, data, snapshots = load_training_checkpoint(stage, cfg)
        state = TrainerState.from_json(data)
        # the order of a fresh start (the checkpoint's folders come sorted): updates draw from one generator in turn
        extra = list(exploiter_names(list(cfg.policies), cfg.league.exploiters)) if cfg.league else []
        order = [n for n in [*cfg.policies, *extra] if n in learners]
        learners = {n: learners[n] for n in [*order, *(n for n in learners if n not in order)]}
    else:
        learners = {name: build_learner(cfg, name, agents) for name in cfg.policies}
        for name, lc in cfg.policies.items():
            if lc.init_temperature != 1.0:
                learners[name].soften(lc.init_temperature)
        if cfg.league is not None or uses_start(cfg):  # kept: the exploiters' reset point, the `start` partner
            snapshots[START] = [(i, frozen_copy(learners[m])) for i, m in enumerate(cfg.policies)]
        if cfg.league is not None:  # the exploiters start as their main does, or fresh as their own learner
            exploiters = exploiter_names(list(cfg.policies), cfg.league.exploiters)
            for name, main in exploiters.items():
                learners[name] = build_exploiter(cfg, main, learners, agents)
            if cfg.league.exploiter is not None:  # their reset point
                snapshots[EXPLOITER_START] = [(i, frozen_copy(learners[n])) for i, n in enumerate(exploiters)]
        optim_states, state = {}, TrainerState()
    for policy in learners.values():
        prepare_for_rl(policy)
    pcs = {name: learner_ppo(cfg, lc) for name, lc in cfg.policies.items()}
    if cfg.league is not None:
        own = learner_ppo(cfg, cfg.league.exploiter) if cfg.league.exploiter is not None else None
        pcs.update({e: pcs[m] if own is None else own
                    for e, m in exploiter_names(list(cfg.policies), cfg.league.exploiters).items()})
    references = reference_policies(cfg, stage, learners, pcs)
    check_devices(learners, references, snapshots)
    stored_stats = {name: policy.standardizes and (pcs[name].standardize_stats == "stored" or (
        pcs[name].standardize_stats == "auto" and bool(policy.std_ready))) for name, policy in learners.items()}
    optimizers = {}
    for name, policy in learners.items():
        params = [p for p in policy.parameters() if p.requires_grad]
        optimizers[name] = torch.optim.Adam(params, lr=pcs[name].lr, eps=pcs[name].adam_eps)
        if optim_states.get(name):
            optimizers[name].load_state_dict(optim_states[name])
    planner = SeatPlanner(cfg, agents, roles, learners, snapshots, cfg.seed)
    league = None
    if cfg.league is not None:
        anchors = [e.agent for s in cfg.seats.values() for e in (s.pool or []) if e.agent not in ("self", "snapshot")]
        # (`start` stays an anchor: the planner plays it as the drawing main's own starting weights)
        planner.league = league = League(cfg.league, list(cfg.policies), list(dict.fromkeys(anchors)), snapshots,
                                         cfg.seed)
    rollout = Rollout(cfg.env.id, cfg.env.kwargs, min(cfg.num_envs, cfg.episodes_per_update), learners, planner,
                      seed=cfg.seed, record_transcripts=cfg.transcript_every > 0)
    rng = np.random.default_rng(cfg.seed + 1)
    if state.rollout:
        rollout.load_state(state.rollout)
        rng.bit_generator.state = state.update_rng
        torch.set_rng_state(torch.tensor(state.torch_rng, dtype=torch.uint8))
        planner.load_state(state.seats or {})
        if league is not None:
            league.load_state(state.league or {})
    return Trainer(cfg, ctx, agents, roles, learners, optimizers, pcs, references, stored_stats, snapshots,
                   planner, rollout, rng, state, league=league)


def learn(t: Trainer, result: RolloutResult, update: int) -> tuple[dict[str, dict[str, float]], bool]:
    """Advantages and PPO epochs for every learner's batch of this update; (stats per learner, any NaN)."""
    cfg, state = t.cfg, t.state
    frac = 1.0 - (update - 1) / cfg.total_updates
    stats: dict[str, dict[str, float]] = {}
    nan_this = False
    for name, batch in result.batches.items():
        pc = t.pcs[name]
        if len(batch) == 0:
            continue
        if t.stored_stats[name]:
            # statistics of this rollout's texts, fixed for the update: every minibatch (and the next rollout)
            # sees the same function, so ratios start at exactly 1
            ref = t.references.get(name)
            if ref is not None and not bool(ref.std_ready):
                ref.calibrate(batch.obs, seed=cfg.seed)  # once: the reference stays fixed
            t.learners[name].calibrate(batch.obs, seed=cfg.seed + update)
            batch.refresh(t.learners[name])
        if pc.advantage == "baseline":
            base = state.baselines.get(name)
            if base is None:  # first update: the batch's own mean return starts the running mean
                batch.finish(pc.gamma, pc.gae_lambda, "baseline", 0.0)
                base = float(np.mean(batch.returns))
            batch.finish(pc.gamma, pc.gae_lambda, "baseline", base)
            mean_ret = float(np.mean(batch.returns))
            state.baselines[name] = pc.baseline_momentum * base + (1 - pc.baseline_momentum) * mean_ret
        else:
            batch.finish(pc.gamma, pc.gae_lambda)
        lr = pc.lr * (frac if pc.lr_decay else 1.0)
        for g in t.optimizers[name].param_groups:
            g["lr"] = lr
        s = ppo_update(t.learners[name], t.optimizers[name], batch, pc, t.references.get(name), t.rng)
        s["lr"] = lr
        stats[name] = s
        nan_this |= s["nan_skipped"] > 0
    return stats, nan_this


def log_update(t: Trainer, update: int, result: RolloutResult, stats: dict[str, dict[str, float]],
               times: tuple[float, float, float]) -> float:
    """train/, rollout/ and perf/ scalars (and a transcript) of one update; returns its decisions per second."""
    t_start, cpu_start, learn_s = times
    writer = t.writer
    for name, s in stats.items():
        for k, v in s.items():
            writer.add_scalar(f"train/{name}/{k}", v, update)
    t.last_summary = log_rollout(writer, update, t.learners, result.episodes)
    if t.league is not None:
        t.league.log(writer, update)
    total_s = time.perf_counter() - t_start
    log_perf(writer, update, time.process_time() - cpu_start,
             {"env": result.env_seconds, "forward": result.forward_seconds,
              "tokenize": result.tokenize_seconds, "learn": learn_s},  # tokenize: part of forward
             result.decisions / max(total_s, 1e-9), t.state.decisions)
    if t.cfg.transcript_every and update % t.cfg.transcript_every == 0:
        text = next((r.transcript for r in result.episodes if r.transcript), None)
        if text:
            writer.add_text("episodes/transcript", f"```\n{text}\n```", update)
    return result.decisions / max(total_s, 1e-9)


def average_weights(t: Trainer, update: int) -> None:
    """From update ``average_from * total_updates`` on, fold each main's weights into its running average (kept
    as the snapshot ``average_NAME`` whose number is the count of updates averaged)."""
    if t.cfg.average_from is None or update <= int(t.cfg.average_from * t.cfg.total_updates):
        return
    for name in t.cfg.policies:
        pool = t.snapshots.setdefault(f"{AVERAGE}{name}", [])
        if not pool:
            pool.append((1, frozen_copy(t.learners[name])))
            continue
        count, average = pool[0]
        blend_into(average, t.learners[name], count)
        pool[0] = (count + 1, average)


def take_snapshots(t: Trainer, update: int) -> None:
    """Snapshots of the mains every ``snapshot_every`` updates; with a league, frozen members every ``add_every``
    and the exploiters reset (weights and optimizer) to their main's start every ``exploiter_reset_every``."""
    league = t.league
    if t.cfg.snapshot_every and update % t.cfg.snapshot_every == 0:
        for name in t.cfg.policies:
            pool = t.snapshots.setdefault(name, [])
            pool.append((update, frozen_copy(t.learners[name])))
            del pool[:-t.cfg.snapshot_pool_size]
    if league is None:
        return
    if update % league.lc.add_every == 0:
        league.add_frozen(update, t.learners)
    if update % league.lc.exploiter_reset_every == 0:
        for name in league.exploiters:
            t.learners[name].load_state_dict(league.reset_weights(name).state_dict())
            pc = t.pcs[name]
            params = [p for p in t.learners[name].parameters() if p.requires_grad]
            t.optimizers[name] = torch.optim.Adam(params, lr=pc.lr, eps=pc.adam_eps)


def resumed_update(t: Trainer) -> int:
    """The update the run continues after (0 for a new run). A finished run resumed with a larger ``total_updates``
    continues from its final checkpoint: its final evaluation belonged to the shorter run and is taken again, with
    the final checkpoint, at the new last update. A checkpoint beyond ``total_updates`` is an error."""
    done, total = int(t.state.update), t.cfg.total_updates
    if done > total:
        raise ConfigError(f"total_updates = {total}: the checkpoint in {t.ctx.stage_dir / 'checkpoint'} is already at "
                          f"update {done}; resume with total_updates >= {done}")
    if done < total:
        t.state.final_eval = None
    return done


def run_ppo(cfg: TrainConfig, ctx: StageContext) -> dict[str, Any]:
    """Run (or resume) the PPO stage in ``ctx``; returns the results written to results.json."""
    t = start(cfg, ctx)
    start_update = resumed_update(t)
    t.writer = ctx.writer(purge_step=runs.resume_purge_step(ctx.resume, start_update))
    if not start_update:
        t.writer.add_text("config", f"```\n{json.dumps(cfg.model_dump(mode='json'), indent=1)}\n```", 0)
    if not start_update and cfg.eval.every:
        t.run_eval(0)  # the starting policy's score (the clone's, in a chain): the baseline of the curve
    interrupted = False
    with runs.StopOnInterrupt() as stop, progress_bar(ctx.describe("ppo"), cfg.total_updates, completed=start_update,
                                            unit="updates", enabled=ctx.progress) as bar:
        for update in range(start_update + 1, cfg.total_updates + 1):
            t_start, cpu_start = time.perf_counter(), time.process_time()
            for policy in t.learners.values():
                policy.eval()
            result = t.rollout.collect(cfg.episodes_per_update)
            if t.league is not None:
                t.league.record(result.episodes)
            t_learn = time.perf_counter()
            stats, nan_this = learn(t, result, update)
            learn_s = time.perf_counter() - t_learn
            t.state.nan_streak = t.state.nan_streak + 1 if nan_this else 0
            t.state.decisions += result.decisions
            t.state.episodes += len(result.episodes)
            rate = log_update(t, update, result, stats, (t_start, cpu_start, learn_s))
            if t.state.nan_streak >= MAX_NAN_UPDATES:
                t.writer.close()
                raise TrainingError(f"non-finite loss in {MAX_NAN_UPDATES} updates in a row (last: update "
                                    f"{update}); stopped. The last good checkpoint is {ctx.stage_dir / 'checkpoint'}")
            average_weights(t, update)
            take_snapshots(t, update)
            if cfg.eval.every and update % cfg.eval.every == 0 and update < cfg.total_updates:
                t.run_eval(update)
            # the last update's checkpoint is written after the final evaluation (below), so a resume never
            # evaluates the last update twice
            if not nan_this and update < cfg.total_updates and (update % cfg.checkpoint_every == 0
                                                                 or stop.requested):
                t.checkpoint(update)
            info = ", ".join(f"return {k} {v:.1f}" for k, v in t.last_summary.items())
            bar(1, info=f"{info}, {rate:.0f} decisions/s")
            if stop.requested and update < cfg.total_updates:
                interrupted = True
                break
    if interrupted:
        t.writer.close()
        print(f"ppo: interrupted after update {t.state.update}; checkpoint saved in {ctx.stage_dir / 'checkpoint'}")
        raise KeyboardInterrupt
    return finish(t)


def finish(t: Trainer) -> dict[str, Any]:
    """The final evaluation and checkpoint (once: a run resumed after them keeps them), hparams, results."""
    cfg, state, writer = t.cfg, t.state, t.writer
    if state.final_eval is None:
        state.final_eval = t.run_eval(cfg.total_updates)
        t.checkpoint(cfg.total_updates)
    final_eval = state.final_eval
    metrics = {"hparam/final_score": final_eval["score"],
               **{f"hparam/return_{k}": v for k, v in t.last_summary.items()}}
    log_hparams(writer, cfg, cfg.total_updates, metrics, kl_coef=cfg.ppo.kl_coef)
    writer.close()
    stage = t.ctx.stage_dir
    results = ppo_results(cfg, stage, state, cfg.total_updates, final_eval, t.last_summary)
    if t.league is not None:
        results["league"] = t.league.describe()
    if t.averages():
        save_policies(stage / "averaged", t.averages())
        count = next(c for k, pool in t.snapshots.items() if k.startswith(AVERAGE) for c, _ in pool)
        results.update(averaged_checkpoint=str(stage / "averaged"), averaged_updates=count,
                       averaged_evals=state.averaged_evals)
    results["summary"] = ppo_summary(results)
    t.ctx.write_results(results)
    return results
