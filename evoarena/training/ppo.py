"""Stage ``train``: multi-agent PPO over ``num_envs`` copies of a world.

Seats map agents (by name or pattern) to learner policies, fixed agents, or weighted opponent
pools (scripted strategies, ``self``, ``snapshot``: frozen copies of a learner taken every
``snapshot_every`` updates — fictitious self-play). Each update: collect whole episodes
(:mod:`evoarena.training.rollout`), compute advantages per decision stream, then PPO epochs per
learner (clipped surrogate, value loss, entropy bonus, KL penalty to a reference policy,
target-KL early stop, gradient clipping, linear LR decay). Logs to TensorBoard; evaluates greedy
learners against named opponents; checkpoints atomically; SIGINT saves and prints the resume
command; ``--resume`` continues to ``total_updates`` on one step axis.
"""

from __future__ import annotations

import copy
import json
import math
import signal
import time
from collections import defaultdict
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evoarena.agents import make_agent, spec_tag
from evoarena.agents.learned import PolicyAgent
from evoarena.agents.match import play
from evoarena.config import LearnerConfig, PPOConfig, SeatConfig, TrainConfig
from evoarena.envs import make
from evoarena.policies.actor_critic import build_policy
from evoarena.policies.encoder import TRAIN_MODE_KEYS
from evoarena.policies.io import load_optimizer_state, load_policy, save_checkpoint
from evoarena.storage import atomic_dir, read_json
from evoarena.training import runs
from evoarena.training.ppo_math import (
    clipped_policy_loss,
    explained_variance,
    masked_entropy,
    masked_kl,
    masked_log_softmax,
    normalize,
    value_loss,
)
from evoarena.training.progress import progress_bar
from evoarena.training.rollout import Assignment, LearnerBatch, Rollout

