"""``evoarena run``: the chain (pretrain -> finetune -> train -> evaluate) as one pipeline in one run folder.

A pipeline config (:class:`evoarena.config.PipelineConfig`) lists stages in order. Each stage is one of
today's stage configs plus ``kind``, ``name`` and ``init_from`` (``previous`` by default: the closest earlier
stage's checkpoint; ``stage:NAME``; a folder; ``none``). Before the first stage starts, every stage is
validated: its keys by its schema, its world and agents by :mod:`evoarena.training.checks`, and its
``init_from`` (an earlier stage, an existing folder, the same world and action space). Errors name the
stage and the key.

Stage ``k`` writes ``stages/NN_KIND/`` and the results key ``NN_KIND``; its TensorBoard steps start where
stage ``k-1``'s ended, so ``tensorboard --logdir runs/NAME`` shows the whole evolution on one axis.
``pipeline.json`` records each stage's state; ``--resume`` skips finished stages and resumes the
interrupted one from its last checkpoint.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from evoarena.config import (
    ConfigError,
    EvaluateConfig,
    FinetuneConfig,
    PipelineConfig,
    PretrainConfig,
    TrainConfig,
    apply_overrides,
    dump_config,
    read_yaml,
    validate_config,
)
from evoarena.storage import read_json
from evoarena.training import runs

STATE_FILE = "pipeline.json"
MODELS: dict[str, type[BaseModel]] = {"pretrain": PretrainConfig, "finetune": FinetuneConfig,
                                      "train": TrainConfig, "evaluate": EvaluateConfig}
AGENT_LABELS = {"pretrain": "pre-trained encoder, untrained heads", "ner": "NER encoder, untrained heads",
                "bc": "behaviour-cloned", "train": "PPO-trained"}


@dataclass
class Stage:
    """One planned stage: its place, kind, name, validated config data and where it starts from."""

    index: int
    kind: str
    name: str
    data: dict[str, Any]  #: the stage's own config keys (kind/name/init_from removed, defaults filled)
    init: Stage | str | None  #: an earlier stage, a folder, or None (no transferred weights)

    @property
    def key(self) -> str:
        return f"{self.index:02d}_{self.kind}"

    @property
    def task(self) -> str:
        return str(self.data.get("task", self.kind))

    def folder(self, run_dir: Path) -> Path:
        return Path(run_dir) / "stages" / self.key

    def makes_checkpoint(self) -> bool:
        return self.kind in ("pretrain", "finetune", "train")


# --------------------------------------------------------------------------- planning


def _where(stage_i: int, raw: dict[str, Any]) -> str:
    return f"stage {stage_i + 1} ({raw.get('name', raw.get('kind'))})"


def _stage_data(pc: PipelineConfig, raw: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(the stage's own config keys with pipeline defaults filled in, its init_from spec)."""
    data = json.loads(json.dumps(raw))
    kind = data.pop("kind")
    data["name"] = data.pop("name", kind)
    init = data.pop("init_from", "previous")
    data.setdefault("seed", pc.seed)
    data.setdefault("threads", pc.threads)
    if pc.env is not None:
        env = pc.env.model_dump(mode="json")
        if kind in ("train", "evaluate"):
            data.setdefault("env", env)
        elif kind == "finetune" and data.get("task") == "bc" and isinstance(data.get("bc"), dict):
            data["bc"].setdefault("env", env)
    return data, "none" if init is None else str(init)


