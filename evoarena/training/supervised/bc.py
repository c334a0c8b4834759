"""The finetune stage's ``task: bc``, behaviour cloning (``STAGE``; ``run_bc(cfg, ctx)`` -> results dict).

Scripted (or any fixed) experts play a world against the configured opponents; the expert seats'
decisions with more than one legal action become ``(text, action mask, action, return)`` examples, one
dataset per cloned role. Identical examples are stored once with a count and the loss weights each by its
count (the same objective as the raw stream, fewer encoder passes); the encoder additionally encodes each
distinct text once per batch. The policy head and encoder of an ``ActorCritic`` learn the expert's actions
(masked cross-entropy) and the value head its discounted returns (MSE, per agent decision as PPO counts
them). With ``bc.aux_features`` a linear head also regresses those numeric facts of each observation on the
heads' input, through the encoder, and is dropped afterwards: the encoder keeps facts the expert ignores. Reports
held-out action accuracy and the greedy clone's in-game score next to the expert's on the
same evaluation seeds. One checkpoint per cloned role (``checkpoint/`` with one role, else
``checkpoint/<role>/``), usable as ``ckpt:PATH`` and as PPO ``init_from``.

TensorBoard tags (per cloned role): ``finetune/<role>/{loss,policy_loss,value_mse,accuracy,lr}``,
``finetune/<role>/aux_mse`` (with ``bc.aux_features``), ``perf/<role>/examples_per_s``,
``eval/heldout/<role>/{action_accuracy,value_mse}``, and after training
``eval/<opponent>/<seat>/{clone_score,expert_score}``, ``eval/all/{clone_score,expert_score}``.

Resume: a training state is written every ``checkpoint_every`` steps (or after every epoch); ``--resume``
continues from it (the demonstrations are regenerated: they are a deterministic function of the config).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evoarena.agents import spec_tag
from evoarena.config import BCFinetuneConfig, demo_seed_base
from evoarena.envs import describe
from evoarena.policies.io import load_policy, save_checkpoint
from evoarena.storage import atomic_write_text, read_json
from evoarena.training.infra import runs
from evoarena.training.infra.progress import progress_bar
from evoarena.training.protocol import InitSlot, StageContext, StageKind
from evoarena.training.supervised import loop
from evoarena.training.supervised.bc_loss import AuxHead, bc_losses, heldout_accuracy
from evoarena.training.supervised.demos import Demos, cloned_roles, evaluate_clones, generate_demos
from evoarena.training.supervised.loop import (
    FitPlan,
    SupervisedTask,
    Timer,
    adamw,
    fit,
    init_encoder_weights,
    load_state,
    restore_torch_rng,
    resumable,
    set_threads,
)


def build_clone_policy(bc: Any, role: str) -> Any:
    """A fresh ``ActorCritic`` of ``bc.policy`` for ``role`` (weights from ``init_from``, tokenizer from
    ``init_from`` or ``tokenizer_from``); the spaces come from the world built with ``bc.env.kwargs``."""
    from evoarena.policies.actor_critic import make_policy
    from evoarena.policies.io import init_tokenizer

    info = describe(bc.env.id, bc.env.kwargs)
    agent = info.agent_of(role)
    num_actions, num_features = info.num_actions[role], info.num_features[role]
    pcfg = bc.policy
    source = pcfg.init_from or bc.tokenizer_from
    tokenizer = init_tokenizer(source) if source else None
    policy = make_policy(pcfg.model_copy(update={"init_from": None}), num_actions, num_features, bc.env.id,
                         agent, role, tokenizer=tokenizer)
    if pcfg.init_from:
        init_encoder_weights(policy, pcfg.init_from)
    policy.cfg = pcfg
    return policy


def return_stats(demos: Demos) -> tuple[float, float]:
    """Count-weighted mean and variance of the demonstrations' returns."""
    w = demos.counts.astype(np.float64)
    mean = float((w * demos.returns).sum() / max(w.sum(), 1.0))
    var = float((w * (demos.returns - mean) ** 2).sum() / max(w.sum(), 1.0))
    return mean, var


