"""The stages a run can contain: name -> (config model, function(cfg, run_dir, resume) -> results dict)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _pretrain(cfg: Any, run_dir: Any, resume: bool = False) -> dict[str, Any]:
    from evoarena.training.pretrain import run_pretrain

    return run_pretrain(cfg, run_dir, resume=resume)


def _finetune(cfg: Any, run_dir: Any, resume: bool = False) -> dict[str, Any]:
    from evoarena.training.finetune import run_finetune

    return run_finetune(cfg, run_dir, resume=resume)


def _train(cfg: Any, run_dir: Any, resume: bool = False) -> dict[str, Any]:
    from evoarena.training.ppo import run_ppo

    return run_ppo(cfg, run_dir, resume=resume)


def _models() -> dict[str, Any]:
    from evoarena import config

    return {"pretrain": getattr(config, "PretrainConfig", None), "finetune": getattr(config, "FinetuneConfig", None),
            "train": config.TrainConfig}


class _Stages(dict):
    """Lazy table so that importing it does not import torch-heavy modules."""

    def __getitem__(self, stage: str) -> tuple[Any, Callable[..., dict[str, Any]]]:
        fns = {"pretrain": _pretrain, "finetune": _finetune, "train": _train}
        model = _models()[stage]
        if model is None:
            raise ValueError(f"stage {stage!r} is not available yet")
        return model, fns[stage]


STAGES = _Stages()
