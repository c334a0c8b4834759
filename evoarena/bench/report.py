"""The evolution report of a run folder: ``report.md`` and ``plots/*.png`` (``evoarena report RUN_DIR``).

It opens with the evolution table (one row per stage's agent, then ``random`` and every scripted
strategy; one column per opponent; mean score with its 95% interval; the world's metrics), then the paired
difference of each stage's agent over the previous one (and over the expert it was cloned from), the
plots (learning curves of every stage on the run's one step axis, the stage-by-stage bar chart with
intervals, the action distribution of each stage's agent), one transcript per stage's agent, and each
stage's own summary. Everything is read back from ``results.json``, ``pipeline.json`` and ``tb/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evoarena.training import runs

PLOTS = "plots"
REPORT = "report.md"
HIDDEN_METRICS = ("payoff_player_", "score_player_")  #: per-seat metrics that say nothing averaged over seats


def read_scalars(tb_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a TensorBoard log folder: tag -> [(step, value)] sorted by step (purged events of a
    resumed run are dropped, as TensorBoard drops them)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb_dir = Path(tb_dir)
    if not tb_dir.is_dir():
        return {}
    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: sorted((int(e.step), float(e.value)) for e in acc.Scalars(tag)) for tag in acc.Tags()["scalars"]}


def evaluation(results: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(key, results) of the run's last evaluate stage, or None."""
    found = [(k, v) for k, v in results.items() if isinstance(v, dict) and "rows" in v and "gains" in v]
    return found[-1] if found else None


def _cell(c: dict[str, Any] | None) -> str:
    if not c:
        return ""
    return f"{c['mean']:.2f} ± {c['ci95']:.2f}"


def _metric_keys(entry: dict[str, Any]) -> list[str]:
    metrics = entry.get("pool", {}).get("metrics", {})
    return [k for k in metrics if not k.startswith(HIDDEN_METRICS)]


def evolution_table(ev: dict[str, Any]) -> str:
    """The Markdown evolution table: agents x opponents, pool and unseen means, the world's metrics."""
    rows, cols, unseen = ev["rows"], ev["columns"], set(ev.get("unseen", []))
    first = next(iter(rows.values()))
    metrics = _metric_keys(first)
    head = ["agent", "what"] + [f"{c} (unseen)" if c in unseen else c for c in cols]
    head += ["**pool**"] + (["**unseen**"] if unseen else []) + metrics
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, entry in rows.items():
        label = f"**{name}**" if entry.get("stage") else name
        cells = [_cell(entry["cells"].get(c)) for c in cols]
        cells += [f"**{_cell(entry.get('pool'))}**"] + ([_cell(entry.get("unseen"))] if unseen else [])
        cells += [f"{entry['pool']['metrics'].get(m, float('nan')):.3f}" for m in metrics]
        lines.append("| " + " | ".join([label, entry.get("label", "")] + cells) + " |")
    return "\n".join(lines)


def gains_table(ev: dict[str, Any]) -> str:
    """Paired differences (game by game, same seeds) of each stage's agent over the previous one."""
    unseen = bool(ev.get("unseen"))
    head = ["agent", "over", "kind", "pool: mean difference [95% CI]", "games"]
    head += ["unseen: mean difference [95% CI]"] if unseen else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in ev["gains"]:
        p = g["pool"]
        mark = " ✓" if p["low"] > 0 else ""
        row = [g["agent"], g["over"], g["kind"], f"{p['mean']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}]{mark}",
               str(p["games"])]
        if unseen:
            u = g.get("unseen")
            row.append(f"{u['mean']:+.3f} [{u['low']:+.3f}, {u['high']:+.3f}]" if u else "")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots


def _stage_tags(stage: dict[str, Any], tags: list[str]) -> list[str]:
    """The tags that show a stage's learning (the first that exist of its kind's)."""
    kind = stage["kind"]
    if kind == "pretrain":
        want = ["pretrain/loss", "pretrain/perplexity_heldout"]
    elif kind == "finetune":
        want = [t for t in tags if t.startswith("finetune/") and t.endswith("/loss")]
        want += [t for t in tags if t.startswith("eval/heldout/") and t.endswith("action_accuracy")]
        want += ["finetune/loss", "eval/valid/entity_f1"]
    elif kind == "train":
        want = [t for t in tags if t.startswith("rollout/") and t.endswith("/episode_return")] + ["eval/score"]
    else:
        want = []
    return [t for t in dict.fromkeys(want) if t in tags]