def action_head_for_cloning(policy: Any) -> None:
    """Re-initialise the last layer of the action head (``policy_head``, or ``obs_proj`` of the scoring
    head) with gain 1. Policies start it at gain 0.01 for a near-uniform first PPO policy, which leaves the
    encoder almost no gradient: cloning then stalls at the majority action (measured on the signaling
    speaker: 27% held-out accuracy after 300 steps at gain 0.01, 88% at gain 1)."""
    for name in ("policy_head", "obs_proj"):
        head = getattr(policy, name, None)
        if head is not None and isinstance(head[-1], nn.Linear):
            nn.init.orthogonal_(head[-1].weight, 1.0)
            nn.init.zeros_(head[-1].bias)



@dataclass
class _RoleRun:
    """One role's cloning run: its policy, optimizer, step plan, the saved record and the scalars it logged."""

    role: str
    policy: Any
    aux: AuxHead | None  #: bc.aux_features' head (trained beside the policy, dropped after cloning)
    optimizer: torch.optim.Optimizer
    record: dict[str, Any]
    total: int
    steps_per_epoch: int
    logged: list[list[Any]]  #: [tag, step, value]: replayed after a resume
    writer: Any

    def log(self, tag: str, value: float, at: int) -> None:
        self.writer.add_scalar(tag, value, at)
        self.logged.append([tag, at, float(value)])


def _start_role(cfg: BCFinetuneConfig, role: str, demos: Demos, state_dir: Path, writer: Any,
                resume: bool) -> _RoleRun:
    """The role's policy and optimizer: fresh (action head at gain 1, value head at the mean return), or
    resumed from ``state_dir``."""
    bc, opt = cfg.bc, cfg.optim
    record = resumable(resume, state_dir) or {}
    if record:
        policy = load_policy(state_dir, device=bc.policy.encoder.device)
        policy.cfg = bc.policy
    else:
        policy = build_clone_policy(bc, role)
        action_head_for_cloning(policy)
        with torch.no_grad():  # the value head starts at the mean return: it can only improve on that
            policy.value_head[-1].weight.zero_()
            policy.value_head[-1].bias.fill_(return_stats(demos)[0])
    policy.train()
    aux = AuxHead(policy.encoder.hidden_size, demos) if bc.aux_features else None
    if aux is not None and record.get("aux_head"):
        aux.load_weights(record["aux_head"])
    optimizer = adamw(policy if aux is None else nn.ModuleList([policy, aux]), opt.lr, opt.weight_decay)
    if record:
        load_state(state_dir, None, optimizer)  # the weights: load_policy above
        if not record.get("done"):
            restore_torch_rng(record)
    steps_per_epoch = math.ceil(len(demos) / opt.batch_size)
    return _RoleRun(role, policy, aux, optimizer, record, opt.max_steps or steps_per_epoch * opt.epochs,
                    steps_per_epoch, record.get("scalars", []), writer)


