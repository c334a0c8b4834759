"""Sweeps (``evoarena bench CONFIG``): variants x seeds of one run config, run in worker processes or as
Ray tasks, aggregated into ``bench.md``.

A sweep config names a run ``command`` (``train | pretrain | finetune`` run one stage; ``run`` runs a
pipeline), its ``config``, ``variants`` (name -> ``--set`` overrides) and ``seeds``. Run ``(variant,
seed)`` is that config with the sweep's ``set``, the variant's overrides and ``SEED_KEY=seed``, written
into its own run folder ``OUT/VARIANT/seed_S/``. A run is finished once ``bench_done.json`` is in its
folder: a re-run skips finished runs, resumes interrupted ones (a folder with ``config.yaml`` but no
marker: the stage's own ``--resume``) and starts the missing ones. A folder made from another config is
an error, never overwritten.

Aggregation reads each run's ``results.json`` (one number per task: a key path such as
``ppo.final_eval.score``) and TensorBoard scalars (a task's ``curve`` tag), and writes ``bench.md``:
interquartile mean with stratified-bootstrap 95% intervals per variant, the probability-of-improvement
matrix, learning curves with bands, performance profiles (PNGs), ``bench.json`` with every number and
``marl_eval.json`` in the marl-eval format. With a ``tournament`` section, every run's final checkpoint
and a pool of fixed agents are cross-played (:mod:`evoarena.bench.tournament`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from evoarena.bench import stats
from evoarena.bench.tournament import RatingsConfig
from evoarena.config import ConfigError, EnvConfig, Strict, dump_config, load_config, yaml_load

COMMANDS = ("train", "pretrain", "finetune", "run")
DONE_FILE = "bench_done.json"
LOG_FILE = "bench.log"
DEFAULT_TASKS = {"train": {"score": {"result": "ppo.final_eval.score", "curve": "eval/score"}}}


# --------------------------------------------------------------------------- config


class TaskConfig(Strict):
    """One number per run to compare variants on (a "task" of Agarwal et al.), optionally normalised."""

    result: str | list[str]  #: key path into results.json, ``a.b.c`` (keys may contain dots) or a list of keys
    curve: str | None = None  #: TensorBoard scalar tag of its learning curve, e.g. ``eval/score``
    curve_offset: str | list[str] | None = None  #: key path of a number subtracted from the curve's steps
    #: (e.g. ``pipeline.stages.03_train.step_offset``: a pipeline stage's own step axis)
    low: float | None = None  #: with ``high``: scores become (x - low) / (high - low)
    high: float | None = None

    @model_validator(mode="after")
    def _both_bounds(self) -> TaskConfig:
        if (self.low is None) != (self.high is None):
            raise ValueError("give both low and high (normalisation), or neither")
        if self.low is not None and self.high == self.low:
            raise ValueError(f"high = low = {self.low}: the normalisation would divide by zero")
        return self

    def normalise(self, x: float | np.ndarray) -> Any:
        if self.low is None or self.high is None:
            return x
        return (x - self.low) / (self.high - self.low)


class VariantConfig(Strict):
    """A variant: its overrides, or (``of``) another stage's agent of another variant's runs."""

    set: list[str] = Field(default_factory=list)  #: --set overrides of the run config
    of: str | None = None  #: no runs of its own: it reads the runs of variant ``of`` (e.g. the clone of a chain)
    results: dict[str, str | list[str]] = Field(default_factory=dict)  #: task -> its result key path here
    curves: dict[str, str | None] = Field(default_factory=dict)  #: task -> its curve tag here (null: none)
    checkpoint: str | list[str] | None = None  #: cross-play: key path of this variant's checkpoint
    subdir: str | None = None  #: cross-play: the agent's folder inside that checkpoint

    @model_validator(mode="after")
    def _view_has_no_overrides(self) -> VariantConfig:
        if self.of and self.set:
            raise ValueError(f"a variant of {self.of!r} has no runs of its own, so no 'set' overrides")
        return self


class ResourcesConfig(Strict):
    """What each run asks of a Ray cluster (local workers run one run per process)."""

    cpus: float = Field(1.0, ge=0)
    gpus: float = Field(0.0, ge=0)


class CrossPlayConfig(Strict):
    """Cross-play every run's final checkpoint (and a pool of fixed agents) in one tournament."""

    env: EnvConfig
    checkpoint: str | list[str]  #: key path into results.json of the checkpoint folder, e.g. ``ppo.checkpoint``
    subdir: str = ""  #: the agent's folder inside it, e.g. ``policies/main`` (a PPO checkpoint's learner)
    pool: list[str] = Field(default_factory=list)  #: fixed agents (NAME=SPEC) that also enter; "vs pool" scores
    episodes: int = Field(20, ge=1)
    seed: int = 0
    ratings: RatingsConfig = Field(default_factory=RatingsConfig)


