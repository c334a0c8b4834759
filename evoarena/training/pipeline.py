"""``evoarena run``: the chain (pretrain -> finetune -> train -> evaluate) as one pipeline in one run folder.

A pipeline config (:class:`evoarena.config.PipelineConfig`) lists stages in order: each entry is one of the
stage configs (a discriminated union on ``kind``) plus ``name`` and ``init_from`` (``previous`` by default:
the closest earlier stage's checkpoint; ``stage:NAME``; a folder; ``none``). Before the first stage starts,
every stage is validated: its keys by its schema, its world and agents by :mod:`evoarena.training.infra.checks`, and its
``init_from`` (an earlier stage, an existing folder, the same world and action space). Errors name the
stage and the key.

Stage ``k`` writes ``stages/NN_KIND/`` and the results key ``NN_KIND``; its TensorBoard steps start where
stage ``k-1``'s ended, so ``tensorboard --logdir runs/NAME`` shows the whole evolution on one axis.
``pipeline.json`` records each stage's state; ``--resume`` skips finished stages and resumes the
interrupted one from its last checkpoint. A finished stage whose config now asks for more (a train stage
resumed with a larger ``total_updates``) continues from its last state, and every stage after it runs again;
any other ``--set`` change to a finished stage is refused, as it would be ignored.

The pipeline knows no stage kind: each planned stage is a registered
:class:`~evoarena.training.protocol.StageKind` (:mod:`evoarena.training.stages`) that says which world it plays,
which policy roles it produces, where its checkpoint is and how many steps it logs; it runs with an explicit
:class:`~evoarena.training.protocol.StageContext`. :func:`run_command` is the one way the CLI and sweeps run
any command (load and check the config, create or reopen the run folder, run it).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from evoarena.config import (
    ConfigError,
    PipelineConfig,
    apply_overrides,
    dump_config,
    read_yaml,
    validate_config,
)
from evoarena.envs import WorldInfo, describe
from evoarena.storage import atomic_write_text, read_json
from evoarena.training.infra import runs
from evoarena.training.protocol import StageAgent, StageContext, StageKind
from evoarena.training.stages import COMMANDS, run_stage, stage_of

STATE_FILE = "pipeline.json"


@dataclass
class Stage:
    """One planned stage: its place, its kind (a registered :class:`StageKind`), name, validated config data
    and where it starts from."""

    index: int
    kind: StageKind
    name: str
    data: dict[str, Any]  #: the stage's own config keys (kind/name/init_from removed, defaults filled)
    init: Stage | str | None  #: an earlier stage, a folder, or None (no transferred weights)

    @property
    def key(self) -> str:
        return f"{self.index:02d}_{self.kind.kind}"

    @property
    def task(self) -> str:
        return self.kind.name.rpartition(":")[2]

    def folder(self, run_dir: Path) -> Path:
        return Path(run_dir) / "stages" / self.key

    def env(self) -> dict[str, Any] | None:
        return self.kind.env(self.data)

    def policy_roles(self) -> dict[str, str]:
        return self.kind.policy_roles(self.data) if self.env() is not None else {}

    def checkpoint(self, run_dir: Path, role: str | None = None) -> Path:
        """The checkpoint the finished stage hands on (for ``role`` when it made one per role)."""
        made = self.policy_roles()
        if made and (role is None or role not in made):
            if len(made) != 1:
                raise ConfigError(f"stage {self.name}: made policies for roles {sorted(made)}; name one")
            role = next(iter(made))
        return self.kind.checkpoint(self.data, self.folder(run_dir), role)


# --------------------------------------------------------------------------- planning


def _stage_data(entry: BaseModel) -> tuple[dict[str, Any], str]:
    """(a pipeline entry's own stage config keys, as given with the pipeline's defaults, its init_from spec)."""
    data = entry.model_dump(mode="json", exclude_unset=True)
    data.pop("kind")
    data.pop("init_from", None)
    init = entry.init_from  # type: ignore[attr-defined]
    return data, "none" if init is None else str(init)


def _resolve_init(spec: str, planned: list[Stage], where: str, kind: StageKind) -> Stage | str | None:
    if spec in ("none", "null", ""):
        return None
    if not kind.takes_init:
        if spec == "previous":
            return None
        raise ConfigError(f"{where}: init_from = {spec!r}: a {kind.kind} stage takes no init_from")
    if spec == "previous":
        earlier = [s for s in planned if s.kind.makes_checkpoint]
        return earlier[-1] if earlier else None
    if spec.startswith("stage:"):
        name = spec.split(":", 1)[1]
        match = [s for s in planned if s.name == name]
        if not match:
            raise ConfigError(f"{where}: init_from = {spec!r}: no earlier stage is named {name!r}; earlier "
                              f"stages: {', '.join(s.name for s in planned) or 'none'}")
        if not match[0].kind.makes_checkpoint:
            raise ConfigError(f"{where}: init_from = {spec!r}: stage {name!r} ({match[0].kind.kind}) makes no "
                              f"checkpoint")
        return match[0]
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{where}: init_from = {spec!r}: no such folder {str(path.absolute())!r} (give "
                          f"previous, stage:NAME, none, or an existing checkpoint folder)")
    return str(path)


def _world(env: dict[str, Any]) -> WorldInfo:
    return describe(env["id"], env.get("kwargs", {}))


def _check_transfer(stage: Stage, where: str) -> None:
    """An init_from policy checkpoint must be of this stage's world and action space."""
    env = stage.env()
    if env is None or stage.init is None:
        return
    src = stage.init
    if isinstance(src, Stage):
        src_env = src.env()
        if src_env is None:  # an encoder (pretrain / NER): any world
            return
        if src_env["id"] != env["id"]:
            raise ConfigError(f"{where}: init_from = stage:{src.name}: that stage's policies play {src_env['id']}, "
                              f"this stage plays {env['id']}; start from an encoder stage (pretrain) instead")
        theirs, ours = _world(src_env).num_actions, _world(env).num_actions
        for role in stage.policy_roles():
            if role in src.policy_roles() and theirs[role] != ours[role]:
                raise ConfigError(f"{where}: init_from = stage:{src.name}: role {role!r} has {theirs[role]} actions "
                                  f"there and {ours[role]} here (the world's kwargs differ)")
        return
    from evoarena.policies.io import read_policy_json

    if not (Path(src) / "policy.json").is_file():
        return  # a Hugging Face / pretrain folder: an encoder for any world
    meta = read_policy_json(src)
    if meta["env_id"] != env["id"]:
        raise ConfigError(f"{where}: init_from = {src!r} is a policy for {meta['env_id']}, this stage plays "
                          f"{env['id']}")
    role, ours = meta.get("role"), _world(env).num_actions
    if role and role in ours and int(meta["num_actions"]) != ours[role]:
        raise ConfigError(f"{where}: init_from = {src!r} has {meta['num_actions']} actions for role {role!r}; "
                          f"{env['id']} with these kwargs has {ours[role]}")


