"""Every config under configs/ loads and validates on a fresh clone, or its first error line names the
command that builds the checkpoint it needs (and that command's config validates)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evoarena.config import ConfigError, FinetuneConfig, PretrainConfig, TrainConfig, read_yaml
from evoarena.training.infra.checks import load_checked
from evoarena.training.pipeline import load_pipeline, plan

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml"))


def model_of(path: Path):
    data = read_yaml(path)
    if "task" in data:
        return FinetuneConfig
    if "policies" in data:
        return TrainConfig
    return PretrainConfig


def validate(path: Path) -> None:
    if "stages" in read_yaml(path):
        plan(load_pipeline(path), str(path))
    else:
        load_checked(path, model_of(path))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_validates_or_names_the_command_that_builds_its_start(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # configs name paths relative to the project root (runs/, ../shared/)
    try:
        validate(path)
    except ConfigError as exc:
        first = str(exc).splitlines()[0]
        m = re.search(r"it is made by `evoarena (pretrain|finetune|train) (configs/\S+\.yaml)`", first)
        assert m, f"{path.name}: {first}"
        builder = ROOT / m.group(2)
        assert builder.is_file(), first
        try:
            validate(builder)
        except ConfigError as inner:  # the builder may itself need an earlier stage: it must say which
            assert "it is made by `evoarena" in str(inner).splitlines()[0], str(inner)


def test_the_pipelines_are_pipelines():
    for name in ("quickstart.yaml",):
        assert "stages" in read_yaml(ROOT / "configs" / name)
