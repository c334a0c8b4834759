"""A sweep's aggregation: what its finished runs scored, summarised over seeds.

Each run's ``results.json`` gives one number per task (a key path such as ``train.final_eval.score``, read by
:func:`lookup`) and its TensorBoard scalars a task's ``curve``. :func:`aggregate` writes ``bench.json`` (every
number), ``marl_eval.json`` (the marl-eval layout), the PNGs and ``bench.md``: interquartile mean with
stratified-bootstrap 95% intervals per variant, the probability-of-improvement matrix, learning curves with
bands, performance profiles and, with a ``tournament`` section, the cross-play of every run's checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from evoarena.bench import figures, stats
from evoarena.bench.scalars import read_scalars
from evoarena.bench.sweep_plan import is_done, plan, variant_runs
from evoarena.bench.sweep_report import markdown
from evoarena.config import SweepConfig, yaml_load
from evoarena.storage import atomic_write_text

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


def collect_scores(cfg: SweepConfig, specs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """``variant -> (seeds, tasks)`` array of (normalised) task scores from each run's results.json."""
    from evoarena.training.infra import runs

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


def _curve(scalars: dict[str, list[tuple[int, float]]], tag: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and values of scalar ``tag`` (empty when the run never logged it; a step logged twice keeps one
    value)."""
    points = dict(scalars.get(tag, []))
    steps = np.array(sorted(points), dtype=np.int64)
    return steps, np.array([points[s] for s in steps], dtype=np.float64)


def collect_curves(cfg: SweepConfig, specs: list[dict[str, Any]]) -> dict[str, dict[str, dict[int, Any]]]:
    """``task -> variant -> seed -> (steps, values)`` of every task with a curve tag (values normalised,
    steps less the task's ``curve_offset``)."""
    from evoarena.training.infra import runs

    out: dict[str, dict[str, dict[int, Any]]] = {}
    scalars: dict[str, dict[str, list[tuple[int, float]]]] = {}  # run folder -> its scalars, read once
    for v, vspecs in variant_runs(cfg, specs).items():
        for name, task in (cfg.tasks or {}).items():
            tag = cfg.variant(v).curves.get(name, task.curve)
            if not tag:
                continue
            for s in vspecs:
                if s["run_dir"] not in scalars:
                    scalars[s["run_dir"]] = read_scalars(Path(s["run_dir"]) / "tb")
                steps, values = _curve(scalars[s["run_dir"]], tag)
                if task.curve_offset is not None:
                    steps = steps - int(lookup(runs.read_results(s["run_dir"]), task.curve_offset,
                                               f"{s['run_dir']}/results.json (curve_offset of task {name!r})"))
                out.setdefault(name, {}).setdefault(v, {})[s["seed"]] = (steps, task.normalise(values))
    return out


def _env_name(cfg: SweepConfig, specs: list[dict[str, Any]]) -> str:
    if cfg.env_name:
        return cfg.env_name

    from evoarena.training.infra import runs

    try:
        data = yaml_load((Path(specs[0]["run_dir"]) / runs.CONFIG_FILE).read_text()) or {}
        env = data.get("env") or next((s.get("env") for s in data.get("stages", []) if s.get("env")), None)
        return str(env["id"]) if env else cfg.name
    except (OSError, KeyError, TypeError, AttributeError):
        return cfg.name


# --------------------------------------------------------------------------- summaries over seeds


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


def score_table(cfg: SweepConfig, scores: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per variant: IQM and mean over seeds x tasks, and the IQM of each task, with their intervals."""
    reps, bseed = cfg.bootstrap, cfg.bootstrap_seed
    return {v: {"iqm": _interval(stats.iqm, scores[v], reps=reps, seed=bseed),
                "mean": _interval(lambda x: x.mean(axis=0).mean(), scores[v], reps=reps, seed=bseed),
                "tasks": {t: _interval(stats.iqm, scores[v][:, [k]], reps=reps, seed=bseed)
                          for k, t in enumerate(cfg.tasks or {})}}
            for v in cfg.variants}


def improvement(cfg: SweepConfig, scores: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """P(x > y) for every ordered pair of variants, with its interval."""
    reps, bseed = cfg.bootstrap, cfg.bootstrap_seed
    return {x: {y: _interval(stats.probability_of_improvement, scores[x], scores[y], reps=reps, seed=bseed)
                for y in cfg.variants if y != x} for x in cfg.variants}


def profiles(cfg: SweepConfig, scores: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, Any]]:
    """Thresholds spanning every score, and per variant the fraction of scores above each, with its band."""
    allv = np.concatenate([scores[v].reshape(-1) for v in cfg.variants])
    lo_t, hi_t = float(allv.min()), float(allv.max())
    pad = 0.05 * (hi_t - lo_t) if hi_t > lo_t else 0.5
    taus = np.linspace(lo_t - pad, hi_t + pad, 101)
    return taus, {v: _interval(lambda x: stats.score_distribution(x, taus), scores[v], reps=cfg.bootstrap,
                               seed=cfg.bootstrap_seed) for v in cfg.variants}


def curve_bands(cfg: SweepConfig, curves_raw: dict[str, dict[str, dict[int, Any]]]) -> dict[str, dict[str, Any]]:
    """``task -> variant -> {steps, value, low, high}``: the IQM over seeds at every step all seeds logged."""
    curves: dict[str, dict[str, Any]] = {}
    for task, by_variant in curves_raw.items():
        for v, by_seed in by_variant.items():
            common = sorted(set.intersection(*[set(st.tolist()) for st, _ in by_seed.values()]))
            if not common:
                continue
            mat = np.array([[dict(zip(st.tolist(), val))[c] for c in common] for st, val in by_seed.values()])
            band = _interval(iqm_per_task, mat, reps=cfg.bootstrap, seed=cfg.bootstrap_seed)
            curves.setdefault(task, {})[v] = {"steps": common, **{k: np.atleast_1d(band[k]).tolist()
                                                                   for k in ("value", "low", "high")}}
    return curves


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


# --------------------------------------------------------------------------- cross-play


def _entrants(cfg: SweepConfig, specs: list[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """``NAME=ckpt:FOLDER`` of every run's checkpoint (``VARIANT/sS``), and entrant name -> its variant."""
    from evoarena.training.infra import runs

    tc = cfg.tournament
    assert tc is not None
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
    return entrants, owner


def cross_play(cfg: SweepConfig, specs: list[dict[str, Any]], root: Path) -> dict[str, Any]:
    """Every run's final checkpoint and the pool in one tournament (``root/tournament/``); per variant the
    IQM over seeds of its mean return against the pool, Bradley-Terry strength and Axelrod score."""
    from evoarena.bench.tournament import entrant_names, rate, run_tournament, write_tournament
    from evoarena.training.infra.checks import check_env

    tc = cfg.tournament
    assert tc is not None
    check_env(tc.env, f"sweep {cfg.name}: tournament")
    entrants, owner = _entrants(cfg, specs)
    entrants += tc.pool
    pool_names = [n for n, _ in entrant_names(entrants)[len(owner):]]
    result = run_tournament(tc.env.id, entrants, tc.episodes, tc.seed, tc.env.kwargs)
    rows = rate(result, tc.ratings)
    write_tournament(result, rows, root / "tournament", command=f"cross-play of sweep {cfg.name}",
                     settings=tc.ratings)
    payoff = {(r["agent"], r["opponent"]): r["mean_return"] for r in result.payoffs()}
    by_name = {r["agent"]: r for r in rows}
    per_variant: dict[str, Any] = {}
    for v in cfg.variants:
        names = [n for n, owner_v in owner.items() if owner_v == v]
        metrics = {"bt": [by_name[n]["bt"] for n in names], "median_score": [by_name[n]["median_score"] for n in names]}
        if pool_names:
            metrics["vs_pool"] = [float(np.mean([payoff[(n, p)] for p in pool_names])) for n in names]
        per_variant[v] = {k: _interval(stats.iqm, np.array(vals)[:, None], reps=cfg.bootstrap,
                                       seed=cfg.bootstrap_seed) for k, vals in metrics.items()}
    return {"entrants": len(result.names), "pool": pool_names, "episodes": tc.episodes, "per_variant": per_variant,
            "ratings": rows, "turn_unit": result.turn_unit}


# --------------------------------------------------------------------------- the report


def _figures(cfg: SweepConfig, bench: dict[str, Any], root: Path, unit: str) -> None:
    """iqm.png, poi.png, profiles.png and (with curves) curves.png."""
    variants, table, poi = list(cfg.variants), bench["scores"], bench["probability_of_improvement"]
    figures.interval_chart(variants, [table[v]["iqm"]["value"] for v in variants],
                           [table[v]["iqm"]["low"] for v in variants], [table[v]["iqm"]["high"] for v in variants],
                           root / "iqm.png", f"{cfg.name}: IQM over seeds x tasks (95% stratified bootstrap)", unit)
    pm = np.array([[np.nan if x == y else poi[x][y]["value"] for y in variants] for x in variants])
    figures.heatmap(pm, variants, variants, root / "poi.png", "P(row variant > column variant)",
                    colorbar="probability of improvement", fmt="{:.2f}", cmap="RdBu")
    prof = bench["profiles"]
    figures.profiles(np.array(prof["taus"]), {v: (np.array(prof[v]["value"]), np.array(prof[v]["low"]),
                                                  np.array(prof[v]["high"])) for v in variants},
                     root / "profiles.png", unit)
    if bench["curves"]:
        panels = {t: {v: tuple(np.array(c[k]) for k in ("steps", "value", "low", "high")) for v, c in by_v.items()}
                  for t, by_v in bench["curves"].items()}
        figures.curves(panels, root / "curves.png", "step", f"{unit} (IQM over seeds, 95% band)")


def paired_differences(cfg: SweepConfig, scores: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Per pair ``[x, y]`` of ``cfg.paired`` and per task: the mean over seeds of x - y on the same seed, its 95%
    bootstrap interval (seeds resampled) and its Student-t interval (n - 1 degrees of freedom; with 3 seeds the
    bootstrap's percentile interval is too narrow, the t interval is the honest one), and the per-seed
    differences."""
    from scipy import stats as sps

    out: dict[str, dict[str, Any]] = {}
    for x, y in cfg.paired:
        diff = scores[x] - scores[y]  # (seeds, tasks): runs are in seed order in both
        n = diff.shape[0]
        per_task: dict[str, Any] = {}
        for k, t in enumerate(cfg.tasks or {}):
            d = diff[:, [k]]
            row = _interval(lambda a: a.mean(axis=0), d, reps=cfg.bootstrap, seed=cfg.bootstrap_seed)
            if n > 1:
                half = float(sps.t.ppf(0.975, n - 1) * d[:, 0].std(ddof=1) / np.sqrt(n))
                row.update(t_low=row["value"] - half, t_high=row["value"] + half)
            per_task[t] = {**row, "per_seed": d[:, 0].tolist()}
        out[f"{x} - {y}"] = per_task
    return out


def aggregate(cfg: SweepConfig, root: str | Path, command: str | None = None) -> dict[str, Any]:
    """Aggregate the finished runs of the sweep in ``root``: writes bench.md, bench.json, marl_eval.json and
    the PNGs; returns what bench.json holds."""
    root = Path(root)
    specs = plan(cfg, root)
    missing = [f"{s['variant']}/seed_{s['seed']}" for s in specs if not is_done(s["run_dir"])]
    if missing:
        raise ValueError(f"sweep {cfg.name}: runs not finished yet: {', '.join(missing)}; run `evoarena bench` "
                         "to finish them")
    tasks = list(cfg.tasks or {})
    scores = collect_scores(cfg, specs)
    taus, profile = profiles(cfg, scores)
    curves_raw = collect_curves(cfg, specs)
    runs_table = [{"variant": v, "seed": s["seed"], "run_dir": s["run_dir"],
                   **{t: float(scores[v][i, k]) for k, t in enumerate(tasks)}}
                  for v, vspecs in variant_runs(cfg, specs).items() for i, s in enumerate(vspecs)]
    bench: dict[str, Any] = {"name": cfg.name, "command": command, "run_command": cfg.command, "config": cfg.config,
                             "variants": {v: cfg.variant(v).model_dump(exclude_defaults=True) for v in cfg.variants},
                             "set": cfg.set, "seeds": cfg.seeds,
                             "tasks": {t: cfg.tasks[t].model_dump() for t in tasks} if cfg.tasks else {},
                             "bootstrap": {"reps": cfg.bootstrap, "seed": cfg.bootstrap_seed},
                             "scores": score_table(cfg, scores), "probability_of_improvement": improvement(cfg, scores),
                             "paired": paired_differences(cfg, scores),
                             "profiles": {"taus": taus.tolist(), **profile}, "curves": curve_bands(cfg, curves_raw),
                             "runs": runs_table}
    if cfg.tournament:
        bench["tournament"] = cross_play(cfg, specs, root)
    env = _env_name(cfg, specs)
    atomic_write_text(root / "marl_eval.json", json.dumps(marl_eval(cfg, env, specs, scores, curves_raw), indent=1))
    atomic_write_text(root / "bench.json", json.dumps(bench, indent=1, default=float))
    norm = any(cfg.tasks[t].low is not None for t in tasks) if cfg.tasks else False
    unit = "normalised score" if norm else "score"
    _figures(cfg, bench, root, unit)
    atomic_write_text(root / "bench.md", markdown(cfg, bench, unit))
    return bench