def _validate_stage(stage: Stage, source: str, where: str, run_dir: Path | None) -> BaseModel:
    """The stage's config model, with every init_from slot pointing at the checkpoint it will use (an
    earlier stage's checkpoint may not exist yet: the slot is validated empty, and filled when it runs)."""
    from evoarena.training.infra.checks import check_config

    data = json.loads(json.dumps(stage.data))
    for slot in stage.kind.init_slots(data):
        slot.holder[slot.key] = init_path(stage, run_dir, _role_of(stage, slot.policy)) if run_dir else None
    cfg = validate_config(data, stage.kind.config, source=f"{source}: {where}")
    check_config(cfg, source=f"{source}: {where}")
    return cfg


def _role_of(stage: Stage, policy: str | None) -> str | None:
    """The first role the learner ``policy`` plays in a train stage (None for other stages)."""
    return next((role for role, name in stage.policy_roles().items() if name == policy), None) if policy else None


def plan(pc: PipelineConfig, source: str = "<pipeline>") -> list[Stage]:
    """Every stage of ``pc`` validated (schema, world, agents, init_from), before any work starts."""
    planned: list[Stage] = []
    configs: list[tuple[Stage, BaseModel]] = []
    for i, entry in enumerate(pc.stages):
        where = f"stage {i + 1} ({entry.name})"
        kind = stage_of(entry)
        data, spec = _stage_data(entry)
        stage = Stage(i + 1, kind, data["name"], data, None)
        stage.init = _resolve_init(spec, planned, where, kind)
        if stage.init is not None and not kind.init_slots(json.loads(json.dumps(data))):
            if spec != "previous":
                raise ConfigError(f"{where}: init_from = {spec!r}: this stage has no transformer policy to start")
            stage.init = None
        configs.append((stage, _validate_stage(stage, source, where, None)))
        _check_transfer(stage, where)
        planned.append(stage)
    _check_honest_selection(configs, source)
    return planned


