"""The registry of stages: every stage kind, by the name a pipeline or a command gives it.

``pretrain``, ``finetune:ner``, ``finetune:bc``, ``train`` and ``evaluate``; each is the one
:class:`~evoarena.training.protocol.StageKind` its module exports as ``STAGE``. :func:`run_stage` is how the
CLI, sweeps and pipelines run any of them; :func:`run_standalone` runs one into a run folder of its own (what
``evoarena pretrain|finetune|train`` do, and what scripts and tests call).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from evoarena.config import STAGE_COMMANDS
from evoarena.training import evaluate
from evoarena.training.protocol import StageContext, StageKind
from evoarena.training.rl import train_stage
from evoarena.training.supervised import bc, ner, pretrain

REGISTRY: dict[str, StageKind] = {s.name: s for s in (pretrain.STAGE, ner.STAGE, bc.STAGE, train_stage.STAGE,
                                                      evaluate.STAGE)}
"""Every stage, by registry name; their kinds are :data:`evoarena.config.STAGES`' (a test checks it)."""
COMMANDS: dict[str, Any] = STAGE_COMMANDS
"""The stage commands (``evoarena pretrain|finetune|train``) and the config model each reads (``finetune``: the
tagged union of the ner and bc configs), from :data:`evoarena.config.STAGES`."""


def stage_of(cfg: BaseModel) -> StageKind:
    """The stage that runs config ``cfg``: the one whose config model it is (a pipeline's entry: an instance of
    it)."""
    for stage in REGISTRY.values():
        if isinstance(cfg, stage.config):
            return stage
    raise TypeError(f"no stage runs a {type(cfg).__name__}")


def run_stage(stage: StageKind, cfg: BaseModel, ctx: StageContext) -> dict[str, Any]:
    """Run (``ctx.resume``: continue) ``stage`` with config ``cfg`` where ``ctx`` says; returns its results."""
    return stage.run(cfg, ctx)


def run_standalone(cfg: BaseModel, run_dir: str | Path, resume: bool = False, progress: bool = True
                   ) -> dict[str, Any]:
    """Run the stage of ``cfg`` alone into ``run_dir`` (``stages/01_FOLDER``, results key ``FOLDER``)."""
    stage = stage_of(cfg)
    return run_stage(stage, cfg, StageContext.standalone(run_dir, stage.folder, resume, progress))