class _Cloning(SupervisedTask):
    """One role's part of :func:`~evoarena.training.supervised.loop.fit`: the epoch's shuffled examples, the
    count-weighted cloning loss, the value head's gradient clipped apart; logs, held-out evaluations and the
    state's JSON."""

    def __init__(self, cfg: BCFinetuneConfig, run: _RoleRun, demos: Demos, held: Demos) -> None:
        self.cfg, self.run, self.demos, self.held = cfg, run, demos, held
        self.model, self.optimizer, self.writer = run.policy, run.optimizer, run.writer
        self.return_var = return_stats(demos)[1]
        self.history: list[dict[str, Any]] = run.record.get("history", [])
        self.timer = Timer(float(run.record.get("train_wall_s", 0.0)))
        self.sums = {"loss": 0.0, "policy_loss": 0.0, "value_mse": 0.0, "accuracy": 0.0,
                     **({"aux_mse": 0.0} if run.aux is not None else {}), **run.record.get("sums", {})}
        self.k = int(run.record.get("sums_count", 0))
        self.epoch, self.perm = -1, np.zeros(0, dtype=np.int64)
        if int(run.record.get("step", 0)) == 0:  # the untrained clone: the curve's first point
            m = heldout_accuracy(self.model, held)
            self.history.append({"step": 0, "examples": 0, "wall_s": 0.0, **m})
            run.log(f"eval/heldout/{run.role}/action_accuracy", m["action_accuracy"], 0)

    def batch(self, step: int) -> Any:
        epoch, b = divmod(step, self.run.steps_per_epoch)
        if epoch != self.epoch:
            self.epoch, self.perm = epoch, np.random.default_rng([self.cfg.seed, 3, epoch]).permutation(len(self.demos))
        size = self.cfg.optim.batch_size
        return self.perm[b * size: (b + 1) * size]

    def loss(self, batch: Any) -> tuple[torch.Tensor, Any]:
        bc = self.cfg.bc
        return bc_losses(self.model, self.demos, batch, bc.value_coef, self.return_var, bc.label_smoothing,
                         bc.entropy_coef, self.run.aux, bc.aux_coef)

    def clip_groups(self) -> list[list[nn.Parameter]]:
        """The value head's gradient never scales down the policy's."""
        value = list(self.model.value_head.parameters())
        value_ids = {id(p) for p in value}
        aux = list(self.run.aux.parameters()) if self.run.aux is not None else []
        return [[p for p in self.model.parameters() if id(p) not in value_ids] + aux, value]

    def accumulate(self, loss: torch.Tensor, stats: Any) -> None:
        self.k += 1
        self.sums["loss"] += float(loss.detach())
        for key, v in stats.items():
            self.sums[key] += v

    def log(self, step: int) -> str:
        tag, run = f"finetune/{self.run.role}", self.run
        for key, v in self.sums.items():
            run.log(f"{tag}/{key}", v / self.k, step)
        run.log(f"{tag}/lr", self.optimizer.param_groups[0]["lr"], step)
        run.log(f"perf/{run.role}/examples_per_s", step * self.cfg.optim.batch_size / max(self.timer(), 1e-9), step)
        info = f"loss {self.sums['loss'] / self.k:.3f} acc {self.sums['accuracy'] / self.k:.3f}"
        self.sums, self.k = dict.fromkeys(self.sums, 0.0), 0
        return info

    def evaluate(self, step: int) -> str:
        m = heldout_accuracy(self.model, self.held)
        self.history.append({"step": step, "examples": step * self.cfg.optim.batch_size, "wall_s": self.timer(),
                             **m})
        self.run.log(f"eval/heldout/{self.run.role}/action_accuracy", m["action_accuracy"], step)
        self.run.log(f"eval/heldout/{self.run.role}/value_mse", m["value_mse"], step)
        return f"held-out accuracy {m['action_accuracy']:.4f}"

    def state(self, step: int) -> dict[str, Any]:
        aux = {"aux_head": self.run.aux.weights()} if self.run.aux is not None else {}
        return {"step": step, "history": self.history, "train_wall_s": self.timer(), "scalars": self.run.logged,
                "sums": self.sums, "sums_count": self.k, **aux}


def _train_role(cfg: BCFinetuneConfig, role: str, demos: Demos, held: Demos, state_dir: Path, writer: Any,
                ctx: StageContext) -> tuple[Any, dict[str, Any]]:
    """Clone ``role``: returns the trained policy and its training record (resuming from ``state_dir``)."""
    run = _start_role(cfg, role, demos, state_dir, writer, ctx.resume)
    policy = run.policy
    if run.record.get("done"):
        return policy, run.record
    policy.batch_stats = True  # standardisation over each batch while training; calibrated at the end
    hook = None
    if cfg.bc.value_detach:  # the value head regresses on the policy's features only
        hook = policy.value_head.register_forward_pre_hook(lambda _m, args: (args[0].detach(), *args[1:]))
    opt, step = cfg.optim, int(run.record.get("step", 0))
    plan = FitPlan(run.total, opt.lr, int(opt.warmup_fraction * run.total), opt.max_grad_norm, cfg.log_every,
                   cfg.eval_every or run.steps_per_epoch, cfg.checkpoint_every or run.steps_per_epoch, state_dir)
    with progress_bar(ctx.describe(f"clone {role} ({cfg.name})"), run.total, completed=step,
                      enabled=ctx.progress) as update:
        task = _Cloning(cfg, run, demos, held)
        step, history, timer = fit(task, plan, step, update), task.history, task.timer
        if hook is not None:
            hook.remove()
        heldout = history[-1]
        if policy.standardizes:  # store the statistics: from now on every batch (even of one) sees the same
            policy.batch_stats = False
            policy.calibrate(demos.obs(np.arange(len(demos))), seed=cfg.seed)
            heldout = {**heldout_accuracy(policy, held), "step": step, "calibrated": True}
            run.log(f"eval/heldout/{role}/action_accuracy_calibrated", heldout["action_accuracy"], step)
        update(0, info=f"held-out accuracy {heldout['action_accuracy']:.3f} (final)")  # the number the summary says
    record = {"step": step, "history": history, "train_wall_s": timer(), "done": True, "scalars": run.logged,
              "epochs": step / run.steps_per_epoch, "distinct_examples": len(demos), "decisions": demos.decisions,
              "heldout": heldout}
    loop.save_state(state_dir, policy, run.optimizer, record)
    return policy, record