def _check_honest_selection(planned: list[tuple[Stage, BaseModel]], source: str) -> None:
    """A train stage that hands on its best checkpoint (``hand_on: best``) picks it by its own greedy evaluations:
    their games must not be any of a later evaluate stage's games, or the evaluate table would score the agent on
    the games it was picked on."""
    for ev, ecfg in ((s, c) for s, c in planned if s.kind.kind == "evaluate"):
        lo, hi = ecfg.eval_seed, ecfg.eval_seed + ecfg.episodes  # type: ignore[attr-defined]
        for tr, tcfg in ((s, c) for s, c in planned if s.kind.kind == "train" and s.index < ev.index
                         and c.hand_on == "best"):  # type: ignore[attr-defined]
            a, b = tcfg.eval.seed, tcfg.eval.seed + tcfg.eval.episodes  # type: ignore[attr-defined]
            if a < hi and lo < b:
                raise ConfigError(f"{source}: stage {tr.index} ({tr.name}): eval.seed = {a}: its selection games "
                                  f"(seeds {a}..{b - 1}) overlap the games of stage {ev.index} ({ev.name}) (eval_seed "
                                  f"{lo}..{hi - 1}); the best checkpoint must be chosen on other games")


def init_path(stage: Stage, run_dir: Path | None, role: str | None) -> str | None:
    """The folder a stage's policy (of ``role``) starts from."""
    src = stage.init
    if src is None:
        return None
    if isinstance(src, str):
        return src
    assert run_dir is not None
    return str(src.checkpoint(run_dir, role))


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
    atomic_write_text(run_dir / STATE_FILE, json.dumps(state, indent=1, default=float))


def _earlier_agents(stage: Stage, planned: list[Stage], run_dir: Path) -> tuple[StageAgent, ...]:
    """The agents the stages before ``stage`` produced (what an evaluate stage plays)."""
    return tuple(StageAgent(s.name, s.key, s.kind.agent_label or s.kind.kind, *_agent_source(s, planned, run_dir),
                            teacher=s.kind.teacher(s.data))
                 for s in planned if s.index < stage.index and s.kind.makes_checkpoint)


def _agent_source(stage: Stage, planned: list[Stage], run_dir: Path) -> tuple[dict[str, str], Any]:
    """(role -> checkpoint folder, policy config for fresh heads or None) of a stage's agent."""
    if stage.env() is None:
        # an encoder: the agent is this encoder with untrained heads, as the next policy stage builds it
        for later in planned:
            if later.index > stage.index and later.init is stage:
                policy = later.kind.agent_policy(later.data)
                if policy is not None:
                    return {"*": str(stage.checkpoint(run_dir))}, policy
        return {}, None
    return {role: str(stage.checkpoint(run_dir, role)) for role in stage.policy_roles()}, None


def _restart(stage: Stage, run_dir: Path) -> dict[str, Any]:
    """Clear the folder of a stage that must start afresh (a stage before it ran again); returns its new state."""
    shutil.rmtree(stage.folder(run_dir), ignore_errors=True)
    return {}


def _check_finished_unchanged(old: PipelineConfig, new: PipelineConfig, planned: list[Stage],
                              state: dict[str, Any], results: dict[str, Any]) -> None:
    """A resume's ``--set`` may change a finished stage only where the change takes effect: the stage continues
    (a train stage's larger ``total_updates``) or an earlier stage runs again (every later one then starts
    afresh). Any other change to a finished stage would be ignored without a word: refuse it, naming the stage
    and the keys, before the run folder's config is touched. ``threads`` and ``name`` change no result and are free."""
    for i, stage in enumerate(planned):
        if state["stages"].get(stage.key, {}).get("status") != "done" or i >= len(old.stages):
            return  # this stage runs, and every later one starts afresh
        if stage.kind.has_more(stage.data, results.get(stage.key, {})):
            return
        (before, init_before), (now, init_now) = _stage_data(old.stages[i]), _stage_data(new.stages[i])
        changed = sorted(k for k in set(before) | set(now)
                         if k not in ("threads", "name") and before.get(k) != now.get(k))
        changed += ["init_from"] if init_before != init_now else []
        if changed:
            raise ConfigError(f"stage {stage.index} ({stage.name}) is finished; --set changes its "
                              f"{', '.join(changed)}, which it would ignore (a finished stage continues only to a "
                              f"larger total_updates of a train stage); resume without that change, or run the "
                              f"changed config in a new run folder")


