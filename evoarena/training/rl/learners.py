"""The learners of a PPO stage, shared by both backends: building them (from ``init_from`` or fresh), frozen
copies (snapshots, references) and the training checkpoint (learners + optimizers + snapshots + trainer state,
one atomic folder). What the stage records (evaluations, the best checkpoint's bookkeeping, perf scalars,
results) is :mod:`evoarena.training.rl.ppo_records`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch

from evoarena.config import LearnerConfig, PPOConfig, TrainConfig
from evoarena.envs import describe
from evoarena.policies.actor_critic import build_policy
from evoarena.policies.encoder import TRAIN_MODE_KEYS
from evoarena.policies.io import load_optimizer_state, load_policy, save_checkpoint
from evoarena.storage import atomic_dir, read_json
from evoarena.training.rl.seats import seat_of


def stage_setup(cfg: TrainConfig, ctx: Any) -> tuple[Path, list[str], dict[str, str]]:
    """(the stage folder, created; the world's agents; agent -> role), with torch's threads set: what both PPO
    backends do first."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    info = describe(cfg.env.id, cfg.env.kwargs)
    return ctx.folder(), list(info.agents), dict(info.roles)


def learner_ppo(cfg: TrainConfig, learner: LearnerConfig) -> PPOConfig:
    """The stage's PPO config with the learner's overrides applied."""
    return PPOConfig.model_validate({**cfg.ppo.model_dump(), **learner.ppo})


def learner_device(cfg: TrainConfig, name: str) -> str:
    """Where learner ``name`` lives: its encoder's ``device`` in the train config (auto | cpu | cuda). The one
    place the PPO stage decides it: the learner, its KL reference and its snapshots (fresh, resumed or copied) are
    all built there. A name that is no learner of the config (e.g. a frozen member) lives with the first learner."""
    lc = cfg.policies.get(name) or next(iter(cfg.policies.values()))
    return lc.policy.encoder.device


def first_agent_of(cfg: TrainConfig, agents: list[str], policy: str) -> str:
    return next(a for a in agents if seat_of(a, cfg.seats).policy == policy)


def build_learner(cfg: TrainConfig, name: str, agents: list[str]) -> Any:
    """A learner's policy: loaded from ``init_from`` when that is an evoarena checkpoint, else built."""
    lc = cfg.policies[name]
    agent = first_agent_of(cfg, agents, name)
    init = lc.policy.init_from
    if init and (Path(init) / "policy.json").is_file():
        policy = load_policy(init, device=learner_device(cfg, name))
        if policy.env_id != cfg.env.id:
            raise ValueError(f"policies.{name}.policy.init_from {init} was trained for {policy.env_id}, "
                             f"not {cfg.env.id}")
        enc = lc.policy.encoder
        if policy.encoder is not None and enc.model_fields_set & set(TRAIN_MODE_KEYS):
            policy.encoder.set_train_mode(enc)  # e.g. train only the heads of a cloned policy
            policy.cfg = policy.cfg.model_copy(update={"encoder": policy.encoder.cfg})
        return policy
    return build_policy(lc.policy, cfg.env.id, agent=agent, env_kwargs=cfg.env.kwargs)


def build_exploiter(cfg: TrainConfig, main: str, learners: dict[str, Any], agents: list[str]) -> Any:
    """A league exploiter of ``main``: a copy of the main, or, with ``league.exploiter``, its own fresh policy."""
    ex = cfg.league.exploiter if cfg.league is not None else None
    if ex is None:
        return copy.deepcopy(learners[main])
    return build_policy(ex.policy, cfg.env.id, agent=first_agent_of(cfg, agents, main), env_kwargs=cfg.env.kwargs)


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


def blend_into(average: Any, policy: Any, count: int) -> None:
    """Make ``average`` (the mean of ``count`` earlier weights) the mean of ``count + 1``: every floating-point
    tensor of its state moves ``1 / (count + 1)`` of the way to ``policy``'s (stochastic weight averaging)."""
    with torch.no_grad():
        current = policy.state_dict()
        for key, a in average.state_dict().items():
            if a.is_floating_point():
                a.add_((current[key].to(a.dtype) - a) / (count + 1))


def save_policies(folder: Path, policies: dict[str, Any]) -> Path:
    """``folder/policies/NAME`` for each policy, written to a temporary sibling and renamed into place."""
    with atomic_dir(folder) as tmp:
        for name, policy in policies.items():
            save_checkpoint(tmp / "policies" / name, policy)
    return folder


def tensor_devices(obj: Any) -> set[torch.device]:
    """Every device a tensor of ``obj`` is on: a module's parameters, buffers and the tensors its modules keep in
    attributes (caches: dicts, lists, tuples of tensors), an optimizer's state (but its step counts), or
    containers of those."""
    found: set[torch.device] = set()
    stack, seen = [obj], set()
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if torch.is_tensor(x):
            found.add(x.device)
        elif isinstance(x, torch.nn.Module):
            stack.extend(m for m in x.modules() if m is not x)
            stack.extend(v for k, v in vars(x).items() if k != "_modules")
        elif isinstance(x, torch.optim.Optimizer):  # Adam keeps its step count on the CPU by design
            stack.extend(v for state in x.state.values() for k, v in state.items() if k != "step")
        elif isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, list | tuple | set):
            stack.extend(x)
    return found