class SweepConfig(Strict):
    """``evoarena bench CONFIG``: variants x seeds of one run config."""

    name: str = "sweep"
    command: Literal["train", "pretrain", "finetune", "run"]
    config: str  #: the run config (relative paths: from the current directory, like every run config path)
    set: list[str] = Field(default_factory=list)  #: overrides applied to every variant
    variants: dict[str, list[str] | VariantConfig] = Field(min_length=1)  #: name -> --set overrides, or a mapping
    seeds: list[int] = Field(min_length=1)
    seed_key: str = "seed"  #: the config key each run's seed is written to
    out: str | None = None  #: sweep folder (default runs/bench/NAME)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    tasks: dict[str, TaskConfig] | None = None  #: default for train: ppo.final_eval.score with curve eval/score
    bootstrap: int = Field(2000, ge=100)  #: bootstrap resamples of every interval
    bootstrap_seed: int = 0
    env_name: str | None = None  #: environment name in the marl-eval export (default: the run config's env id)
    tournament: CrossPlayConfig | None = None

    @model_validator(mode="after")
    def _names_and_tasks(self) -> SweepConfig:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds = {self.seeds}: each seed once")
        bad = [v for v in self.variants if not v or "/" in v or v.startswith(".")]
        if bad:
            raise ValueError(f"variants {bad}: a variant name is a folder name (no '/', not starting with '.')")
        for name, v in list(self.variants.items()):
            if isinstance(v, list):
                self.variants[name] = VariantConfig(set=v)
        for name, v in self.variants.items():
            assert isinstance(v, VariantConfig)
            if v.of is not None:
                base = self.variants.get(v.of)
                if base is None or v.of == name or (isinstance(base, VariantConfig) and base.of):
                    raise ValueError(f"variants.{name}.of = {v.of!r}: name a variant with runs of its own; "
                                     f"variants: {', '.join(self.variants)}")
        if self.tasks is None:
            if self.command not in DEFAULT_TASKS:
                raise ValueError(f"tasks: required for command {self.command!r}: name the results.json key path "
                                 "of each number to compare, e.g. tasks: {score: {result: 04_evaluate.score}}")
            self.__dict__["tasks"] = {k: TaskConfig(**v) for k, v in DEFAULT_TASKS[self.command].items()}
        elif not self.tasks:
            raise ValueError("tasks: give at least one task")
        for name, v in self.variants.items():
            assert isinstance(v, VariantConfig)
            unknown = sorted((set(v.results) | set(v.curves)) - set(self.tasks))
            if unknown:
                raise ValueError(f"variants.{name}: unknown task(s) {unknown}; tasks: {', '.join(self.tasks)}")
        return self

    def variant(self, name: str) -> VariantConfig:
        v = self.variants[name]
        assert isinstance(v, VariantConfig)
        return v

    def source(self, name: str) -> str:
        """The variant whose runs ``name`` reads (itself unless it is a view ``of`` another)."""
        return self.variant(name).of or name


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> SweepConfig:
    """The sweep config at ``path`` (``--set`` overrides allowed), checked."""
    return load_config(path, SweepConfig, overrides)


def out_dir(cfg: SweepConfig, out: str | Path | None = None) -> Path:
    return Path(out or cfg.out or Path("runs") / "bench" / cfg.name)


# --------------------------------------------------------------------------- runs


def plan(cfg: SweepConfig, root: Path) -> list[dict[str, Any]]:
    """One picklable run spec per (variant, seed), variant-major in config order."""
    config = str(Path(cfg.config).resolve())
    return [{"variant": v, "seed": s, "command": cfg.command, "config": config,
             "overrides": [*cfg.set, *cfg.variant(v).set, f"{cfg.seed_key}={s}"],
             "run_dir": str((root / v / f"seed_{s}").resolve()), "cwd": os.getcwd()}
            for v in cfg.variants if cfg.variant(v).of is None for s in cfg.seeds]