def _resumed_writer(ctx: StageContext, state_dirs: list[Path]) -> Any:
    """The stage's TensorBoard writer. On resume it drops what the interrupted process logged after the
    last state of the first unfinished role (roles train one after another; all of the stage's steps when
    every role had finished) and logs again what finished roles had logged there, so every scalar is
    logged once."""
    records = [resumable(ctx.resume, d) or {} for d in state_dirs]
    unfinished = [r for r in records if not r.get("done")]
    purge = runs.resume_purge_step(ctx.resume, int(unfinished[0].get("step", 0)) if unfinished else 0)
    writer = ctx.writer(purge_step=purge)
    for record in records:
        if record.get("done") and purge is not None:
            for tag, at, value in record.get("scalars", []):
                if at >= purge:
                    writer.add_scalar(tag, value, at)
    return writer


def _log_scores(writer: Any, rows: list[dict[str, Any]]) -> tuple[int, float, float]:
    """Log the clones' and experts' scores per opponent and seat, and overall (games, clone, expert)."""
    for row in rows:
        name = spec_tag(row["opponent"])
        writer.add_scalar(f"eval/{name}/{row['seat']}/clone_score", row["clone_score"], 0)
        writer.add_scalar(f"eval/{name}/{row['seat']}/expert_score", row["expert_score"], 0)
    clone_score = float(np.mean([r["clone_score"] for r in rows]))
    expert_score = float(np.mean([r["expert_score"] for r in rows]))
    writer.add_scalar("eval/all/clone_score", clone_score, 0)
    writer.add_scalar("eval/all/expert_score", expert_score, 0)
    return sum(r["games"] for r in rows), clone_score, expert_score


def _save_clones(bc: Any, policies: dict[str, Any], records: dict[str, Any], root: Path) -> dict[str, str]:
    """Each role's checkpoint (``root`` with one role, else ``root/ROLE``): role -> folder. Its trainer_state.json
    says what the clone is and how it scored; what a resume reads (history, logged scalars) is in ``state/ROLE``."""
    ckpts = {}
    for role, policy in policies.items():
        folder = root if len(policies) == 1 else root / role
        rec = {k: v for k, v in records[role].items() if k not in ("history", "scalars")}
        save_checkpoint(folder, policy, {"stage": "finetune", "task": "bc", "expert": bc.expert, **rec})
        ckpts[role] = str(folder)
    return ckpts


def _role_results(train: Demos, held: Demos, record: dict[str, Any]) -> dict[str, Any]:
    heldout = record["heldout"]
    return {"decisions": train.decisions, "distinct_examples": len(train), "heldout_decisions": held.decisions,
            "steps": record["step"], "epochs": record["epochs"], "train_wall_s": record["train_wall_s"],
            "heldout_action_accuracy": heldout["action_accuracy"],
            "heldout_p_best_alternative": {q: heldout.get(f"p_best_alternative_{q}") for q in ("p10", "median", "p90")},
            "heldout_value_mse": heldout["value_mse"], "history": record["history"]}