STAGE = "ppo"
MAX_NAN_UPDATES = 3


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. non-finite losses several updates in a row)."""


# --------------------------------------------------------------------------- seats


def seat_of(agent: str, seats: dict[str, SeatConfig]) -> SeatConfig:
    """The seat config of ``agent``: an exact name wins over a pattern; patterns in config order."""
    if agent in seats:
        return seats[agent]
    for pattern, seat in seats.items():
        if fnmatch(agent, pattern):
            return seat
    raise KeyError(f"agent {agent!r} has no seat")


def agent_rng_state(agent: Any) -> Any:
    """The random state of a fixed agent as JSON (numpy ``rng`` or torch ``generator``), or None."""
    if isinstance(getattr(agent, "rng", None), np.random.Generator):
        return {"numpy": agent.rng.bit_generator.state}
    if isinstance(getattr(agent, "generator", None), torch.Generator):
        return {"torch": agent.generator.get_state().tolist()}
    return None


def set_agent_rng_state(agent: Any, state: Any) -> None:
    """Restore what :func:`agent_rng_state` returned."""
    if state and "numpy" in state:
        agent.rng.bit_generator.state = state["numpy"]
    elif state and "torch" in state:
        agent.generator.set_state(torch.tensor(state["torch"], dtype=torch.uint8))


class SeatPlanner:
    """Draws who fills every seat for one episode (a swap happens only between episodes). Its fixed and
    snapshot agents' random states are part of a checkpoint (:meth:`state`), so a resumed run plays on as
    the uninterrupted one would."""

    def __init__(self, cfg: TrainConfig, agents: list[str], roles: dict[str, str], learners: dict[str, Any],
                 snapshots: dict[str, list[tuple[int, Any]]], seed: int) -> None:
        self.cfg, self.agents, self.roles = cfg, agents, roles
        self.learners, self.snapshots = learners, snapshots
        self.fixed: dict[str, Any] = {}
        self.snapshot_agents: dict[tuple[str, int], PolicyAgent] = {}
        self.seed = seed

    def _home_learner(self, agent: str) -> str:
        """The learner a ``self``/``snapshot`` entry in ``agent``'s pool refers to (same role first)."""
        for other in self.agents:
            s = seat_of(other, self.cfg.seats)
            if s.policy and self.roles[other] == self.roles[agent]:
                return s.policy
        return next(s.policy for s in (seat_of(a, self.cfg.seats) for a in self.agents) if s.policy)

    def _agent(self, spec: str) -> Any:
        if spec not in self.fixed:
            self.fixed[spec] = make_agent(spec, self.cfg.env.id, seed=self.seed + len(self.fixed))
        return self.fixed[spec]

    def _snapshot_agent(self, learner: str, rng: np.random.Generator) -> Assignment:
        pool = self.snapshots.get(learner, [])
        if not pool:
            return ("learner", learner)
        update, policy = pool[int(rng.integers(len(pool)))]
        key = (learner, update)
        if key not in self.snapshot_agents:
            self.snapshot_agents = {k: v for k, v in self.snapshot_agents.items() if any(
                u == k[1] for u, _ in self.snapshots.get(k[0], []))}
            self.snapshot_agents[key] = PolicyAgent(policy, greedy=False, seed=self.seed + update,
                                                    name=f"snapshot:{learner}@{update}")
        return ("agent", self.snapshot_agents[key])

    def state(self) -> dict[str, Any]:
        return {"fixed": [[spec, agent_rng_state(a)] for spec, a in self.fixed.items()],
                "snapshots": [[learner, update, agent_rng_state(a)]
                              for (learner, update), a in self.snapshot_agents.items()]}

    def load_state(self, state: dict[str, Any]) -> None:
        for spec, rng_state in state.get("fixed", []):
            set_agent_rng_state(self._agent(spec), rng_state)
        for learner, update, rng_state in state.get("snapshots", []):
            policy = next((p for u, p in self.snapshots.get(learner, []) if u == update), None)
            if policy is not None:
                self.snapshot_agents[(learner, update)] = agent = PolicyAgent(
                    policy, greedy=False, seed=self.seed + update, name=f"snapshot:{learner}@{update}")
                set_agent_rng_state(agent, rng_state)

    def resolve(self, agent: str, seat: SeatConfig, rng: np.random.Generator) -> Assignment:
        if seat.policy:
            return ("learner", seat.policy)
        if seat.agent:
            return ("agent", self._agent(seat.agent))
        entries = seat.pool or []
        w = np.array([e.weight for e in entries], dtype=np.float64)
        entry = entries[int(rng.choice(len(entries), p=w / w.sum()))]
        if entry.agent == "self":
            return ("learner", self._home_learner(agent))
        if entry.agent == "snapshot":
            return self._snapshot_agent(self._home_learner(agent), rng)
        return ("agent", self._agent(entry.agent))

    def __call__(self, rng: np.random.Generator) -> dict[str, Assignment]:
        configs = {a: seat_of(a, self.cfg.seats) for a in self.agents}
        if self.cfg.shuffle_seats:
            by_role: dict[str, list[str]] = defaultdict(list)
            for a in self.agents:
                by_role[self.roles[a]].append(a)
            for members in by_role.values():
                perm = rng.permutation(len(members))
                shuffled = [configs[members[i]] for i in perm]
                for a, s in zip(members, shuffled):
                    configs[a] = s
        return {a: self.resolve(a, configs[a], rng) for a in self.agents}


# --------------------------------------------------------------------------- learners


def learner_ppo(cfg: TrainConfig, learner: LearnerConfig) -> PPOConfig:
    """The stage's PPO config with the learner's overrides applied."""
    return PPOConfig.model_validate({**cfg.ppo.model_dump(), **learner.ppo})


def first_agent_of(cfg: TrainConfig, agents: list[str], policy: str) -> str:
    return next(a for a in agents if seat_of(a, cfg.seats).policy == policy)


def build_learner(cfg: TrainConfig, name: str, agents: list[str]) -> Any:
    """A learner's policy: loaded from ``init_from`` when that is an evoarena checkpoint, else built."""
    lc = cfg.policies[name]
    agent = first_agent_of(cfg, agents, name)
    init = lc.policy.init_from
    if init and (Path(init) / "policy.json").is_file():
        policy = load_policy(init)
        if policy.env_id != cfg.env.id:
            raise ValueError(f"policies.{name}.policy.init_from {init} was trained for {policy.env_id}, "
                             f"not {cfg.env.id}")
        enc = lc.policy.encoder
        if policy.encoder is not None and enc.model_fields_set & set(TRAIN_MODE_KEYS):
            policy.encoder.set_train_mode(enc)  # e.g. train only the heads of a cloned policy
            policy.cfg = policy.cfg.model_copy(update={"encoder": policy.encoder.cfg})
        return policy
    return build_policy(lc.policy, cfg.env.id, agent=agent, env_kwargs=cfg.env.kwargs)