def variant_runs(cfg: SweepConfig, specs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every variant (views included) -> the run specs it reads, in seed order."""
    return {v: [s for s in specs if s["variant"] == cfg.source(v)] for v in cfg.variants}


def resolve_run_config(spec: dict[str, Any]) -> tuple[Any, str]:
    """The validated config of one run and its resolved YAML (what its ``config.yaml`` must hold)."""
    if spec["command"] == "run":
        from evoarena.training import pipeline

        pc = pipeline.load_pipeline(spec["config"], spec["overrides"])
        if hasattr(pipeline, "plan"):
            pipeline.plan(pc, spec["config"])
        return pc, dump_config(pc)
    from evoarena.training.checks import load_checked
    from evoarena.training.stages import STAGES

    model, _ = STAGES[spec["command"]]
    cfg = load_checked(spec["config"], model, spec["overrides"])
    return cfg, dump_config(cfg)


def _settings(config_text: str) -> Any:
    """A run's config without what the run itself records (``numerics``: its threads, device, probes)."""
    data = yaml_load(config_text) or {}
    data.pop("numerics", None)
    return data


def check_plan(cfg: SweepConfig, specs: list[dict[str, Any]]) -> None:
    """Validate every variant's config and refuse run folders made from another config, before any work."""
    from evoarena.training import runs

    if not Path(cfg.config).is_file():
        raise ConfigError(f"sweep {cfg.name}: config = {cfg.config!r}: no such file "
                          f"(relative paths start at {os.getcwd()})")
    for spec in specs:
        try:
            _, text = resolve_run_config(spec)
        except (ValueError, FileNotFoundError, KeyError) as exc:
            raise ConfigError(f"sweep {cfg.name}, variant {spec['variant']!r} (overrides {spec['overrides']}): "
                              f"{exc}") from None
        existing = Path(spec["run_dir"]) / runs.CONFIG_FILE
        if existing.is_file() and _settings(existing.read_text()) != _settings(text):
            raise ConfigError(f"{spec['run_dir']} holds a run of another config than variant {spec['variant']!r} "
                              f"seed {spec['seed']} now resolves to; delete that folder to run it again")


def is_done(run_dir: str | Path) -> bool:
    return (Path(run_dir) / DONE_FILE).is_file()


def execute_run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run (or resume, or skip when finished) one run of a sweep; ``{"status", "wall_s", ...}``.

    A top-level function, so that worker processes and Ray tasks can run it. Output goes to the run's
    ``bench.log``.
    """
    from evoarena.training import runs

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
        print(f"--- {'resume' if resume else 'start'} {spec['variant']} seed {spec['seed']}: {spec['command']} "
              f"{spec['config']} {' '.join('--set ' + o for o in spec['overrides'])}", flush=True)
        if spec["command"] == "run":
            from evoarena.training.pipeline import run_pipeline

            run_pipeline(spec["config"], spec["overrides"], run_dir, resume=resume)
        else:
            from evoarena.training.stages import STAGES

            cfg, _ = resolve_run_config(spec)
            runs.create_run(run_dir, cfg, resume=resume)
            STAGES[spec["command"]][1](cfg, run_dir, resume=resume)
    wall = time.perf_counter() - t0
    status = "resumed" if resume else "started"
    runs.atomic_write_text(run_dir / DONE_FILE, json.dumps({**label, "status": status, "wall_s": wall,
                                                            "finished_at": time.time()}, indent=1))
    return {**label, "status": status, "wall_s": wall}


def _safe_execute(spec: dict[str, Any]) -> dict[str, Any]:
    try:
        return execute_run(spec)
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
    from concurrent.futures import ProcessPoolExecutor, as_completed

    results: dict[int, dict[str, Any]] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_safe_execute, s): i for i, s in enumerate(specs)}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            report(results[futures[fut]])
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
    """Run the missing runs of the sweep, then aggregate; returns ``{"runs": [statuses], "bench": ...}``."""
    root = out_dir(cfg, out)
    specs = plan(cfg, root)
    check_plan(cfg, specs)
    root.mkdir(parents=True, exist_ok=True)
    todo = [s for s in specs if not is_done(s["run_dir"])]
    statuses = [{"variant": s["variant"], "seed": s["seed"], "run_dir": s["run_dir"], "status": "skipped",
                 "wall_s": 0.0} for s in specs if is_done(s["run_dir"])]
    echo(f"sweep {cfg.name}: {len(specs)} runs ({len(specs) // len(cfg.seeds)} variants x {len(cfg.seeds)} seeds), "
         f"{len(statuses)} finished already, {len(todo)} to run "
         f"{'on Ray ' + ray_address if ray_address else f'in {max(1, workers)} worker(s)'}; folder {root}")
    count = [0]

    def report(r: dict[str, Any]) -> None:
        count[0] += 1
        extra = f"{r['wall_s']:.1f} s" if r["status"] != "failed" else f"{r['error']} (log: {r['log']})"
        echo(f"[{count[0]}/{len(todo)}] {r['variant']} seed {r['seed']}: {r['status']} {extra}")

    if todo:
        done = _run_ray(todo, ray_address, cfg.resources, report) if ray_address else _run_local(todo, workers, report)
        statuses += done
    failed = [r for r in statuses if r["status"] == "failed"]
    if failed:
        raise RuntimeError(f"sweep {cfg.name}: {len(failed)} run(s) failed: " + "; ".join(
            f"{r['variant']} seed {r['seed']}: {r['error']} (log {r['log']})" for r in failed)
            + ". Re-run the same command to retry them (finished runs are kept).")
    bench = aggregate(cfg, root, command=command)
    return {"runs": statuses, "bench": bench}


# --------------------------------------------------------------------------- reading results


def lookup(data: Any, path: str | list[str], where: str = "results.json") -> Any:
    """The value at key path ``path`` in nested dicts: ``a.b.c`` (a key that itself contains dots matches
    as a whole, longest first) or a list of keys. A KeyError names the missing key and the keys there."""
    node, seen = data, []
    parts = path.split(".") if isinstance(path, str) else list(path)
    while parts:
        if isinstance(node, list):  # an element by index, or by its key / name / kind
            part = str(parts[0])
            match = [e for e in node if isinstance(e, dict) and part in (str(e.get("key")), str(e.get("name")),
                                                                         str(e.get("kind")))]
            if part.isdigit() and int(part) < len(node):
                match = [node[int(part)]]
            if not match:
                raise KeyError(f"{where}: {'.'.join(seen)} is a list with no element {part!r} (give an index "
                               f"0..{len(node) - 1} or an element's key or name)")
            node, seen, parts = match[0], [*seen, part], parts[1:]
            continue
        if not isinstance(node, dict):
            raise KeyError(f"{where}: {'.'.join(seen) or '(top)'} is {type(node).__name__}, not a mapping; "
                           f"cannot look up {'.'.join(parts)!r}")
        widths = range(len(parts), 0, -1) if isinstance(path, str) else [1]
        width = next((w for w in widths if ".".join(parts[:w]) in node), 0)
        if not width:
            raise KeyError(f"{where}: no key {parts[0]!r} at {'.'.join(seen) or 'the top level'}; "
                           f"keys there: {', '.join(map(str, node)) or '(none)'}")
        key = ".".join(parts[:width])
        node, seen, parts = node[key], [*seen, key], parts[width:]
    return node


def read_scalars(run_dir: str | Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and values of TensorBoard scalar ``tag`` in ``RUN_DIR/tb`` (every event folder below it;
    a step written twice keeps its last value)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = Path(run_dir) / "tb"
    folders = sorted({p.parent for p in tb.rglob("events.out.tfevents*")})
    points: dict[int, float] = {}
    for folder in folders:
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags().get("scalars", []):
            for ev in acc.Scalars(tag):
                points[int(ev.step)] = float(ev.value)
    steps = np.array(sorted(points), dtype=np.int64)
    return steps, np.array([points[s] for s in steps], dtype=np.float64)


def _env_name(cfg: SweepConfig, specs: list[dict[str, Any]]) -> str:
    if cfg.env_name:
        return cfg.env_name

    from evoarena.training import runs

    try:
        data = yaml_load((Path(specs[0]["run_dir"]) / runs.CONFIG_FILE).read_text()) or {}
        env = data.get("env") or next((s.get("env") for s in data.get("stages", []) if s.get("env")), None)
        return str(env["id"]) if env else cfg.name
    except (OSError, KeyError, TypeError, AttributeError):
        return cfg.name


# --------------------------------------------------------------------------- aggregation


def iqm_per_task(scores: np.ndarray) -> np.ndarray:
    """The interquartile mean of each column (task, or curve step) of a ``(runs, columns)`` array."""
    x = np.sort(np.asarray(scores, dtype=np.float64), axis=0)
    cut = int(0.25 * x.shape[0])
    return x[cut:x.shape[0] - cut].mean(axis=0)


def _interval(func: Callable[..., Any], *arrays: np.ndarray, reps: int, seed: int) -> dict[str, Any]:
    p, lo, hi = stats.stratified_bootstrap(func, *arrays, reps=reps, seed=seed)
    if p.size == 1:
        return {"value": float(p[0]), "low": float(lo[0]), "high": float(hi[0])}
    return {"value": p.tolist(), "low": lo.tolist(), "high": hi.tolist()}


def collect_scores(cfg: SweepConfig, specs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """``variant -> (seeds, tasks)`` array of (normalised) task scores from each run's results.json."""
    from evoarena.training import runs

    tasks = cfg.tasks or {}
    out: dict[str, np.ndarray] = {}
    for v, vspecs in variant_runs(cfg, specs).items():
        rows = []
        for s in vspecs:
            results = runs.read_results(s["run_dir"])
            row = []
            for name, task in tasks.items():
                path = cfg.variant(v).results.get(name, task.result)
                value = lookup(results, path, f"{s['run_dir']}/results.json (variant {v!r}, task {name!r})")
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"{s['run_dir']}/results.json: variant {v!r}, task {name!r}: {path!r} is "
                                     f"{type(value).__name__}, not a number")
                row.append(float(task.normalise(float(value))))
            rows.append(row)
        out[v] = np.array(rows, dtype=np.float64)
    return out


