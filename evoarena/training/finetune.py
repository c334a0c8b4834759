"""The finetune stage: ``run_finetune(cfg, run_dir, resume)`` -> results dict, by ``cfg.task``.

``task: ner`` (token classification on CoNLL files) lives in :mod:`evoarena.training.ner`, ``task: bc``
(behaviour cloning of fixed experts) in :mod:`evoarena.training.bc`; both write
``stages/01_finetune/`` of the run. What they share with the other supervised stages (optimizer,
schedule, progress bar, resumable states, loading encoder weights) is in
:mod:`evoarena.training.supervised`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from evoarena.config import FinetuneConfig
from evoarena.training.supervised import set_threads

STAGE_INDEX = 1
STAGE = "finetune"


def run_finetune(cfg: FinetuneConfig, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Run the finetune stage of ``cfg`` into ``run_dir``; returns the results (``summary``: one line)."""
    set_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if cfg.task == "ner":
        from evoarena.training.ner import run_ner

        return run_ner(cfg, Path(run_dir), resume)
    from evoarena.training.bc import run_bc

    return run_bc(cfg, Path(run_dir), resume)