def prepare_for_rl(policy: Any) -> Any:
    """Dropout off (rollout and update must see the same function of the weights)."""
    enc = getattr(policy, "encoder", None)
    if enc is not None and hasattr(enc, "disable_dropout"):
        enc.disable_dropout()
    for m in policy.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return policy


def drop_cached_outputs(policies: list[Any]) -> None:
    """Forget the cached encoder outputs of ``policies`` (see :meth:`TextEncoder.drop_cached_outputs`): done at
    every checkpoint, so a run resumed from it encodes exactly as the uninterrupted one."""
    for policy in policies:
        enc = getattr(policy, "encoder", None)
        if enc is not None and hasattr(enc, "drop_cached_outputs"):
            enc.drop_cached_outputs()


def frozen_copy(policy: Any) -> Any:
    """A deep copy with no gradients: snapshots and references are never views of live weights. Its encoder
    never trains, so a fully trained one is switched to ``frozen`` (its pooled outputs cached per text)."""
    twin = copy.deepcopy(policy)
    twin.eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    enc = getattr(twin, "encoder", None)
    if enc is not None and getattr(enc, "train_mode", "") == "full":
        enc.set_train_mode(enc.cfg.model_copy(update={"train_mode": "frozen"}))
    return twin


# --------------------------------------------------------------------------- update


def rollout_features(policy: Any, batch: LearnerBatch) -> tuple[torch.Tensor, ...] | None:
    """For a policy whose encoder is frozen: ``(features, obs_rows, action_rows, masks)`` of every decision of
    ``batch``, encoded once (texts the rollout saw come from the encoder's cache), which every minibatch of the
    update indexes; None for policies that must re-encode (trained encoders, MLP policies)."""
    enc = getattr(policy, "encoder", None)
    if enc is None or getattr(enc, "train_mode", "") != "frozen" or not hasattr(policy, "heads"):
        return None
    with torch.no_grad():
        feats, obs_rows, act_rows = policy.encode_obs(batch.obs)
    return feats, obs_rows, act_rows, policy.action_masks(batch.obs)