def check_devices(learners: dict[str, Any], references: dict[str, Any],
                  snapshots: dict[str, list[tuple[int, Any]]]) -> None:
    """Raise ``RuntimeError`` naming the copy when a learner's reference or snapshots (or the learner itself) hold
    tensors on another device than the learner's parameters: a clear error at the start of a run rather than a
    device mismatch inside an update."""
    for name, policy in learners.items():
        want = {p.device for p in policy.parameters()}
        copies = [(f"learner {name}", policy), *([(f"reference {name}", references[name])] if name in references
                                                  else []),
                  *((f"snapshot {name}@{u}", s) for u, s in snapshots.get(name, []))]
        for what, obj in copies:
            got = tensor_devices(obj)
            if len(want) != 1 or got != want:
                raise RuntimeError(f"{what} holds tensors on {sorted(map(str, got))}; learner {name} lives on "
                                   f"{sorted(map(str, want))} (see learners.learner_device)")


def reference_policies(cfg: TrainConfig, stage: Path, learners: dict[str, Any],
                       pcs: dict[str, PPOConfig]) -> dict[str, Any]:
    """Frozen reference policies (the fine-tuned start, saved once in ``stage/reference``) of the learners with a
    KL penalty or KL logging."""
    references = {}
    for name, lc in cfg.policies.items():
        if pcs[name].kl_coef > 0 or pcs[name].log_kl_ref:
            ref_dir = stage / "reference" / name
            if not (ref_dir / "policy.json").is_file():
                save_checkpoint(ref_dir, load_policy(lc.reference, device=learner_device(cfg, name))
                                if lc.reference else learners[name])
            references[name] = prepare_for_rl(frozen_copy(load_policy(ref_dir, device=learner_device(cfg, name))))
    return references


# --------------------------------------------------------------------------- checkpoints


def save_training_checkpoint(stage: Path, learners: dict[str, Any], optimizers: dict[str, Any],
                             state: dict[str, Any], snapshots: dict[str, list[tuple[int, Any]]],
                             name: str = "checkpoint") -> Path:
    """All learners (+ optimizer states), the snapshot pool and the trainer state, as one folder
    written to a temporary sibling and renamed into place. The trainer state (what a resume reads) is the folder's
    ``trainer_state.json``; each policy's own says only which learner and update it is."""
    final = stage / name
    with atomic_dir(final) as tmp:
        for pname, policy in learners.items():
            own = {"policy": pname, "update": state["update"]}
            save_checkpoint(tmp / "policies" / pname, policy, trainer_state=own,
                            optimizer_state=optimizers[pname].state_dict() if optimizers else None)
        for pname, pool in snapshots.items():
            for update, snap in pool:
                save_checkpoint(tmp / "snapshots" / pname / f"{update:06d}", snap)
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
    return final


def load_training_checkpoint(stage: Path, cfg: TrainConfig) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any],
                                                                    dict]:
    """(policies, optimizer states, trainer state, snapshots) from ``stage/checkpoint``, each policy on its
    learner's device (:func:`learner_device`)."""
    ck = stage / "checkpoint"
    state_file = ck / "trainer_state.json"
    if not state_file.is_file():
        raise FileNotFoundError(f"{ck}: no trainer_state.json; nothing to resume from")
    state = read_json(state_file)
    policies, optim_states = {}, {}
    for folder in sorted((ck / "policies").iterdir()):
        policies[folder.name] = load_policy(folder, device=learner_device(cfg, folder.name))
        optim_states[folder.name] = load_optimizer_state(folder)
    snapshots: dict[str, list[tuple[int, Any]]] = {}
    if (ck / "snapshots").is_dir():
        for pdir in sorted((ck / "snapshots").iterdir()):
            snapshots[pdir.name] = [(int(f.name), frozen_copy(load_policy(f, device=learner_device(cfg, pdir.name))))
                                    for f in sorted(pdir.iterdir())]
    return policies, optim_states, state, snapshots