def collect_curves(cfg: SweepConfig, specs: list[dict[str, Any]]) -> dict[str, dict[str, dict[int, Any]]]:
    """``task -> variant -> seed -> (steps, values)`` of every task with a curve tag (values normalised,
    steps less the task's ``curve_offset``)."""
    from evoarena.training import runs

    out: dict[str, dict[str, dict[int, Any]]] = {}
    for v, vspecs in variant_runs(cfg, specs).items():
        for name, task in (cfg.tasks or {}).items():
            tag = cfg.variant(v).curves.get(name, task.curve)
            if not tag:
                continue
            for s in vspecs:
                steps, values = read_scalars(s["run_dir"], tag)
                if task.curve_offset is not None:
                    steps = steps - int(lookup(runs.read_results(s["run_dir"]), task.curve_offset,
                                               f"{s['run_dir']}/results.json (curve_offset of task {name!r})"))
                out.setdefault(name, {}).setdefault(v, {})[s["seed"]] = (steps, task.normalise(values))
    return out


def aggregate(cfg: SweepConfig, root: str | Path, command: str | None = None) -> dict[str, Any]:
    """Aggregate the finished runs of the sweep in ``root``: writes bench.md, bench.json, marl_eval.json and
    the PNGs; returns what bench.json holds."""
    from evoarena.bench import figures

    root = Path(root)
    specs = plan(cfg, root)
    missing = [f"{s['variant']}/seed_{s['seed']}" for s in specs if not is_done(s["run_dir"])]
    if missing:
        raise ValueError(f"sweep {cfg.name}: runs not finished yet: {', '.join(missing)}; run `evoarena bench` "
                         "to finish them")
    tasks = list(cfg.tasks or {})
    variants = list(cfg.variants)
    reps, bseed = cfg.bootstrap, cfg.bootstrap_seed
    scores = collect_scores(cfg, specs)
    table = {}
    for v in variants:
        table[v] = {"iqm": _interval(stats.iqm, scores[v], reps=reps, seed=bseed),
                    "mean": _interval(lambda x: x.mean(axis=0).mean(), scores[v], reps=reps, seed=bseed),
                    "tasks": {t: _interval(stats.iqm, scores[v][:, [k]], reps=reps, seed=bseed)
                              for k, t in enumerate(tasks)}}
    poi = {x: {y: _interval(stats.probability_of_improvement, scores[x], scores[y], reps=reps, seed=bseed)
               for y in variants if y != x} for x in variants}
    allv = np.concatenate([scores[v].reshape(-1) for v in variants])
    lo_t, hi_t = float(allv.min()), float(allv.max())
    pad = 0.05 * (hi_t - lo_t) if hi_t > lo_t else 0.5
    taus = np.linspace(lo_t - pad, hi_t + pad, 101)
    profile = {v: _interval(lambda x: stats.score_distribution(x, taus), scores[v], reps=reps, seed=bseed)
               for v in variants}
    curves_raw = collect_curves(cfg, specs)
    curves: dict[str, dict[str, Any]] = {}
    for task, by_variant in curves_raw.items():
        for v, by_seed in by_variant.items():
            common = sorted(set.intersection(*[set(st.tolist()) for st, _ in by_seed.values()]))
            if not common:
                continue
            mat = np.array([[dict(zip(st.tolist(), val))[c] for c in common] for st, val in by_seed.values()])
            band = _interval(iqm_per_task, mat, reps=reps, seed=bseed)
            curves.setdefault(task, {})[v] = {"steps": common, **{k: np.atleast_1d(band[k]).tolist()
                                                                   for k in ("value", "low", "high")}}
    runs_table = [{"variant": v, "seed": s["seed"], "run_dir": s["run_dir"],
                   **{t: float(scores[v][i, k]) for k, t in enumerate(tasks)}}
                  for v, vspecs in variant_runs(cfg, specs).items() for i, s in enumerate(vspecs)]
    bench: dict[str, Any] = {"name": cfg.name, "command": command, "run_command": cfg.command, "config": cfg.config,
                             "variants": {v: cfg.variant(v).model_dump(exclude_defaults=True) for v in variants},
                             "set": cfg.set, "seeds": cfg.seeds,
                             "tasks": {t: cfg.tasks[t].model_dump() for t in tasks} if cfg.tasks else {},
                             "bootstrap": {"reps": reps, "seed": bseed}, "scores": table,
                             "probability_of_improvement": poi, "profiles": {"taus": taus.tolist(), **profile},
                             "curves": curves, "runs": runs_table}
    if cfg.tournament:
        bench["tournament"] = cross_play(cfg, specs, root)
    env = _env_name(cfg, specs)
    (root / "marl_eval.json").write_text(json.dumps(marl_eval(cfg, env, specs, scores, curves_raw), indent=1))
    (root / "bench.json").write_text(json.dumps(bench, indent=1, default=float))
    norm = any(cfg.tasks[t].low is not None for t in tasks) if cfg.tasks else False
    unit = "normalised score" if norm else "score"
    figures.interval_chart(variants, [table[v]["iqm"]["value"] for v in variants],
                           [table[v]["iqm"]["low"] for v in variants], [table[v]["iqm"]["high"] for v in variants],
                           root / "iqm.png", f"{cfg.name}: IQM over seeds x tasks (95% stratified bootstrap)", unit)
    pm = np.array([[np.nan if x == y else poi[x][y]["value"] for y in variants] for x in variants])
    figures.heatmap(pm, variants, variants, root / "poi.png", "P(row variant > column variant)",
                    colorbar="probability of improvement", fmt="{:.2f}", cmap="RdBu")
    figures.profiles(taus, {v: (np.array(profile[v]["value"]), np.array(profile[v]["low"]),
                                np.array(profile[v]["high"])) for v in variants}, root / "profiles.png", unit)
    if curves:
        panels = {t: {v: tuple(np.array(c[k]) for k in ("steps", "value", "low", "high")) for v, c in by_v.items()}
                  for t, by_v in curves.items()}
        figures.curves(panels, root / "curves.png", "step", f"{unit} (IQM over seeds, 95% band)")
    (root / "bench.md").write_text(markdown(cfg, bench, unit))
    return bench


