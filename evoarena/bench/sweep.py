"""Sweeps (``evoarena bench CONFIG``): variants x seeds of one run config, run in worker processes or as
Ray tasks, aggregated into ``bench.md``.

A sweep config (:class:`~evoarena.config.SweepConfig`) names a run ``command`` (``train | pretrain |
finetune`` run one stage; ``run`` runs a pipeline), its ``config``, ``variants`` (name -> ``--set``
overrides) and ``seeds``. Run ``(variant, seed)`` is that config with the sweep's ``set``, the variant's
overrides and ``SEED_KEY=seed``, in its own run folder ``OUT/VARIANT/seed_S/``, run through
:func:`evoarena.training.pipeline.run_command` as the CLI runs it. A re-run skips finished runs, resumes
interrupted ones (a folder with ``config.yaml`` but no ``bench_done.json``: the command's own ``--resume``)
and starts the missing ones. A folder made from another config is an error, never overwritten. An interrupt
(Ctrl-C, or SIGTERM, which ``evoarena`` turns into one) stops the sweep: the run in progress saves its state as
a single run does, no further run starts, and the same command resumes the sweep.

The parts: planning and checks (:mod:`~evoarena.bench.sweep_plan`), running (here), aggregation
(:mod:`~evoarena.bench.sweep_results`) and ``bench.md`` (:mod:`~evoarena.bench.sweep_report`); their public
names are importable from here too.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evoarena.bench.sweep_plan import (
    DONE_FILE,
    check_plan,
    is_done,
    load_sweep,
    out_dir,
    plan,
    setup_plan,
    variant_runs,
)
from evoarena.bench.sweep_report import REPORT_FILES, markdown, publish
from evoarena.bench.sweep_results import aggregate, collect_curves, collect_scores, cross_play, lookup, marl_eval
from evoarena.config import ResourcesConfig, SweepConfig

__all__ = ["DONE_FILE", "LOG_FILE", "REPORT_FILES", "SweepConfig", "aggregate", "check_plan", "collect_curves",
           "collect_scores", "cross_play", "execute_run", "is_done", "load_sweep", "lookup", "markdown", "marl_eval",
           "out_dir", "plan", "publish", "run_sweep", "setup_plan", "variant_runs"]

LOG_FILE = "bench.log"


def execute_run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run (or resume, or skip when finished) one run of a sweep; ``{"status", "wall_s", ...}``.

    A top-level function, so that worker processes and Ray tasks can run it. Output goes to the run's
    ``bench.log``.
    """
    from evoarena.training.infra import runs
    from evoarena.training.pipeline import run_command

    run_dir = Path(spec["run_dir"])
    label = {"variant": spec["variant"], "seed": spec["seed"], "run_dir": str(run_dir)}
    if is_done(run_dir):
        return {**label, "status": "skipped", "wall_s": 0.0}
    if spec.get("cwd") and Path(spec["cwd"]).is_dir() and os.getcwd() != spec["cwd"]:
        os.chdir(spec["cwd"])
    resume = (run_dir / runs.CONFIG_FILE).is_file()
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(run_dir / LOG_FILE, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        print(f"--- {'resume' if resume else 'start'} {_who(spec)}: {spec['command']} "
              f"{spec['config']} {' '.join('--set ' + o for o in spec['overrides'])}", flush=True)
        run_command(spec["command"], spec["config"], spec["overrides"], run_dir, resume=resume)
    wall = time.perf_counter() - t0
    status = "resumed" if resume else "started"
    runs.atomic_write_text(run_dir / DONE_FILE, json.dumps({**label, "status": status, "wall_s": wall,
                                                            "finished_at": time.time()}, indent=1))
    return {**label, "status": status, "wall_s": wall}


def _safe_execute(spec: dict[str, Any]) -> dict[str, Any]:
    try:
        return execute_run(spec)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the run saved what it could; the sweep starts no other run
        raise
    except BaseException as exc:  # report, let the other runs go on
        log = Path(spec["run_dir"]) / LOG_FILE
        return {"variant": spec["variant"], "seed": spec["seed"], "run_dir": spec["run_dir"], "status": "failed",
                "error": f"{type(exc).__name__}: {exc}", "log": str(log)}


def _run_local(specs: list[dict[str, Any]], workers: int, report: Callable[[dict[str, Any]], None]) -> list[dict]:
    if workers <= 1:
        out = []
        for s in specs:
            out.append(_safe_execute(s))
            report(out[-1])
        return out
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    results: dict[int, dict[str, Any]] = {}
    waiting = list(enumerate(specs))
    # a run is handed to the pool only when a worker is free, so an interrupt (which ends this loop) leaves no run
    # queued to start; the runs under way stop on it themselves (Ctrl-C reaches them too) or finish
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        running: dict[Any, int] = {}
        while waiting or running:
            while waiting and len(running) < workers:
                i, spec = waiting.pop(0)
                running[pool.submit(_safe_execute, spec)] = i
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                i = running.pop(fut)
                results[i] = fut.result()
                report(results[i])
    return [results[i] for i in range(len(specs))]


def _run_ray(specs: list[dict[str, Any]], address: str, resources: ResourcesConfig,
             report: Callable[[dict[str, Any]], None]) -> list[dict]:
    try:
        import ray
    except ImportError:
        raise ValueError("--ray needs Ray: pip install 'evoarena[ray]'") from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False)
        except ConnectionError as exc:
            raise ValueError(f"--ray {address}: no Ray cluster there ({exc}); start one with `ray start --head`, "
                             "or give its address (ray://HOST:10001 or HOST:6379)") from None
    task = ray.remote(num_cpus=resources.cpus, num_gpus=resources.gpus)(_safe_execute)
    refs = {task.remote(s): i for i, s in enumerate(specs)}
    results: dict[int, dict[str, Any]] = {}
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        for ref in ready:
            results[refs[ref]] = ray.get(ref)
            report(results[refs[ref]])
    return [results[i] for i in range(len(specs))]