def _pipeline_config(config: str | Path | PipelineConfig | None, overrides: list[str] | None,
                     run_dir: str | Path | None, resume: bool) -> tuple[PipelineConfig, str, Path]:
    """(the pipeline config, where it was read, the run folder); with ``resume``, the run folder's config."""
    if resume:
        if run_dir is None:
            raise ValueError("resume needs the run folder")
        source = str(Path(run_dir) / runs.CONFIG_FILE)
        if not Path(source).is_file():
            raise FileNotFoundError(f"{run_dir}: no {runs.CONFIG_FILE}; not a run folder to resume")
        return load_pipeline(source, overrides), source, Path(run_dir)
    assert config is not None
    pc = config if isinstance(config, PipelineConfig) else load_pipeline(config, overrides)
    source = str(config) if not isinstance(config, PipelineConfig) else "<pipeline>"
    return pc, source, Path(run_dir) if run_dir else Path("runs") / pc.name


def run_pipeline(config: str | Path | PipelineConfig, overrides: list[str] | None = None,
                 run_dir: str | Path | None = None, resume: bool = False) -> dict[str, Any]:
    """Run (or, with ``resume``, continue) a pipeline; returns ``results.json``.

    ``config`` is a YAML path or a :class:`PipelineConfig`; with ``resume`` and no config, the run folder's
    own ``config.yaml`` is used.
    """
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)  # a summary is one line, also in a log file
    pc, source, run_dir = _pipeline_config(config, overrides, run_dir, resume)
    planned = plan(pc, source)
    if resume and overrides:
        _check_finished_unchanged(load_pipeline(source), pc, planned, _read_state(Path(run_dir)),
                                  runs.read_results(Path(run_dir)))
    runs.create_run(run_dir, pc, resume=resume)
    if resume and overrides:  # the folder's config says what the rest of the run does
        atomic_write_text(run_dir / runs.CONFIG_FILE, dump_config(pc))
    state = _read_state(run_dir)
    n = len(planned)
    offset = 0
    ran = False  # a stage ran in this call: every later one then starts afresh from its new input
    for stage in planned:
        st = state["stages"].get(stage.key, {})
        if st and ran:
            st = _restart(stage, run_dir)
        elif st.get("status") == "done":
            if not stage.kind.has_more(stage.data, runs.read_results(run_dir).get(stage.key, {})):
                console.print(f"[dim]stage {stage.index}/{n} {stage.name}: done (skipped)[/dim]")
                offset = int(st["step_offset"]) + int(st["length"]) + 1
                continue
            console.print(f"stage {stage.index}/{n} {stage.name}: done, and its config now asks for more: "
                          f"continuing it, then every later stage afresh")
        ran = True
        cfg = _validate_stage(stage, source, f"stage {stage.index} ({stage.name})", run_dir)
        started = bool(st)
        state["stages"][stage.key] = {"name": stage.name, "kind": stage.kind.kind, "status": "running",
                                      "step_offset": offset, "started_at": st.get("started_at", time.time())}
        _write_state(run_dir, state)
        console.rule(f"stage {stage.index}/{n}: {stage.name} ({stage.task})")
        t0 = time.perf_counter()
        ctx = StageContext(run_dir, stage.folder(run_dir), stage.key, offset, f"[{stage.index}/{n}]", started,
                           earlier=_earlier_agents(stage, planned, run_dir))
        results = run_stage(stage.kind, cfg, ctx)
        length = stage.kind.length(results)
        state["stages"][stage.key].update(status="done", length=length, wall_s=time.perf_counter() - t0,
                                          prior_wall_s=st.get("wall_s", 0.0), finished_at=time.time())
        _write_state(run_dir, state)
        if results.get("summary"):
            console.print(f"stage {stage.index}/{n} {stage.name}: {results['summary']}")
        offset += length + 1
    summary = {"name": pc.name, "stages": [{"key": s.key, "name": s.name, "kind": s.kind.kind, "task": s.task,
                                            **state["stages"][s.key]} for s in planned]}
    return runs.update_results(run_dir, "pipeline", summary)



# --------------------------------------------------------------------------- commands

def load_command(command: str, config: str | Path, overrides: list[str] | None = None) -> BaseModel:
    """The validated config of ``evoarena COMMAND CONFIG --set ...``: for ``run``, a pipeline whose every stage
    is planned and checked; for a stage command, the stage's config with its world and agents checked."""
    if command == "run":
        pc = load_pipeline(config, overrides)
        plan(pc, str(config))
        return pc
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}; known: run, {', '.join(COMMANDS)}")
    from evoarena.training.infra.checks import load_checked

    return load_checked(config, COMMANDS[command], overrides)


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
    stage = stage_of(cfg)
    return run_dir, run_stage(stage, cfg, StageContext.standalone(run_dir, stage.folder, resume))