def ppo_update(policy: Any, optimizer: torch.optim.Optimizer, batch: LearnerBatch, pc: PPOConfig,
               reference: Any | None, rng: np.random.Generator) -> dict[str, float]:
    """PPO epochs over one learner's batch; returns the metrics to log (``nan_skipped`` > 0 on bad losses)."""
    n = len(batch)
    actions = torch.as_tensor(batch.actions, dtype=torch.long)
    old_logp = torch.as_tensor(batch.logp, dtype=torch.float32)
    old_v = torch.as_tensor(batch.values, dtype=torch.float32)
    adv_all = torch.as_tensor(batch.advantages, dtype=torch.float32)
    ret_all = torch.as_tensor(batch.returns, dtype=torch.float32)
    if pc.normalize_advantage:
        adv_all = normalize(adv_all)
    params = [p for p in policy.parameters() if p.requires_grad]
    sums: dict[str, float] = defaultdict(float)
    count, epochs_run, nan_skipped = 0, 0, 0
    policy.train()
    prepare_for_rl(policy)
    rollout_feats = rollout_features(policy, batch)
    stop = False
    for _ in range(pc.epochs):
        perm = rng.permutation(n)
        epoch_kl = []
        for start in range(0, n, pc.minibatch_size):
            idx = perm[start:start + pc.minibatch_size]
            obs = [batch.obs[i] for i in idx]
            ti = torch.as_tensor(idx)
            if rollout_feats is None:
                logits, values = policy.forward_obs(obs)
                mask = policy.action_masks(obs)
            else:  # frozen encoder: the rollout's features, no text encoded again
                feats, obs_rows, act_rows, masks = rollout_feats
                rows = ti.to(masks.device)
                mask = masks[rows]
                logits, values = policy.heads(feats, obs_rows[rows], None if act_rows is None else act_rows[rows],
                                              mask)
            logits, values = logits.float(), values.float()
            logp_all = masked_log_softmax(logits, mask)
            new_logp = logp_all.gather(1, actions[ti][:, None]).squeeze(1)
            pg_loss, clipfrac, approx_kl = clipped_policy_loss(new_logp, old_logp[ti], adv_all[ti], pc.clip)
            v_loss = value_loss(values, old_v[ti], ret_all[ti], pc.value_clip)
            entropy = masked_entropy(logits, mask).mean()
            loss = pg_loss + pc.vf_coef * v_loss - pc.ent_coef * entropy
            kl_ref = torch.zeros(())
            if reference is not None:
                with torch.no_grad():
                    ref_logits, _ = reference.forward_obs(obs)
                kl_ref = masked_kl(logits, ref_logits.float(), mask).mean()
                if pc.kl_coef > 0:
                    loss = loss + pc.kl_coef * kl_ref
            if not torch.isfinite(loss):
                nan_skipped += 1
                optimizer.zero_grad(set_to_none=True)
                stop = True
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, pc.max_grad_norm)
            optimizer.step()
            for k, v in (("policy_loss", pg_loss), ("value_loss", v_loss), ("entropy", entropy),
                         ("approx_kl", approx_kl), ("clipfrac", clipfrac), ("kl_ref", kl_ref),
                         ("grad_norm", grad_norm)):
                sums[k] += float(v.detach()) if torch.is_tensor(v) else float(v)
            count += 1
            epoch_kl.append(float(approx_kl))
        epochs_run += 1
        if stop or (pc.target_kl is not None and epoch_kl and float(np.mean(epoch_kl)) > pc.target_kl):
            break
    out = {k: v / max(count, 1) for k, v in sums.items()}
    out.update(epochs=epochs_run, nan_skipped=nan_skipped, decisions=n,
               explained_variance=explained_variance(np.asarray(batch.values), np.asarray(batch.returns)),
               advantage_mean=float(np.mean(batch.advantages)) if n else 0.0)
    return out


# --------------------------------------------------------------------------- evaluation


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


# --------------------------------------------------------------------------- checkpoints


def save_training_checkpoint(stage: Path, learners: dict[str, Any], optimizers: dict[str, Any],
                             state: dict[str, Any], snapshots: dict[str, list[tuple[int, Any]]],
                             name: str = "checkpoint") -> Path:
    """All learners (+ optimizer states), the snapshot pool and the trainer state, as one folder
    written to a temporary sibling and renamed into place."""
    final = stage / name
    with atomic_dir(final) as tmp:
        for pname, policy in learners.items():
            save_checkpoint(tmp / "policies" / pname, policy, trainer_state={"policy": pname, **state},
                            optimizer_state=optimizers[pname].state_dict() if optimizers else None)
        for pname, pool in snapshots.items():
            for update, snap in pool:
                save_checkpoint(tmp / "snapshots" / pname / f"{update:06d}", snap)
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
    return final


def load_training_checkpoint(stage: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict]:
    """(policies, optimizer states, trainer state, snapshots) from ``stage/checkpoint``."""
    ck = stage / "checkpoint"
    state_file = ck / "trainer_state.json"
    if not state_file.is_file():
        raise FileNotFoundError(f"{ck}: no trainer_state.json; nothing to resume from")
    state = read_json(state_file)
    policies, optim_states = {}, {}
    for folder in sorted((ck / "policies").iterdir()):
        policies[folder.name] = load_policy(folder, device="cpu")
        optim_states[folder.name] = load_optimizer_state(folder)
    snapshots: dict[str, list[tuple[int, Any]]] = {}
    if (ck / "snapshots").is_dir():
        for pdir in sorted((ck / "snapshots").iterdir()):
            snapshots[pdir.name] = [(int(f.name), frozen_copy(load_policy(f, device="cpu")))
                                    for f in sorted(pdir.iterdir())]
    return policies, optim_states, state, snapshots


# --------------------------------------------------------------------------- the stage


