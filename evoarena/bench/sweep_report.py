"""A sweep's ``bench.md``, written from what ``bench.json`` holds (:func:`markdown`), and :func:`publish`,
which copies the report's files (not the run folders) elsewhere, e.g. ``docs/results/NAME``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evoarena.config import SETUP_DIR, SweepConfig

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


def _key_path(path: str | list[str]) -> str:
    return path if isinstance(path, str) else ".".join(path)


def _header(cfg: SweepConfig, bench: dict[str, Any]) -> list[str]:
    """The title, the command, the runs and every variant's overrides."""
    variants = list(cfg.variants)
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
            f"`{t}` from `{_key_path(p)}`" for t, p in vc.results.items())
            if vc.of else " ".join(f"`{o}`" for o in vc.set) or "(none)")
        lines.append(f"| {v} | {what} |")
    if cfg.set:
        lines += ["", f"Every run also: {' '.join(f'`{o}`' for o in cfg.set)}."]
    for name, s in cfg.setup.items():
        lines += ["", f"Setup run `{name}` (made once, before the variants, in `{SETUP_DIR}/{name}/`; overrides name "
                  f"its folder as `{{setup.{name}}}`): `evoarena {s.command} {s.config}`"
                  + "".join(f" `--set {o}`" for o in s.set) + "."]
    return lines


def _scores(cfg: SweepConfig, bench: dict[str, Any], unit: str) -> list[str]:
    """The tasks, the IQM table and the probability-of-improvement matrix."""
    variants, tasks = list(cfg.variants), list(cfg.tasks or {})
    lines = ["", "## Scores", "", "Tasks (one number per run from its `results.json`"
             + ("; normalised (x - low) / (high - low)" if unit != "score" else "") + "):", ""]
    for t in tasks:
        tc = cfg.tasks[t]  # type: ignore[index]
        norm = f", low {tc.low:g}, high {tc.high:g}" if tc.low is not None else ""
        offset = tc.curve_offset if isinstance(tc.curve_offset, str) else ".".join(tc.curve_offset or [])
        curve = (f", curve `{tc.curve}`" + (f" (steps less `{offset}`)" if offset else "")) if tc.curve else ""
        lines.append(f"- `{t}`: `{_key_path(tc.result)}`{curve}{norm}")
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
    return lines + ["", "![probability of improvement](poi.png)", ""] + _paired(cfg, bench)


def _paired(cfg: SweepConfig, bench: dict[str, Any]) -> list[str]:
    """The paired differences (same seed) of the config's ``paired`` variants."""
    if not bench.get("paired"):
        return []
    lines = ["## Paired differences", "",
             "x - y on the same seed (the same pre-training, games and evaluation where the run config seeds them), "
             "averaged over seeds: the 95% bootstrap interval resamples seeds; the Student-t interval (n - 1 "
             "degrees of freedom) is wider and, with few seeds, the one to trust.", "",
             "| x - y | task | mean [95% bootstrap CI] | 95% t interval | per seed |",
             "| --- | --- | --- | --- | --- |"]
    for pair, tasks in bench["paired"].items():
        for t, d in tasks.items():
            tci = f"[{d['t_low']:+.3f}, {d['t_high']:+.3f}]" if "t_low" in d else "(one seed)"
            seeds = ", ".join(f"{v:+.3f}" for v in d["per_seed"])
            lines.append(f"| {pair} | {t} | {_ci(d, '{:+.3f}')} | {tci} | {seeds} |")
    return lines + [""]


def _cross_play(variants: list[str], tour: dict[str, Any]) -> list[str]:
    """Per variant its cross-play scores, then every entrant's ratings."""
    unit_t = tour["turn_unit"]
    pool = f" and the pool ({', '.join(tour['pool'])})" if tour["pool"] else ""
    lines = ["", "## Cross-play tournament", "",
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
    return lines + ["", "![cross-play payoffs](tournament/payoffs.png)"]


def markdown(cfg: SweepConfig, bench: dict[str, Any], unit: str = "score") -> str:
    """``bench.md``: the sweep, IQM tables, the probability-of-improvement matrix, figures, runs, cross-play."""
    tasks = list(cfg.tasks or {})
    lines = _header(cfg, bench) + _scores(cfg, bench, unit)
    if bench["curves"]:
        lines += ["## Learning curves", "", "IQM over seeds at each logged step, with its 95% band.", "",
                  "![learning curves](curves.png)", ""]
    lines += ["## Performance profiles", "", "The fraction of (run, task) scores above each threshold tau.", "",
              "![performance profiles](profiles.png)", "", "## Runs", "",
              "| variant | seed | " + " | ".join(tasks) + " |", "| --- | ---: |" + " ---: |" * len(tasks)]
    for r in bench["runs"]:
        lines.append(f"| {r['variant']} | {r['seed']} | " + " | ".join(f"{r[t]:.4g}" for t in tasks) + " |")
    if bench.get("tournament"):
        lines += _cross_play(list(cfg.variants), bench["tournament"])
    return "\n".join(lines) + "\n"
