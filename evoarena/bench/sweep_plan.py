"""A sweep's plan: the run spec of every ``(variant, seed)``, its folder ``OUT/VARIANT/seed_S/``, and the checks
made before any run starts (every variant's config validates; no run folder holds another config's run).

A run spec is a picklable dict (``variant, seed, command, config, overrides, run_dir, cwd``), so that worker
processes and Ray tasks can run it (:mod:`evoarena.bench.sweep`). A run is finished once ``bench_done.json``
is in its folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from evoarena.config import SETUP_DIR, SETUP_REF, ConfigError, SweepConfig, dump_config, load_config, yaml_load

DONE_FILE = "bench_done.json"


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> SweepConfig:
    """The sweep config at ``path`` (``--set`` overrides allowed), checked."""
    return load_config(path, SweepConfig, overrides)


def out_dir(cfg: SweepConfig, out: str | Path | None = None) -> Path:
    """The sweep's folder: ``out``, else the config's ``out``, else ``runs/bench/NAME``."""
    return Path(out or cfg.out or Path("runs") / "bench" / cfg.name)


def setup_dir(root: Path, name: str) -> Path:
    """The folder of setup run ``name``: ``OUT/_setup/NAME``."""
    return (Path(root) / SETUP_DIR / name).resolve()


def _with_setup_dirs(root: Path, overrides: list[str]) -> list[str]:
    """The overrides with every ``{setup.NAME}`` replaced by that setup run's folder."""
    return [SETUP_REF.sub(lambda m: str(setup_dir(root, m.group(1))), o) for o in overrides]


def setup_plan(cfg: SweepConfig, root: Path) -> list[dict[str, Any]]:
    """One run spec per setup run (``seed`` None: the run keeps its config's seed), in config order."""
    return [{"variant": f"setup:{name}", "seed": None, "command": s.command, "config": str(Path(s.config).resolve()),
             "overrides": list(s.set), "run_dir": str(setup_dir(root, name)), "cwd": os.getcwd()}
            for name, s in cfg.setup.items()]


def plan(cfg: SweepConfig, root: Path) -> list[dict[str, Any]]:
    """One picklable run spec per (variant, seed), variant-major in config order."""
    config = str(Path(cfg.config).resolve())
    return [{"variant": v, "seed": s, "command": cfg.command, "config": config,
             "overrides": _with_setup_dirs(root, [*cfg.set, *cfg.variant(v).set, f"{cfg.seed_key}={s}"]),
             "run_dir": str((root / v / f"seed_{s}").resolve()), "cwd": os.getcwd()}
            for v in cfg.variants if cfg.variant(v).of is None for s in cfg.seeds]


def variant_runs(cfg: SweepConfig, specs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every variant (views included) -> the run specs it reads, in seed order."""
    return {v: [s for s in specs if s["variant"] == cfg.source(v)] for v in cfg.variants}


def is_done(run_dir: str | Path) -> bool:
    return (Path(run_dir) / DONE_FILE).is_file()


def _settings(config_text: str) -> Any:
    """A run's config without what the run itself records (``numerics``: its threads, device, probes)."""
    data = yaml_load(config_text) or {}
    data.pop("numerics", None)
    return data


def check_plan(cfg: SweepConfig, specs: list[dict[str, Any]]) -> None:
    """Validate every variant's config and refuse run folders made from another config, before any work."""
    from evoarena.training.infra import runs
    from evoarena.training.pipeline import load_command

    if not Path(cfg.config).is_file():
        raise ConfigError(f"sweep {cfg.name}: config = {cfg.config!r}: no such file "
                          f"(relative paths start at {os.getcwd()})")
    for spec in specs:
        if not Path(spec["config"]).is_file():
            raise ConfigError(f"sweep {cfg.name}: {spec['variant'].replace(':', '.')}.config = {spec['config']!r}: "
                              "no such file")
        try:
            text = dump_config(load_command(spec["command"], spec["config"], spec["overrides"]))
        except (ValueError, FileNotFoundError, KeyError) as exc:
            raise ConfigError(f"sweep {cfg.name}, variant {spec['variant']!r} (overrides {spec['overrides']}): "
                              f"{exc}") from None
        existing = Path(spec["run_dir"]) / runs.CONFIG_FILE
        if existing.is_file() and _settings(existing.read_text()) != _settings(text):
            raise ConfigError(f"{spec['run_dir']} holds a run of another config than variant {spec['variant']!r} "
                              f"seed {spec['seed']} now resolves to; delete that folder to run it again")