class _Interrupt:
    """SIGINT sets a flag; the loop saves a checkpoint at the end of the update and stops."""

    def __init__(self) -> None:
        self.requested = False
        self._old = None

    def __enter__(self) -> _Interrupt:
        def handler(signum, frame):  # noqa: ARG001
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True

        try:
            self._old = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def log_rollout(writer: Any, step: int, learners: dict[str, Any], episodes: list[Any]) -> dict[str, float]:
    """rollout/<policy>/... : mean episode return of the policy's seats, length, the world's metrics."""
    summary = {}
    for name in learners:
        tag = f"learner:{name}"
        rets = [np.mean([r.returns[a] for a, s in r.seats.items() if s == tag]) for r in episodes
                if tag in r.seats.values()]
        eps = [r for r in episodes if tag in r.seats.values()]
        if not rets:
            continue
        writer.add_scalar(f"rollout/{name}/episode_return", float(np.mean(rets)), step)
        writer.add_scalar(f"rollout/{name}/episode_length", float(np.mean([r.length for r in eps])), step)
        summary[name] = float(np.mean(rets))
        for key in sorted({k for r in eps for k in r.metrics}):
            vals = [r.metrics[key] for r in eps if key in r.metrics]
            writer.add_scalar(f"rollout/{name}/{key}", float(np.mean(vals)), step)
    return summary


def stage_setup(cfg: TrainConfig, run_dir: Path, stage_index: int) -> tuple[Path, list[str], dict[str, str]]:
    """(the stage folder, the world's agents, agent -> role), with torch's threads set: what every PPO
    backend does first."""
    stage = runs.stage_dir(run_dir, stage_index, STAGE)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    probe = make(cfg.env.id, **cfg.env.kwargs)
    agents = list(probe.possible_agents)
    roles = {a: probe.role(a) for a in agents}
    probe.close()
    return stage, agents, roles