def marl_eval(cfg: SweepConfig, env: str, specs: list[dict[str, Any]], scores: dict[str, np.ndarray],
              curves: dict[str, dict[str, dict[int, Any]]]) -> dict[str, Any]:
    """The marl-eval raw-data layout: env -> task -> algorithm (variant) -> run_i -> step_k {step_count,
    score: [value]} and absolute_metrics {score: [final value]} (normalised when the task is)."""
    data: dict[str, Any] = {}
    for k, task in enumerate(cfg.tasks or {}):
        algos: dict[str, Any] = {}
        for v in cfg.variants:
            for i, seed in enumerate(cfg.seeds):
                run: dict[str, Any] = {}
                steps, values = curves.get(task, {}).get(v, {}).get(seed, (np.zeros(0), np.zeros(0)))
                for j, (st, val) in enumerate(zip(steps.tolist(), np.asarray(values).tolist())):
                    run[f"step_{j}"] = {"step_count": int(st), "score": [float(val)]}
                run["absolute_metrics"] = {"score": [float(scores[v][i, k])]}
                algos.setdefault(v, {})[f"run_{i}"] = run
        data[task] = algos
    return {env: data}


def cross_play(cfg: SweepConfig, specs: list[dict[str, Any]], root: Path) -> dict[str, Any]:
    """Every run's final checkpoint and the pool in one tournament (``root/tournament/``); per variant the
    IQM over seeds of its mean return against the pool, Bradley-Terry strength and Axelrod score."""
    from evoarena.bench.tournament import entrant_names, rate, run_tournament, write_tournament
    from evoarena.training import runs
    from evoarena.training.checks import check_env

    tc = cfg.tournament
    assert tc is not None
    check_env(tc.env, f"sweep {cfg.name}: tournament")
    entrants, owner = [], {}
    for v, vspecs in variant_runs(cfg, specs).items():
        vc = cfg.variant(v)
        subdir = tc.subdir if vc.subdir is None else vc.subdir
        for s in vspecs:
            ckpt = lookup(runs.read_results(s["run_dir"]), vc.checkpoint or tc.checkpoint,
                          f"{s['run_dir']}/results.json (tournament checkpoint of variant {v!r})")
            name = f"{v}/s{s['seed']}"
            entrants.append(f"{name}=ckpt:{Path(ckpt) / subdir if subdir else ckpt}")
            owner[name] = v
    entrants += tc.pool
    pool_names = [n for n, _ in entrant_names(entrants)[len(owner):]]
    result = run_tournament(tc.env.id, entrants, tc.episodes, tc.seed, tc.env.kwargs)
    rows = rate(result, tc.ratings)
    write_tournament(result, rows, root / "tournament", command=f"cross-play of sweep {cfg.name}",
                     settings=tc.ratings)
    payoff = {(r["agent"], r["opponent"]): r["mean_return"] for r in result.payoffs()}
    by_name = {r["agent"]: r for r in rows}
    per_variant: dict[str, Any] = {}
    reps, bseed = cfg.bootstrap, cfg.bootstrap_seed
    for v in cfg.variants:
        names = [n for n, owner_v in owner.items() if owner_v == v]
        metrics = {"bt": [by_name[n]["bt"] for n in names], "median_score": [by_name[n]["median_score"] for n in names]}
        if pool_names:
            metrics["vs_pool"] = [float(np.mean([payoff[(n, p)] for p in pool_names])) for n in names]
        per_variant[v] = {k: _interval(stats.iqm, np.array(vals)[:, None], reps=reps, seed=bseed)
                          for k, vals in metrics.items()}
    return {"entrants": len(result.names), "pool": pool_names, "episodes": tc.episodes, "per_variant": per_variant,
            "ratings": rows, "turn_unit": result.turn_unit}