def run_sweep(cfg: SweepConfig, out: str | Path | None = None, workers: int = 1, ray_address: str | None = None,
              echo: Callable[[str], None] = print, command: str | None = None) -> dict[str, Any]:
    """Run the missing runs of the sweep (its setup runs first), then aggregate; returns ``{"runs": [statuses],
    "bench": ...}``."""
    root = out_dir(cfg, out)
    _run_setup(cfg, root, workers, ray_address, echo)
    specs = plan(cfg, root)
    check_plan(cfg, specs)
    root.mkdir(parents=True, exist_ok=True)
    todo = [s for s in specs if not is_done(s["run_dir"])]
    statuses = [{"variant": s["variant"], "seed": s["seed"], "run_dir": s["run_dir"], "status": "skipped",
                 "wall_s": 0.0} for s in specs if is_done(s["run_dir"])]
    echo(f"sweep {cfg.name}: {len(specs)} runs ({len(specs) // len(cfg.seeds)} variants x {len(cfg.seeds)} seeds), "
         f"{len(statuses)} finished already, {len(todo)} to run "
         f"{'on Ray ' + ray_address if ray_address else f'in {max(1, workers)} worker(s)'}; folder {root}")
    if todo:
        statuses += _execute(cfg, todo, workers, ray_address, echo)
    _raise_failed(cfg, statuses)
    bench = aggregate(cfg, root, command=command)
    return {"runs": statuses, "bench": bench}


def _who(r: dict[str, Any]) -> str:
    return r["variant"] if r["seed"] is None else f"{r['variant']} seed {r['seed']}"


def _execute(cfg: SweepConfig, todo: list[dict[str, Any]], workers: int, ray_address: str | None,
             echo: Callable[[str], None]) -> list[dict[str, Any]]:
    count = [0]

    def report(r: dict[str, Any]) -> None:
        count[0] += 1
        extra = f"{r['wall_s']:.1f} s" if r["status"] != "failed" else f"{r['error']} (log: {r['log']})"
        echo(f"[{count[0]}/{len(todo)}] {_who(r)}: {r['status']} {extra}")

    return _run_ray(todo, ray_address, cfg.resources, report) if ray_address else _run_local(todo, workers, report)


def _raise_failed(cfg: SweepConfig, statuses: list[dict[str, Any]]) -> None:
    failed = [r for r in statuses if r["status"] == "failed"]
    if failed:
        raise RuntimeError(f"sweep {cfg.name}: {len(failed)} run(s) failed: " + "; ".join(
            f"{_who(r)}: {r['error']} (log {r['log']})" for r in failed)
            + ". Re-run the same command to retry them (finished runs are kept).")


def _run_setup(cfg: SweepConfig, root: Path, workers: int, ray_address: str | None,
               echo: Callable[[str], None]) -> None:
    """Check and run the missing setup runs (the variants' configs may name their folders, so they go first)."""
    setups = setup_plan(cfg, root)
    if not setups:
        return
    check_plan(cfg, setups)
    todo = [s for s in setups if not is_done(s["run_dir"])]
    echo(f"sweep {cfg.name}: {len(setups)} setup run(s), {len(setups) - len(todo)} finished already, {len(todo)} "
         "to run first")
    if todo:
        _raise_failed(cfg, _execute(cfg, todo, min(workers, len(todo)), ray_address, echo))
