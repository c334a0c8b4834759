"""The stage protocol: what every stage is (:class:`StageKind`) and what it is handed (:class:`StageContext`).

A stage module (pretrain, ner, bc, ppo, evaluate) exports one :class:`StageKind`: its registry name, the
pipeline ``kind`` it answers to, its config model, ``run(cfg, ctx) -> results`` and what a pipeline must know
of it before it runs (the world it plays, the policy roles it produces, where its checkpoint is, how many
steps it logs). :mod:`evoarena.training.stages` registers them; the CLI, sweeps and pipelines run a stage
through :func:`evoarena.training.stages.run_stage` with an explicit :class:`StageContext`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from evoarena.config import STAGES
from evoarena.training.infra import runs

#: a stage folder's former names (single-stage run folders written under them still resume)
FORMER_FOLDERS = {"train": "ppo"}


@dataclass
class StageAgent:
    """The agent one stage of a chain produced (what the evaluate stage plays): role -> checkpoint folder
    (``*``: every role); with ``fresh_policy`` the folder is an encoder and the agent is that policy config
    built on it."""

    name: str
    key: str
    label: str
    checkpoints: dict[str, str]
    fresh_policy: dict[str, Any] | None = None
    teacher: str | None = None  #: a behaviour-cloned stage's expert spec
    source: str = ""  #: which checkpoint it is and how it was chosen (shown in the report)


@dataclass(frozen=True)
class StageContext:
    """Where a running stage writes: the run folder, its own folder (``stages/NN_NAME``), its results key,
    where its steps start on the run's one TensorBoard axis, its progress label, whether it resumes, and (for
    the evaluate stage) the agents the earlier stages of the chain produced."""

    run_dir: Path
    stage_dir: Path
    key: str
    step_offset: int = 0
    label: str = ""
    resume: bool = False
    progress: bool = True
    earlier: tuple[StageAgent, ...] = field(default_factory=tuple)

    @classmethod
    def standalone(cls, run_dir: str | Path, folder: str, resume: bool = False,
                   progress: bool = True) -> StageContext:
        """The context of a single-stage command: ``stages/01_FOLDER``, results key ``FOLDER``, steps from 0. A
        resumed run folder written before the stage took this name (``train`` was ``ppo``) keeps its old name."""
        run_dir = Path(run_dir)
        old = FORMER_FOLDERS.get(folder)
        if resume and old and not (run_dir / "stages" / f"01_{folder}").exists() and (
                run_dir / "stages" / f"01_{old}").exists():
            folder = old
        return cls(run_dir, run_dir / "stages" / f"01_{folder}", folder, resume=resume, progress=progress)

    def folder(self) -> Path:
        """The stage folder, created."""
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        return self.stage_dir

    def writer(self, purge_step: int | None = None) -> Any:
        """The run's TensorBoard writer with this stage's steps shifted onto the run's axis; ``purge_step`` (the
        stage's own step) drops what an interrupted process logged from there on."""
        return runs.tb_writer(self.run_dir, purge_step, self.step_offset)

    def describe(self, text: str) -> str:
        """A progress line's label: ``text`` after the pipeline's ``[k/n]``."""
        return f"{self.label} {text}" if self.label else text

    def results(self) -> dict[str, Any]:
        """What this stage recorded in ``results.json`` (empty before it first finished)."""
        return runs.read_results(self.run_dir).get(self.key, {})

    def write_results(self, value: dict[str, Any]) -> dict[str, Any]:
        """Set this stage's entry of ``results.json`` atomically; returns the whole results."""
        return runs.update_results(self.run_dir, self.key, value)


@dataclass(frozen=True)
class InitSlot:
    """A place in a stage's config data that takes transferred weights (``init_from``)."""

    path: str  #: the key path a person reads, e.g. ``policies.main.policy.init_from``
    holder: dict[str, Any]  #: the mapping that holds the key
    key: str = "init_from"
    policy: str | None = None  #: the learner it starts (train stages)


class StageKind:
    """One kind of stage. Subclasses set the class attributes and ``run``; the defaults describe a stage that
    plays no world and hands on ``stages/NN_NAME/checkpoint``. ``data`` is the stage's config as plain data."""

    name: str  #: registry name: pretrain, finetune:ner, finetune:bc, train, evaluate
    kind: str  #: what a pipeline stage says in ``kind:``
    config: type[BaseModel]
    agent_label: str = ""  #: how the evaluate stage describes the agent it produced
    makes_checkpoint: bool = True
    takes_init: bool = True  #: whether ``init_from`` may start it from earlier weights

    @property
    def folder(self) -> str:
        """A single-stage command's folder and results key (``stages/01_FOLDER``): its kind's, in
        :data:`evoarena.config.STAGES`."""
        return STAGES[self.kind].folder

    def run(self, cfg: Any, ctx: StageContext) -> dict[str, Any]:
        raise NotImplementedError

    def env(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """The world the stage plays (``{"id", "kwargs"}``), or None."""
        return None

    def policy_roles(self, data: dict[str, Any]) -> dict[str, str]:
        """role -> policy name of the policies the stage produces."""
        return {}

    def init_slots(self, data: dict[str, Any]) -> list[InitSlot]:
        """Every place that takes the weights the stage starts from (a learner naming its own keeps it)."""
        return []

    def checkpoint(self, data: dict[str, Any], folder: Path, role: str | None = None) -> Path:
        """The checkpoint the finished stage hands on (for ``role`` when it made one per role)."""
        return folder / "checkpoint"

    def length(self, results: dict[str, Any]) -> int:
        """How many steps the finished stage used on the run's step axis."""
        return int(results.get("steps", 0))

    def has_more(self, data: dict[str, Any], results: dict[str, Any]) -> bool:
        """Whether a finished stage (its ``results``) has more to do under its config ``data`` now (a train stage
        resumed with a larger ``total_updates``): it then continues from its last state."""
        return False

    def agent_policy(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """The policy config a stage builds on an encoder it starts from (an encoder stage's agent)."""
        return None

    def teacher(self, data: dict[str, Any]) -> str | None:
        """The expert a behaviour-cloned stage imitates."""
        return None