# --------------------------------------------------------------------------- report

REPORT_FILES = ("bench.md", "bench.json", "marl_eval.json", "iqm.png", "poi.png", "curves.png", "profiles.png")


def publish(root: str | Path, dest: str | Path) -> list[Path]:
    """Copy the sweep's report (bench.md, its PNGs, bench.json, marl_eval.json and the cross-play
    tournament's files) from ``root`` to ``dest``, e.g. ``docs/results/NAME``; the run folders stay."""
    import shutil

    root, dest = Path(root), Path(dest)
    if not (root / "bench.md").is_file():
        raise FileNotFoundError(f"{root}: no bench.md to publish; run `evoarena bench` first")
    copied = []
    for name in REPORT_FILES:
        if (root / name).is_file():
            dest.mkdir(parents=True, exist_ok=True)
            copied.append(Path(shutil.copy2(root / name, dest / name)))
    if (root / "tournament").is_dir():
        (dest / "tournament").mkdir(parents=True, exist_ok=True)
        for f in sorted((root / "tournament").iterdir()):
            if f.is_file():
                copied.append(Path(shutil.copy2(f, dest / "tournament" / f.name)))
    return copied



def _ci(d: dict[str, Any], fmt: str = "{:.3f}") -> str:
    return f"{fmt.format(d['value'])} [{fmt.format(d['low'])}, {fmt.format(d['high'])}]"