def run_ppo(cfg: TrainConfig, run_dir: str | Path, resume: bool = False, stage_index: int = 1,
            progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the PPO stage into ``run_dir``; returns the results written to results.json."""
    if cfg.ppo.backend == "sb3":  # sb3-contrib MaskablePPO on the same world, encoder and run folder
        from evoarena.training.sb3_backend import run_sb3

        return run_sb3(cfg, run_dir, resume=resume, stage_index=stage_index, progress=progress)
    run_dir = Path(run_dir)
    stage, agents, roles = stage_setup(cfg, run_dir, stage_index)
    torch.manual_seed(cfg.seed)

    snapshots: dict[str, list[tuple[int, Any]]] = {}
    if resume and (stage / "checkpoint" / "trainer_state.json").is_file():
        learners, optim_states, state, snapshots = load_training_checkpoint(stage)
    else:
        learners = {name: build_learner(cfg, name, agents) for name in cfg.policies}
        for name, lc in cfg.policies.items():
            if lc.init_temperature != 1.0:
                learners[name].soften(lc.init_temperature)
        optim_states, state = {}, {"update": 0, "decisions": 0, "episodes": 0, "nan_streak": 0,
                                   "baselines": {}, "best_score": None, "evals": []}
    for policy in learners.values():
        prepare_for_rl(policy)
    pcs = {name: learner_ppo(cfg, lc) for name, lc in cfg.policies.items()}
    references = {}
    for name, lc in cfg.policies.items():
        if pcs[name].kl_coef > 0 or pcs[name].log_kl_ref:
            ref_dir = stage / "reference" / name
            if not (ref_dir / "policy.json").is_file():
                src = lc.reference
                save_checkpoint(ref_dir, load_policy(src) if src else learners[name])
            references[name] = prepare_for_rl(frozen_copy(load_policy(ref_dir, device="cpu")))
    stored_stats = {name: policy.standardizes and (pcs[name].standardize_stats == "stored" or (
        pcs[name].standardize_stats == "auto" and bool(policy.std_ready))) for name, policy in learners.items()}
    optimizers = {}
    for name, policy in learners.items():
        params = [p for p in policy.parameters() if p.requires_grad]
        optimizers[name] = torch.optim.Adam(params, lr=pcs[name].lr, eps=pcs[name].adam_eps)
        if optim_states.get(name):
            optimizers[name].load_state_dict(optim_states[name])

    planner = SeatPlanner(cfg, agents, roles, learners, snapshots, cfg.seed)
    rollout = Rollout(cfg.env.id, cfg.env.kwargs, min(cfg.num_envs, cfg.episodes_per_update), learners, planner,
                      seed=cfg.seed, record_transcripts=cfg.transcript_every > 0)
    rng = np.random.default_rng(cfg.seed + 1)
    if state.get("rollout"):
        rollout.load_state(state["rollout"])
        rng.bit_generator.state = state["update_rng"]
        torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
        planner.load_state(state.get("seats", {}))
    start_update = int(state["update"])
    writer = runs.tb_writer(run_dir, purge_step=runs.resume_purge_step(resume, start_update))
    if not start_update:
        writer.add_text("config", f"```\n{json.dumps(cfg.model_dump(mode='json'), indent=1)}\n```", 0)

    def checkpoint(update: int, name: str = "checkpoint") -> None:
        state.update(update=update, rollout=rollout.state(), update_rng=rng.bit_generator.state,
                     torch_rng=torch.get_rng_state().tolist(), seats=planner.state())
        writer.flush()  # what was logged up to this checkpoint is on disk before the checkpoint is
        save_training_checkpoint(stage, learners, optimizers, state, snapshots, name=name)
        drop_cached_outputs([*learners.values(), *references.values(), *(s for pool in snapshots.values()
                                                                         for _, s in pool)])

    def run_eval(update: int) -> dict[str, Any]:
        res = evaluate(cfg, learners, agents, roles)
        log_eval(writer, update, res)
        state["evals"].append({"update": update, **res})
        if state["best_score"] is None or res["score"] > state["best_score"]:
            state["best_score"], state["best_update"] = res["score"], update
            checkpoint(update, name="best")
        return res

    if not start_update and cfg.eval.every:
        run_eval(0)  # the starting policy's score (the clone's, in a chain): the baseline of the curve
    last_summary: dict[str, float] = {}
    interrupted = False
    with _Interrupt() as stop, progress_bar("ppo", cfg.total_updates, completed=start_update, unit="updates",
                                            enabled=progress) as bar:
        for update in range(start_update + 1, cfg.total_updates + 1):
            t_start, cpu_start = time.perf_counter(), time.process_time()
            for name in learners:
                learners[name].eval()
            result = rollout.collect(cfg.episodes_per_update)
            t_learn = time.perf_counter()
            frac = 1.0 - (update - 1) / cfg.total_updates
            stats: dict[str, dict[str, float]] = {}
            nan_this = False
            for name, batch in result.batches.items():
                pc = pcs[name]
                if len(batch) == 0:
                    continue
                if stored_stats[name]:
                    # statistics of this rollout's texts, fixed for the update: every minibatch (and
                    # the next rollout) sees the same function, so ratios start at exactly 1
                    ref = references.get(name)
                    if ref is not None and not bool(ref.std_ready):
                        ref.calibrate(batch.obs, seed=cfg.seed)  # once: the reference stays fixed
                    learners[name].calibrate(batch.obs, seed=cfg.seed + update)
                    batch.refresh(learners[name])
                if pc.advantage == "baseline":
                    base = state["baselines"].get(name)
                    if base is None:  # first update: the batch's own mean return starts the running mean
                        batch.finish(pc.gamma, pc.gae_lambda, "baseline", 0.0)
                        base = float(np.mean(batch.returns))
                    batch.finish(pc.gamma, pc.gae_lambda, "baseline", base)
                    mean_ret = float(np.mean(batch.returns))
                    state["baselines"][name] = pc.baseline_momentum * base + (1 - pc.baseline_momentum) * mean_ret
                else:
                    batch.finish(pc.gamma, pc.gae_lambda)
                lr = pc.lr * (frac if pc.lr_decay else 1.0)
                for g in optimizers[name].param_groups:
                    g["lr"] = lr
                s = ppo_update(learners[name], optimizers[name], batch, pc, references.get(name), rng)
                s["lr"] = lr
                stats[name] = s
                nan_this |= s["nan_skipped"] > 0
            learn_s = time.perf_counter() - t_learn
            state["nan_streak"] = state["nan_streak"] + 1 if nan_this else 0
            state["decisions"] += result.decisions
            state["episodes"] += len(result.episodes)
            for name, s in stats.items():
                for k, v in s.items():
                    writer.add_scalar(f"train/{name}/{k}", v, update)
            last_summary = log_rollout(writer, update, learners, result.episodes)
            total_s = time.perf_counter() - t_start
            writer.add_scalar("perf/cpu_seconds", time.process_time() - cpu_start, update)  # this process, all threads
            writer.add_scalar("perf/env_seconds", result.env_seconds, update)
            writer.add_scalar("perf/forward_seconds", result.forward_seconds, update)
            writer.add_scalar("perf/tokenize_seconds", result.tokenize_seconds, update)  # part of forward
            writer.add_scalar("perf/learn_seconds", learn_s, update)
            writer.add_scalar("perf/decisions_per_second", result.decisions / max(total_s, 1e-9), update)
            writer.add_scalar("perf/decisions", state["decisions"], update)
            if cfg.transcript_every and update % cfg.transcript_every == 0:
                text = next((r.transcript for r in result.episodes if r.transcript), None)
                if text:
                    writer.add_text("episodes/transcript", f"```\n{text}\n```", update)
            if state["nan_streak"] >= MAX_NAN_UPDATES:
                writer.close()
                raise TrainingError(f"non-finite loss in {MAX_NAN_UPDATES} updates in a row (last: update "
                                    f"{update}); stopped. The last good checkpoint is {stage / 'checkpoint'}")
            if cfg.snapshot_every and update % cfg.snapshot_every == 0:
                for name, policy in learners.items():
                    pool = snapshots.setdefault(name, [])
                    pool.append((update, frozen_copy(policy)))
                    del pool[:-cfg.snapshot_pool_size]
            if cfg.eval.every and update % cfg.eval.every == 0 and update < cfg.total_updates:
                run_eval(update)
            # the last update's checkpoint is written after the final evaluation (below), so a resume never
            # evaluates the last update twice
            if not nan_this and update < cfg.total_updates and (update % cfg.checkpoint_every == 0
                                                                 or stop.requested):
                checkpoint(update)
            info = ", ".join(f"return {k} {v:.1f}" for k, v in last_summary.items())
            bar(1, info=f"{info}, {result.decisions / max(total_s, 1e-9):.0f} decisions/s")
            if stop.requested and update < cfg.total_updates:
                interrupted = True
                break
    if interrupted:
        writer.close()
        print(f"ppo: interrupted after update {state['update']}; checkpoint saved in {stage / 'checkpoint'}")
        raise KeyboardInterrupt
    if state.get("final_eval") is None:  # a run resumed after its final checkpoint keeps that evaluation
        state["final_eval"] = run_eval(cfg.total_updates)
        checkpoint(cfg.total_updates)
    final_eval = state["final_eval"]
    metrics = {"hparam/final_score": final_eval["score"],
               **{f"hparam/return_{k}": v for k, v in last_summary.items()}}
    hparams = {"env": cfg.env.id, "seed": cfg.seed, "lr": cfg.ppo.lr, "ent_coef": cfg.ppo.ent_coef,
               "kl_coef": cfg.ppo.kl_coef, "episodes_per_update": cfg.episodes_per_update,
               "total_updates": cfg.total_updates}
    writer.add_hparams(hparams, {k: (v if math.isfinite(v) else 0.0) for k, v in metrics.items()}, run_name="hparams")
    writer.close()
    results = {"updates": cfg.total_updates, "decisions": state["decisions"], "episodes": state["episodes"],
               "final_eval": final_eval, "best_score": state["best_score"], "best_update": state.get("best_update"),
               "evals": state["evals"], "rollout_return": last_summary,
               "checkpoint": str(stage / "checkpoint"), "best_checkpoint": str(stage / "best")}
    results["summary"] = ppo_summary(results)
    runs.update_results(run_dir, STAGE, results)
    return results


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
        line += f"; best {results['best_score']:.2f} at update {results['best_update']} (the checkpoint `best`)"
    return line