def run_bc(cfg: BCFinetuneConfig, ctx: StageContext) -> dict[str, Any]:
    """``task: bc`` (see the module docstring): run or resume into ``ctx``; returns the results."""
    set_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    bc = cfg.bc
    base = demo_seed_base(cfg.seed)  # BCFinetuneConfig checked that these seeds miss the evaluation seeds
    sdir = ctx.folder()
    done_file = sdir / "state" / "results.json"
    if ctx.resume and done_file.is_file():
        return read_json(done_file)
    timer = Timer()
    roles = cloned_roles(bc)
    need_names = bc.policy.head in ("scoring", "lm")
    n_ep = bc.train_episodes + bc.heldout_episodes
    with progress_bar(ctx.describe(f"demonstrations ({bc.expert})"), n_ep, unit="episodes",
                      enabled=ctx.progress) as update:
        train = generate_demos(bc, bc.train_episodes, base, roles, need_names, update)
        held = generate_demos(bc, bc.heldout_episodes, base + bc.train_episodes, roles, need_names, update)
    demo_s = timer()
    writer = _resumed_writer(ctx, [sdir / "state" / role for role in roles])
    policies, records = {}, {}
    for role in roles:
        if len(train[role]) == 0:
            raise ValueError(f"bc: the expert {bc.expert} made no decision with more than one legal action "
                             f"as {role} in {bc.train_episodes} episodes; nothing to clone")
        policies[role], records[role] = _train_role(cfg, role, train[role], held[role], sdir / "state" / role,
                                                    writer, ctx)
    train_s = timer() - demo_s
    rows = evaluate_clones(bc, policies)
    eval_s = timer() - demo_s - train_s
    games, clone_score, expert_score = _log_scores(writer, rows)
    ckpts = _save_clones(bc, policies, records, sdir / "checkpoint")
    results: dict[str, Any] = {
        "task": "bc", "env": bc.env.id, "env_kwargs": bc.env.kwargs, "expert": bc.expert,
        "opponents": bc.opponents, "roles": {r: _role_results(train[r], held[r], records[r]) for r in roles},
        "eval": rows, "eval_games": games, "clone_score": clone_score, "expert_score": expert_score,
        "demo_s": demo_s, "train_s": train_s, "eval_s": eval_s, "wall_s": timer(),
        "threads": torch.get_num_threads(), "checkpoints": ckpts,
    }
    acc = ", ".join(f"{r} {results['roles'][r]['heldout_action_accuracy']:.3f}" for r in roles)
    results["summary"] = (f"cloned {bc.expert} in {bc.env.id}: held-out action accuracy {acc}; mean score "
                          f"clone {clone_score:.2f} vs expert {expert_score:.2f} over {games} games; "
                          f"{results['wall_s']:.0f} s (demos {demo_s:.0f}, training {train_s:.0f}, "
                          f"evaluation {eval_s:.0f})")
    writer.add_text("finetune/summary", results["summary"], 0)
    writer.close()
    ctx.write_results(results)
    atomic_write_text(done_file, json.dumps(results, indent=1, default=float))
    return results


class BCStage(StageKind):
    """``kind: finetune, task: bc``: behaviour cloning of a fixed expert; one policy per cloned role."""

    name, kind = "finetune:bc", "finetune"
    config = BCFinetuneConfig
    agent_label = "behaviour-cloned"

    def run(self, cfg: BCFinetuneConfig, ctx: StageContext) -> dict[str, Any]:
        return run_bc(cfg, ctx)

    def env(self, data: dict[str, Any]) -> dict[str, Any] | None:
        return data["bc"].get("env")

    def policy_roles(self, data: dict[str, Any]) -> dict[str, str]:
        env = data["bc"]["env"]
        clone = data["bc"].get("clone") or sorted(set(describe(env["id"], env.get("kwargs", {})).roles.values()))
        return {r: r for r in clone}

    def init_slots(self, data: dict[str, Any]) -> list[InitSlot]:
        if not isinstance(data.get("bc"), dict):
            return []
        policy = data["bc"].setdefault("policy", {})
        return [] if "init_from" in policy else [InitSlot("bc.policy.init_from", policy)]

    def checkpoint(self, data: dict[str, Any], folder: Path, role: str | None = None) -> Path:
        made = self.policy_roles(data)
        return folder / "checkpoint" if len(made) == 1 else folder / "checkpoint" / str(role)

    def length(self, results: dict[str, Any]) -> int:
        return max((int(r.get("steps", 0)) for r in results.get("roles", {}).values()), default=0)

    def agent_policy(self, data: dict[str, Any]) -> dict[str, Any] | None:
        return dict(data["bc"].get("policy", {}))

    def teacher(self, data: dict[str, Any]) -> str | None:
        return data["bc"].get("expert")


STAGE = BCStage()