def markdown(cfg: SweepConfig, bench: dict[str, Any], unit: str = "score") -> str:
    """``bench.md``: the sweep, IQM tables, the probability-of-improvement matrix, figures, runs, cross-play."""
    variants, tasks = list(cfg.variants), list(cfg.tasks or {})
    n_runs = len([v for v in variants if cfg.variant(v).of is None]) * len(cfg.seeds)
    lines = [f"# Sweep `{cfg.name}`", ""]
    if bench.get("command"):
        lines += [f"Command: `{bench['command']}`", ""]
    lines += [f"`evoarena {cfg.command} {cfg.config}` x {n_runs // len(cfg.seeds)} variants x {len(cfg.seeds)} seeds "
              f"({', '.join(map(str, cfg.seeds))}) = {n_runs} runs, each in `VARIANT/seed_S/`. Intervals are 95% "
              f"stratified-bootstrap percentile intervals ({cfg.bootstrap} resamples, as in Agarwal et al. 2021 / "
              "rliable); with few seeds they are wide.", "", "| variant | overrides |", "| --- | --- |"]
    for v in variants:
        vc = cfg.variant(v)
        what = (f"no runs of its own: in the runs of `{vc.of}`, " + ", ".join(
            f"`{t}` from `{p if isinstance(p, str) else '.'.join(p)}`" for t, p in vc.results.items())
            if vc.of else " ".join(f"`{o}`" for o in vc.set) or "(none)")
        lines.append(f"| {v} | {what} |")
    if cfg.set:
        lines += ["", f"Every run also: {' '.join(f'`{o}`' for o in cfg.set)}."]
    lines += ["", "## Scores", "", "Tasks (one number per run from its `results.json`"
              + ("; normalised (x - low) / (high - low)" if unit != "score" else "") + "):", ""]
    for t in tasks:
        tc = cfg.tasks[t]  # type: ignore[index]
        norm = f", low {tc.low:g}, high {tc.high:g}" if tc.low is not None else ""
        offset = tc.curve_offset if isinstance(tc.curve_offset, str) else ".".join(tc.curve_offset or [])
        curve = (f", curve `{tc.curve}`" + (f" (steps less `{offset}`)" if offset else "")) if tc.curve else ""
        lines.append(f"- `{t}`: `{tc.result if isinstance(tc.result, str) else '.'.join(tc.result)}`{curve}{norm}")
    task_cols = " | ".join(f"{t}: IQM [95% CI]" for t in tasks)
    lines += ["", f"| variant | IQM [95% CI] | mean [95% CI] | {task_cols} |",
              "| --- | --- | --- |" + " --- |" * len(tasks)]
    for v in variants:
        row = bench["scores"][v]
        lines.append(f"| {v} | {_ci(row['iqm'])} | {_ci(row['mean'])} | "
                     + " | ".join(_ci(row["tasks"][t]) for t in tasks) + " |")
    lines += ["", "![IQM](iqm.png)", "", "## Probability of improvement", "",
              "P(row > column): the chance that a random run of the row variant scores higher than a random run "
              "of the column variant on a task (ties count half), averaged over tasks.", "",
              "| P(row > column) | " + " | ".join(variants) + " |", "| --- |" + " --- |" * len(variants)]
    for x in variants:
        lines.append(f"| {x} | " + " | ".join("" if x == y else _ci(bench["probability_of_improvement"][x][y], "{:.2f}")
                                              for y in variants) + " |")
    lines += ["", "![probability of improvement](poi.png)", ""]
    if bench["curves"]:
        lines += ["## Learning curves", "", "IQM over seeds at each logged step, with its 95% band.", "",
                  "![learning curves](curves.png)", ""]
    lines += ["## Performance profiles", "", "The fraction of (run, task) scores above each threshold tau.", "",
              "![performance profiles](profiles.png)", "", "## Runs", "",
              "| variant | seed | " + " | ".join(tasks) + " |", "| --- | ---: |" + " ---: |" * len(tasks)]
    for r in bench["runs"]:
        lines.append(f"| {r['variant']} | {r['seed']} | " + " | ".join(f"{r[t]:.4g}" for t in tasks) + " |")
    tour = bench.get("tournament")
    if tour:
        unit_t = tour["turn_unit"]
        pool = f" and the pool ({', '.join(tour['pool'])})" if tour["pool"] else ""
        lines += ["", "## Cross-play tournament", "",
                  f"Every run's final checkpoint{pool}"
                  f" in one round-robin ({tour['entrants']} entrants, both seat orders, {tour['episodes']} episodes "
                  "per match, common seeds). Per variant: IQM over its seeds"
                  + (" of the mean return per game against the pool, " if tour["pool"] else " of ")
                  + f"the Bradley-Terry strength and the Axelrod score (median return per {unit_t} against all "
                  "others). Full tables: [tournament/tournament.md](tournament/tournament.md).", "",
                  "| variant | " + ("vs pool [95% CI] | " if tour["pool"] else "")
                  + f"Bradley-Terry [95% CI] | score per {unit_t} [95% CI] |",
                  "| --- |" + (" --- |" if tour["pool"] else "") + " --- | --- |"]
        for v in variants:
            pv = tour["per_variant"][v]
            lines.append(f"| {v} | " + (f"{_ci(pv['vs_pool'])} | " if tour["pool"] else "")
                         + f"{_ci(pv['bt'], '{:+.2f}')} | {_ci(pv['median_score'])} |")
        lines += ["", "| rank | entrant | Bradley-Terry [95% CI] | Elo | W-D-L | score per "
                  f"{unit_t} | Axelrod rank |", "| ---: | --- | --- | ---: | --- | ---: | ---: |"]
        for r in tour["ratings"]:
            lines.append(f"| {r['rank']} | {r['agent']} | {r['bt']:+.2f} [{r['bt_low']:+.2f}, {r['bt_high']:+.2f}] | "
                         f"{r['elo']:.0f} | {r['wins']}-{r['draws']}-{r['losses']} | {r['median_score']:.3f} | "
                         f"{r['axelrod_rank']} |")
        lines += ["", "![cross-play payoffs](tournament/payoffs.png)"]
    return "\n".join(lines) + "\n"