def _init_slots(kind: str, data: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(key path, the mapping holding ``init_from``, key) of every place a stage of ``kind`` takes weights;
    a learner that names its own ``init_from`` keeps it."""
    if kind == "finetune" and data.get("task") == "ner":
        ner = data.setdefault("ner", {})
        return [("ner.init_from", ner, "init_from")]
    if kind == "finetune" and data.get("task") == "bc" and isinstance(data.get("bc"), dict):
        policy = data["bc"].setdefault("policy", {})
        return [] if "init_from" in policy else [("bc.policy.init_from", policy, "init_from")]
    if kind == "train" and isinstance(data.get("policies"), dict):
        out = []
        for name, lc in data["policies"].items():
            if isinstance(lc, dict):
                policy = lc.setdefault("policy", {})
                if "init_from" not in policy and policy.get("kind", "transformer") == "transformer":
                    out.append((f"policies.{name}.policy.init_from", policy, "init_from"))
        return out
    return []


def _resolve_init(spec: str, planned: list[Stage], where: str, kind: str) -> Stage | str | None:
    if spec in ("none", "null", ""):
        return None
    if kind in ("pretrain", "evaluate"):
        if spec == "previous":
            return None
        raise ConfigError(f"{where}: init_from = {spec!r}: a {kind} stage takes no init_from")
    if spec == "previous":
        earlier = [s for s in planned if s.makes_checkpoint()]
        return earlier[-1] if earlier else None
    if spec.startswith("stage:"):
        name = spec.split(":", 1)[1]
        match = [s for s in planned if s.name == name]
        if not match:
            raise ConfigError(f"{where}: init_from = {spec!r}: no earlier stage is named {name!r}; earlier "
                              f"stages: {', '.join(s.name for s in planned) or 'none'}")
        if not match[0].makes_checkpoint():
            raise ConfigError(f"{where}: init_from = {spec!r}: stage {name!r} ({match[0].kind}) makes no checkpoint")
        return match[0]
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{where}: init_from = {spec!r}: no such folder {str(path.absolute())!r} (give "
                          f"previous, stage:NAME, none, or an existing checkpoint folder)")
    return str(path)


def _roles(env: dict[str, Any]) -> dict[str, str]:
    from evoarena.envs import make

    world = make(env["id"], **env.get("kwargs", {}))
    try:
        return {a: world.role(a) for a in world.possible_agents}
    finally:
        world.close()


def _num_actions(env: dict[str, Any], role: str) -> int:
    from evoarena.envs import make

    world = make(env["id"], **env.get("kwargs", {}))
    try:
        agent = next(a for a in world.possible_agents if world.role(a) == role)
        return int(world.action_space(agent).n)
    finally:
        world.close()


def stage_env(stage: Stage) -> dict[str, Any] | None:
    """The world a stage plays (``{"id", "kwargs"}``), or None (pretrain, NER)."""
    if stage.kind in ("train", "evaluate"):
        return stage.data.get("env")
    if stage.kind == "finetune" and stage.task == "bc":
        return stage.data["bc"].get("env")
    return None


def stage_policy_roles(stage: Stage) -> dict[str, str]:
    """role -> policy name (train) or role -> role (bc) of the policies a stage produces."""
    env = stage_env(stage)
    if env is None:
        return {}
    roles = _roles(env)
    if stage.kind == "train":
        from fnmatch import fnmatch

        out: dict[str, str] = {}
        for agent, role in roles.items():
            for pattern, seat in stage.data["seats"].items():
                if fnmatch(agent, pattern) and seat.get("policy"):
                    out.setdefault(role, seat["policy"])
                    break
        return out
    clone = stage.data["bc"].get("clone") or sorted(set(roles.values()))
    return {r: r for r in clone}


def _check_transfer(stage: Stage, where: str) -> None:
    """An init_from policy checkpoint must be of this stage's world and action space."""
    env = stage_env(stage)
    if env is None or stage.init is None:
        return
    src = stage.init
    if isinstance(src, Stage):
        src_env = stage_env(src)
        if src_env is None:  # an encoder (pretrain / NER): any world
            return
        if src_env["id"] != env["id"]:
            raise ConfigError(f"{where}: init_from = stage:{src.name}: that stage's policies play {src_env['id']}, "
                              f"this stage plays {env['id']}; start from an encoder stage (pretrain) instead")
        for role in stage_policy_roles(stage):
            if role in stage_policy_roles(src) and _num_actions(src_env, role) != _num_actions(env, role):
                raise ConfigError(f"{where}: init_from = stage:{src.name}: role {role!r} has "
                                  f"{_num_actions(src_env, role)} actions there and {_num_actions(env, role)} here "
                                  f"(the world's kwargs differ)")
        return
    from evoarena.policies.io import read_policy_json

    if not (Path(src) / "policy.json").is_file():
        return  # a Hugging Face / pretrain folder: an encoder for any world
    meta = read_policy_json(src)
    if meta["env_id"] != env["id"]:
        raise ConfigError(f"{where}: init_from = {src!r} is a policy for {meta['env_id']}, this stage plays "
                          f"{env['id']}")
    role = meta.get("role")
    if role and role in _roles(env).values() and int(meta["num_actions"]) != _num_actions(env, role):
        raise ConfigError(f"{where}: init_from = {src!r} has {meta['num_actions']} actions for role {role!r}; "
                          f"{env['id']} with these kwargs has {_num_actions(env, role)}")


def _validate_stage(stage: Stage, source: str, where: str, run_dir: Path | None) -> BaseModel:
    """The stage's config model, with every init_from slot pointing at the checkpoint it will use (an
    earlier stage's checkpoint may not exist yet: the slot is validated empty, and filled when it runs)."""
    from evoarena.training.checks import check_config

    data = json.loads(json.dumps(stage.data))
    for key_path, holder, key in _init_slots(stage.kind, data):
        holder[key] = init_path(stage, run_dir, holder_role(stage, key_path)) if run_dir is not None else None
    cfg = validate_config(data, MODELS[stage.kind], source=f"{source}: {where}")
    check_config(cfg, source=f"{source}: {where}")
    return cfg


def holder_role(stage: Stage, key_path: str) -> str | None:
    """The role of the learner whose init_from is at ``key_path`` (train stages), else None."""
    if stage.kind != "train":
        return None
    name = key_path.split(".")[1]
    for role, policy in stage_policy_roles(stage).items():
        if policy == name:
            return role
    return None


def plan(pc: PipelineConfig, source: str = "<pipeline>") -> list[Stage]:
    """Every stage of ``pc`` validated (schema, world, agents, init_from), before any work starts."""
    planned: list[Stage] = []
    for i, raw in enumerate(pc.stages):
        where = _where(i, raw)
        data, spec = _stage_data(pc, raw)
        stage = Stage(i + 1, raw["kind"], data["name"], data, None)
        stage.init = _resolve_init(spec, planned, where, stage.kind)
        if stage.init is not None and not _init_slots(stage.kind, json.loads(json.dumps(data))):
            if spec != "previous":
                raise ConfigError(f"{where}: init_from = {spec!r}: this stage has no transformer policy to start")
            stage.init = None
        _validate_stage(stage, source, where, None)
        _check_transfer(stage, where)
        planned.append(stage)
    return planned


def init_path(stage: Stage, run_dir: Path | None, role: str | None) -> str | None:
    """The folder a stage's policy (of ``role``) starts from."""
    src = stage.init
    if src is None:
        return None
    if isinstance(src, str):
        return src
    assert run_dir is not None
    return str(stage_checkpoint(src, run_dir, role))


def stage_checkpoint(stage: Stage, run_dir: Path, role: str | None = None) -> Path:
    """The checkpoint a finished stage hands on (for ``role`` when it made one per role)."""
    folder = stage.folder(run_dir)
    if stage.kind in ("pretrain",) or (stage.kind == "finetune" and stage.task == "ner"):
        return folder / "checkpoint"
    made = stage_policy_roles(stage)
    if role is None or role not in made:
        if len(made) != 1:
            raise ConfigError(f"stage {stage.name}: made policies for roles {sorted(made)}; name one")
        role = next(iter(made))
    if stage.kind == "finetune":
        return folder / "checkpoint" if len(made) == 1 else folder / "checkpoint" / role
    best = folder / "best" / "policies" / made[role]
    return best if best.is_dir() else folder / "checkpoint" / "policies" / made[role]


# --------------------------------------------------------------------------- running


def load_pipeline(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read and validate a pipeline config file (``--set`` overrides applied; ``stages.NAME.key=value``)."""
    data = apply_overrides(read_yaml(path), overrides)
    if "stages" not in data:
        raise ConfigError(f"{path}: no 'stages:' list; a pipeline config lists stages (pretrain, finetune, train, "
                          f"evaluate). A single-stage config runs with `evoarena pretrain|finetune|train`")
    return validate_config(data, PipelineConfig, source=str(path))


def _read_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE_FILE
    return read_json(path) if path.is_file() else {"stages": {}}


def _write_state(run_dir: Path, state: dict[str, Any]) -> None:
    runs.atomic_write_text(run_dir / STATE_FILE, json.dumps(state, indent=1, default=float))


def stage_length(kind: str, results: dict[str, Any]) -> int:
    """How many steps a finished stage used on the run's step axis."""
    if kind == "pretrain":
        return int(results.get("steps", 0))
    if kind == "train":
        return int(results.get("updates", 0))
    if kind == "finetune":
        if results.get("task") == "bc":
            return max((int(r.get("steps", 0)) for r in results.get("roles", {}).values()), default=0)
        return int(results.get("steps", 0))
    return 0


def _run_stage(stage: Stage, cfg: BaseModel, run_dir: Path, resume: bool, planned: list[Stage]) -> dict[str, Any]:
    if stage.kind == "evaluate":
        from evoarena.training.evaluate import StageAgent, run_evaluate

        agents = [StageAgent(s.name, s.key, AGENT_LABELS.get(s.task if s.kind == "finetune" else s.kind, s.kind),
                             *_agent_source(s, planned, run_dir),
                             teacher=s.data["bc"].get("expert") if s.task == "bc" else None)
                  for s in planned if s.index < stage.index and s.makes_checkpoint()]
        return run_evaluate(cfg, run_dir, agents, resume=resume)
    from evoarena.training.stages import STAGES

    _model, fn = STAGES[stage.kind]
    return fn(cfg, run_dir, resume=resume)


def _agent_source(stage: Stage, planned: list[Stage], run_dir: Path) -> tuple[dict[str, str], Any]:
    """(role -> checkpoint folder, policy config for fresh heads or None) of a stage's agent."""
    if stage.kind == "pretrain" or (stage.kind == "finetune" and stage.task == "ner"):
        # an encoder: the agent is this encoder with untrained heads, as the next policy stage builds it
        for later in planned:
            if later.index > stage.index and later.init is stage:
                policy = _policy_data(later)
                if policy is not None:
                    return {"*": str(stage_checkpoint(stage, run_dir))}, policy
        return {}, None
    return {role: str(stage_checkpoint(stage, run_dir, role)) for role in stage_policy_roles(stage)}, None


def _policy_data(stage: Stage) -> dict[str, Any] | None:
    if stage.kind == "finetune" and stage.task == "bc":
        return dict(stage.data["bc"].get("policy", {}))
    if stage.kind == "train":
        for lc in stage.data["policies"].values():
            return dict(lc.get("policy", {}))
    return None


def run_pipeline(config: str | Path | PipelineConfig, overrides: list[str] | None = None,
                 run_dir: str | Path | None = None, resume: bool = False) -> dict[str, Any]:
    """Run (or, with ``resume``, continue) a pipeline; returns ``results.json``.

    ``config`` is a YAML path or a :class:`PipelineConfig`; with ``resume`` and no config, the run folder's
    own ``config.yaml`` is used.
    """
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)  # a summary is one line, also in a log file
    if resume:
        if run_dir is None:
            raise ValueError("resume needs the run folder")
        run_dir = Path(run_dir)
        source = str(run_dir / runs.CONFIG_FILE)
        if not Path(source).is_file():
            raise FileNotFoundError(f"{run_dir}: no {runs.CONFIG_FILE}; not a run folder to resume")
        pc = load_pipeline(source, overrides)
    else:
        pc = config if isinstance(config, PipelineConfig) else load_pipeline(config, overrides)
        source = str(config) if not isinstance(config, PipelineConfig) else "<pipeline>"
        run_dir = Path(run_dir) if run_dir else Path("runs") / pc.name
    planned = plan(pc, source)
    runs.create_run(run_dir, pc, resume=resume)
    if resume and overrides:  # the folder's config says what the rest of the run does
        runs.atomic_write_text(run_dir / runs.CONFIG_FILE, dump_config(pc))
    state = _read_state(run_dir)
    n = len(planned)
    offset = 0
    for stage in planned:
        st = state["stages"].get(stage.key, {})
        if st.get("status") == "done":
            console.print(f"[dim]stage {stage.index}/{n} {stage.name}: done (skipped)[/dim]")
            offset = int(st["step_offset"]) + int(st["length"]) + 1
            continue
        cfg = _validate_stage(stage, source, _where(stage.index - 1, {"name": stage.name}), run_dir)
        started = bool(st)
        state["stages"][stage.key] = {"name": stage.name, "kind": stage.kind, "status": "running",
                                      "step_offset": offset, "started_at": st.get("started_at", time.time())}
        _write_state(run_dir, state)
        console.rule(f"stage {stage.index}/{n}: {stage.name} ({stage.task})")
        t0 = time.perf_counter()
        slot = runs.StageSlot(stage.index, stage.key, offset, f"[{stage.index}/{n}]")
        with runs.in_stage(slot):
            results = _run_stage(stage, cfg, run_dir, started, planned)
        length = stage_length(stage.kind, results)
        state["stages"][stage.key].update(status="done", length=length, wall_s=time.perf_counter() - t0,
                                          prior_wall_s=st.get("wall_s", 0.0), finished_at=time.time())
        _write_state(run_dir, state)
        if results.get("summary"):
            console.print(f"stage {stage.index}/{n} {stage.name}: {results['summary']}")
        offset += length + 1
    summary = {"name": pc.name, "stages": [{"key": s.key, "name": s.name, "kind": s.kind, "task": s.task,
                                            **state["stages"][s.key]} for s in planned]}
    return runs.update_results(run_dir, "pipeline", summary)



# --------------------------------------------------------------------------- commands

STAGE_COMMANDS = ("pretrain", "finetune", "train")


def load_command(command: str, config: str | Path, overrides: list[str] | None = None) -> BaseModel:
    """The validated config of ``evoarena COMMAND CONFIG --set ...``: for ``run``, a pipeline whose every stage
    is planned and checked; for a stage command, the stage's config with its world and agents checked."""
    if command == "run":
        pc = load_pipeline(config, overrides)
        plan(pc, str(config))
        return pc
    if command not in STAGE_COMMANDS:
        raise ValueError(f"unknown command {command!r}; known: run, {', '.join(STAGE_COMMANDS)}")
    from evoarena.training.checks import load_checked

    return load_checked(config, MODELS[command], overrides)


def run_command(command: str, config: str | Path | None, overrides: list[str] | None = None,
                run_dir: str | Path | None = None, resume: bool = False) -> tuple[Path, dict[str, Any]]:
    """``evoarena COMMAND``: load and check the config (with ``resume``, the run folder's own ``config.yaml``),
    create or reopen the run folder, run it; returns (run folder, results). The CLI and sweeps both call it."""
    if resume and run_dir is None:
        raise ValueError(f"evoarena {command}: --resume needs the run folder")
    if command == "run":
        results = run_pipeline(config, overrides, run_dir=run_dir, resume=resume)
        return Path(run_dir or Path("runs") / results["pipeline"]["name"]), results
    if resume:
        cfg = load_command(command, Path(run_dir) / runs.CONFIG_FILE, overrides)  # type: ignore[arg-type]
    elif config is None:
        raise ValueError(f"evoarena {command}: give a CONFIG file, or --resume RUN_DIR")
    else:
        cfg = load_command(command, config, overrides)
    run_dir = Path(run_dir) if run_dir else Path("runs") / cfg.name  # type: ignore[attr-defined]
    runs.create_run(run_dir, cfg, resume=resume)
    from evoarena.training.stages import STAGES

    return run_dir, STAGES[command][1](cfg, run_dir, resume=resume)