def plot_learning_curves(scalars: dict[str, list[tuple[int, float]]], stages: list[dict[str, Any]],
                         path: Path) -> Path | None:
    """One panel per training stage, all on the run's one step axis, stage boundaries marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(s, _stage_tags(s, list(scalars))) for s in stages if s["kind"] != "evaluate"]
    panels = [(s, t) for s, t in panels if t]
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.6 * len(panels)), squeeze=False)
    for ax, (stage, tags) in zip(axes[:, 0], panels):
        lo = stage.get("step_offset", 0)
        hi = lo + stage.get("length", 0)
        for tag in tags:
            pts = [(x, y) for x, y in scalars[tag] if lo <= x <= hi + 1]
            if pts:
                ax.plot([x for x, _ in pts], [y for _, y in pts], label=tag, marker="." if len(pts) < 40 else None)
        ax.set_xlim(lo, max(hi, lo + 1))
        if stage["kind"] == "pretrain":
            ax.set_yscale("log")
        ax.set_title(f"stage {stage['key'][:2]}: {stage['name']} ({stage.get('task', stage['kind'])}), "
                     f"global steps {lo}-{hi}", fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("global step (one axis for the whole run: each panel is its stage's span)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_stage_bars(ev: dict[str, Any], path: Path) -> Path:
    """Pool (and unseen) mean score of each stage's agent, the teacher and the baselines, with 95% CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(ev["rows"])
    groups = [g for g in ("pool", "unseen") if all(g in ev["rows"][n] for n in names)]
    x = np.arange(len(names))
    width = 0.8 / len(groups)
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(names) + 2), 3.8))
    for i, g in enumerate(groups):
        means = [ev["rows"][n][g]["mean"] for n in names]
        cis = [ev["rows"][n][g]["ci95"] for n in names]
        colors = ["tab:orange" if ev["rows"][n].get("stage") else "tab:gray" for n in names]
        ax.bar(x + (i - (len(groups) - 1) / 2) * width, means, width, yerr=cis, capsize=2, label=g,
               color=colors, alpha=1.0 if g == "pool" else 0.55, edgecolor="black", linewidth=0.4)
    ax.set_xticks(x, [n.replace("scripted:", "") for n in names], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("mean score per game (95% CI)")
    ax.set_title("stage by stage (orange: the chain's agents; solid: pool, light: unseen opponents)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_actions(ev: dict[str, Any], path: Path, top: int = 12) -> Path | None:
    """Action distribution (share of decisions) of each stage's agent: before and after RL."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    stage_rows = [n for n in ev.get("stage_rows", []) if ev["rows"][n].get("actions")]
    if not stage_rows:
        return None
    total: dict[str, int] = {}
    for n in stage_rows:
        for a, c in ev["rows"][n]["actions"].items():
            total[a] = total.get(a, 0) + c
    actions = sorted(total, key=lambda a: -total[a])[:top]
    x = np.arange(len(actions))
    width = 0.8 / len(stage_rows)
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(actions) + 2), 3.4))
    for i, n in enumerate(stage_rows):
        counts = ev["rows"][n]["actions"]
        s = max(1, sum(counts.values()))
        ax.bar(x + (i - (len(stage_rows) - 1) / 2) * width, [counts.get(a, 0) / s for a in actions], width, label=n)
    ax.set_xticks(x, actions, rotation=30 if len(actions) > 4 else 0, ha="right" if len(actions) > 4 else "center",
                  fontsize=8)
    ax.set_ylabel("share of decisions")
    ax.set_title("action distribution of each stage's agent (evaluation games)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- the report


def write_report(run_dir: str | Path) -> Path:
    """Write ``report.md`` and ``plots/*.png`` of ``run_dir``; returns the report's path."""
    run_dir = Path(run_dir)
    results = runs.read_results(run_dir)
    if not results:
        raise FileNotFoundError(f"{run_dir}: no {runs.RESULTS_FILE}; not a finished run folder (or not a run "
                                f"folder at all)")
    state_file = run_dir / "pipeline.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {"stages": {}}
    stages = [{"key": k, **v} for k, v in state["stages"].items()]
    name = results.get("pipeline", {}).get("name", run_dir.name)
    plots = run_dir / PLOTS
    plots.mkdir(exist_ok=True)
    out = [f"# {name}: evolution report", ""]
    ev_found = evaluation(results)
    made = []
    curves = plot_learning_curves(read_scalars(run_dir / "tb"), stages, plots / "learning_curves.png")
    if ev_found:
        _key, ev = ev_found
        kw = ", ".join(f"{k}={v}" for k, v in ev.get("env_kwargs", {}).items())
        out += [f"World `{ev['env']}`" + (f" ({kw})" if kw else "") + f". Every cell: {ev['episodes_per_seat']} "
                f"games per seat order on the same seeds (from {ev['eval_seed']}), mean score of the row's agent "
                f"per game ± the half-width of its 95% interval. **pool**: all games against the opponents the "
                f"learner trained with; **unseen**: opponents no stage met.", "",
                "## Evolution table", "", evolution_table(ev), "",
                "## What each stage gained (paired differences, same games)", "", gains_table(ev), "",
                "✓: the 95% interval lies above zero.", ""]
        made.append(plot_stage_bars(ev, plots / "stages.png"))
        made.append(plot_actions(ev, plots / "actions.png"))
    out += ["## Plots", ""]
    for p in [curves, *made]:
        if p is not None:
            out += [f"![{p.stem}]({PLOTS}/{p.name})", ""]
    if ev_found:
        _key, ev = ev_found
        out += ["## Action distribution", ""]
        for n in ev.get("stage_rows", []):
            counts = ev["rows"][n].get("actions", {})
            s = max(1, sum(counts.values()))
            top = sorted(counts.items(), key=lambda kv: -kv[1])[:8]
            out.append(f"- **{n}**: " + ", ".join(f"{a} {c / s:.1%}" for a, c in top))
        out += ["", "## Example games", ""]
        for n in ev.get("stage_rows", []):
            for col, cell in ev["rows"][n]["cells"].items():
                if cell.get("transcript"):
                    out += [f"**{n}** vs {col}:", "", "```", cell["transcript"].strip(), "```", ""]
                    break
    out += ["## Stages", "", "| # | stage | kind | wall time | summary |", "|---|---|---|---|---|"]
    for s in stages:
        summ = str(results.get(s["key"], {}).get("summary", "")).replace("|", "/").replace("\n", " ")
        wall = s.get("wall_s")
        out.append(f"| {s['key'][:2]} | {s['name']} | {s.get('kind')} | "
                   f"{'' if wall is None else f'{wall:.0f} s'} | {summ} |")
    out += ["", f"TensorBoard: `tensorboard --logdir {run_dir}` (every stage on one step axis).", ""]
    return runs.atomic_write_text(run_dir / REPORT, "\n".join(out))
