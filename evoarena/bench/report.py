"""The evolution report of a run folder: ``report.md`` and ``plots/*.png`` (``evoarena report RUN_DIR``).

Sections, in order (the headings are constants below, read back by the tests):

1. **Evolution**: one short table, one row per stage's agent (then the teacher a stage cloned and
   ``random``): its mean score per game against the pool and against the unseen opponents, and its paired
   gain over the previous stage on both, each with its 95% interval; under it, which checkpoint each
   row is and how it was chosen.
2. **Paired gains**: the forest plot (``gains.png``) of every stage's gain over the previous one (and over
   its teacher), overall and opponent by opponent, with the same numbers as a table.
3. **Score against each opponent**: the agents x opponents matrix as a heat map (``matrix.png``).
4. **Learning curves** (``learning_curves.png``): one panel per quantity, each on its stage's own step axis
   with labelled axes; PPO's greedy eval score starts at update 0 (the clone's baseline).
5. **All agents** (``stages.png``: every agent's pool and unseen score with intervals, on an axis that does
   not start at 0) and a compact table of them with the world's metrics.
6. **Actions** (``actions.png``): each stage's action distribution.
7. **Example games**: the opponents where the last stage's score differs most from the previous stage's
   (up and down), the stages' games side by side, lines where they differ in bold.
8. **Stages**: each stage's wall time and its one-line summary.

Each stage has one colour in every plot (:func:`stage_colors`). Everything is read back from
``results.json``, ``pipeline.json``, ``stages/NN_evaluate/returns.json`` and ``tb/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from evoarena.bench import figures
from evoarena.training import runs

PLOTS = "plots"
REPORT = "report.md"
HIDDEN_METRICS = ("payoff_player_", "score_player_")  #: per-seat metrics that say nothing averaged over seats
SECTIONS = ("## Evolution", "## Paired gains", "## Score against each opponent", "## Learning curves",
            "## All agents", "## Actions", "## Example games", "## Stages")
PNGS = ("gains.png", "matrix.png", "learning_curves.png", "stages.png", "actions.png")
STAGE_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
OTHER_COLOR = "#9a9a9a"


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


def stage_colors(stage_names: list[str]) -> dict[str, str]:
    """One colour per stage's agent, the same in every plot (baselines are grey)."""
    return {n: STAGE_PALETTE[i % len(STAGE_PALETTE)] for i, n in enumerate(stage_names)}


def _ci(d: dict[str, Any] | None) -> str:
    return "" if not d else f"{d['mean']:.2f} ± {d['ci95']:.2f}"


def _gain(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    mark = " ✓" if d["low"] > 0 else (" ✗" if d["high"] < 0 else "")
    return f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]{mark}"


def _short(spec: str) -> str:
    return spec.replace("scripted:", "")


def _chain_then_by_pool(ev: dict[str, Any]) -> list[str]:
    """The stages' agents in chain order, then every other agent by its pool score, best first."""
    stages = [n for n in ev.get("stage_rows", []) if n in ev["rows"]]
    others = sorted((n for n in ev["rows"] if n not in stages), key=lambda n: -ev["rows"][n]["pool"]["mean"])
    return stages + others


def _metric_keys(entry: dict[str, Any]) -> list[str]:
    metrics = entry.get("pool", {}).get("metrics", {})
    return [k for k in metrics if not k.startswith(HIDDEN_METRICS)]


# --------------------------------------------------------------------------- tables


def evolution_rows(ev: dict[str, Any]) -> list[str]:
    """The rows of the short evolution table: the stages' agents, then the teachers they cloned and random."""
    names = list(ev.get("stage_rows", []))
    teachers = [g["over"] for g in ev["gains"] if g["kind"] == "vs teacher"]
    return names + [n for n in dict.fromkeys([*teachers, "random"]) if n in ev["rows"] and n not in names]


def evolution_table(ev: dict[str, Any]) -> str:
    """Agent, pool, unseen, and the paired gain over the previous stage on both (95% intervals)."""
    unseen = bool(ev.get("unseen"))
    over = {g["agent"]: g for g in ev["gains"] if g["kind"] == "over previous stage"}
    head = ["agent", f"pool ({len(ev['pool'])} opponents)"] + ([f"unseen ({len(ev['unseen'])})"] if unseen else [])
    head += ["gain over previous stage: pool"] + (["gain: unseen"] if unseen else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in evolution_rows(ev):
        entry, g = ev["rows"][name], over.get(name)
        label = f"**{name}** ({entry.get('label', '')})" if entry.get("stage") else f"{name} ({entry.get('label')})"
        cells = [label, _ci(entry.get("pool"))] + ([_ci(entry.get("unseen"))] if unseen else [])
        cells += [f"{_gain(g['pool'])} over {g['over']}" if g else ""]
        cells += [_gain(g.get("unseen")) if g else ""] if unseen else []
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gains_table(ev: dict[str, Any]) -> str:
    """Paired differences (game by game, same seeds) of each stage's agent over the previous one."""
    unseen = bool(ev.get("unseen"))
    head = ["agent", "over", "pool: mean difference [95% CI]"] + (["unseen"] if unseen else []) + ["paired games"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in ev["gains"]:
        over = g["over"] if g["kind"] == "over previous stage" else f"{g['over']} (its teacher)"
        row = [g["agent"], over, _gain(g["pool"])] + ([_gain(g.get("unseen"))] if unseen else [])
        lines.append("| " + " | ".join(row + [str(g["pool"]["games"])]) + " |")
    return "\n".join(lines)


def agents_table(ev: dict[str, Any]) -> str:
    """Every agent: pool and unseen score and the world's metrics (the per-opponent cells are the heat map)."""
    unseen = bool(ev.get("unseen"))
    metrics = _metric_keys(next(iter(ev["rows"].values())))
    head = ["agent", "what", "pool"] + (["unseen"] if unseen else []) + [m.replace("_", " ") for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in _chain_then_by_pool(ev):
        entry = ev["rows"][name]
        cells = [f"**{name}**" if entry.get("stage") else name, entry.get("label", ""), _ci(entry.get("pool"))]
        cells += [_ci(entry.get("unseen"))] if unseen else []
        cells += [f"{entry['pool']['metrics'].get(m, float('nan')):.3f}" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def _panels_of(stage: dict[str, Any], tags: list[str]) -> list[tuple[str, str, list[str], bool]]:
    """A stage's learning-curve panels, one per quantity: (title, y label, its tags (one line each, e.g. per
    role or policy), log y axis?)."""
    kind, task = stage["kind"], stage.get("task", stage["kind"])
    if kind == "pretrain":
        return [("masked-LM training loss", "cross-entropy (log)", ["pretrain/loss"], True),
                ("held-out perplexity", "perplexity (log)", ["pretrain/perplexity_heldout"], True)]
    if kind == "finetune" and task == "bc":
        losses = [t for t in tags if t.startswith("finetune/") and t.endswith("/loss")]
        accs = [t for t in tags if t.startswith("eval/heldout/") and t.endswith("/action_accuracy")]
        return [("cloning loss (training batches)", "cross-entropy", losses, False),
                ("held-out action accuracy", "share of the expert's actions", accs, False)]
    if kind == "finetune":
        return [("NER training loss", "cross-entropy", ["finetune/loss"], False),
                ("validation entity F1", "entity F1", ["eval/valid/entity_f1"], False)]
    if kind == "train":
        rets = [t for t in tags if t.startswith("rollout/") and t.endswith("/episode_return")]
        return [("PPO rollouts: mean episode return", "return per episode (sampled)", rets, False),
                ("greedy eval score vs the training pool", "mean score per game", ["eval/score"], False)]
    return []


def _step_label(stage: dict[str, Any]) -> str:
    return {"pretrain": "pretraining step", "train": "PPO update"}.get(stage["kind"], "fine-tuning step")


def _mark_eval(ax: Any, xs: list[int], ys: list[float], color: str) -> None:
    """The eval curve's start (update 0: the policy PPO started from) as a dashed line, its best as a star."""
    if xs[0] == 0:
        ax.axhline(ys[0], color="black", linestyle="--", linewidth=0.8)
        ax.annotate(f"update 0 (start): {ys[0]:.2f}", (xs[0], ys[0]), textcoords="offset points",
                    xytext=(4, -12), fontsize=7)
    best = int(np.argmax(ys))
    ax.plot([xs[best]], [ys[best]], marker="*", markersize=13, color=color, markeredgecolor="black")
    ax.annotate(f"best: {ys[best]:.2f} (update {xs[best]})", (xs[best], ys[best]), textcoords="offset points",
                xytext=(4, 5), fontsize=7)


def _draw_panel(ax: Any, stage: dict[str, Any], title: str, ylabel: str, tags: list[str], log: bool,
                scalars: dict[str, list[tuple[int, float]]], color: str) -> bool:
    lo = int(stage.get("step_offset", 0))
    hi = lo + int(stage.get("length", 0))
    drawn = False
    for i, tag in enumerate(t for t in tags if t in scalars):
        pts = [(x - lo, y) for x, y in scalars[tag] if lo <= x <= hi + 1]
        if not pts:
            continue
        xs, ys = [x for x, _ in pts], [y for _, y in pts]
        ax.plot(xs, ys, color=color, alpha=1.0 if i == 0 else 0.6, marker="o" if len(pts) <= 12 else None,
                markersize=4, label=tag if len(tags) > 1 else None)
        drawn = True
        if tag == "eval/score":
            _mark_eval(ax, xs, ys, color)
    if log:
        from matplotlib.ticker import FuncFormatter, LogLocator

        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _pos: f"{v:g}")  # 0.3, 2, 50: not 3e-01
        ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    ax.set_title(f"{stage['name']}: {title}", fontsize=9, loc="left", color=color)
    ax.set_xlabel(_step_label(stage), fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if len(tags) > 1 and drawn:
        ax.legend(fontsize=6)
    return drawn


def plot_learning_curves(scalars: dict[str, list[tuple[int, float]]], stages: list[dict[str, Any]],
                         colors: dict[str, str], path: Path) -> Path | None:
    """One row of panels per training stage, one panel per quantity, each on its stage's own step axis."""
    rows = [(s, p) for s in stages for p in [_panels_of(s, list(scalars))] if p]
    rows = [(s, p) for s, p in rows if any(t in scalars for _, _, tags, _ in p for t in tags)]
    if not rows:
        return None
    plt = _pyplot()
    ncol = max(len(p) for _, p in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(5.2 * ncol, 2.9 * len(rows)), squeeze=False)
    for r, (stage, panels) in enumerate(rows):
        for c in range(ncol):
            ax = axes[r, c]
            if c >= len(panels) or not _draw_panel(ax, stage, *panels[c], scalars,
                                                   colors.get(stage["name"], OTHER_COLOR)):
                ax.axis("off")
    return _save(fig, path)


def plot_stage_dots(ev: dict[str, Any], colors: dict[str, str], path: Path) -> Path:
    """Every agent's pool (filled) and unseen (hollow) mean score with 95% intervals, best pool first; the
    axis spans the data, not 0, so differences of a point or less are visible."""
    plt = _pyplot()
    names = sorted(ev["rows"], key=lambda n: -ev["rows"][n]["pool"]["mean"])
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7.5, 0.8 + 0.32 * len(names)))
    groups = [("pool", "o", 0.0), ("unseen", "D", 0.22)] if ev.get("unseen") else [("pool", "o", 0.0)]
    for group, marker, dy in groups:
        for i, n in enumerate(names):
            d = ev["rows"][n].get(group)
            if not d:
                continue
            c = colors.get(n, OTHER_COLOR)
            ax.errorbar(d["mean"], i + dy, xerr=d["ci95"], fmt=marker, color=c, capsize=2, markersize=5,
                        markerfacecolor=c if group == "pool" else "white")
    ax.set_yticks(y, [f"{_short(n)}" for n in names], fontsize=8)
    for label in ax.get_yticklabels():
        if label.get_text() in colors:
            label.set_color(colors[label.get_text()])
            label.set_fontweight("bold")
    ax.invert_yaxis()
    ax.set_xlabel("mean score per game (95% CI); filled ●: pool, hollow ◇: unseen opponents", fontsize=8)
    ax.set_title("all agents on the same games (the chain's agents in their stage colours)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_actions(ev: dict[str, Any], colors: dict[str, str], path: Path, top: int = 12) -> Path | None:
    """Action distribution (share of decisions) of each stage's agent in the evaluation games."""
    plt = _pyplot()
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
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(actions) + 2.5), 3.2))
    for i, n in enumerate(stage_rows):
        counts = ev["rows"][n]["actions"]
        s = max(1, sum(counts.values()))
        ax.bar(x + (i - (len(stage_rows) - 1) / 2) * width, [counts.get(a, 0) / s for a in actions], width,
               label=n, color=colors.get(n, OTHER_COLOR))
    ax.set_xticks(x, actions, rotation=30 if len(actions) > 4 else 0, ha="right" if len(actions) > 4 else "center",
                  fontsize=8)
    ax.set_ylabel("share of the agent's decisions", fontsize=8)
    ax.set_xlabel("action", fontsize=8)
    ax.set_title("what each stage's agent does (all evaluation games)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_matrix(ev: dict[str, Any], path: Path) -> Path:
    """The agents x opponents matrix of mean scores as a heat map (unseen opponents right of the line)."""
    names = _chain_then_by_pool(ev)
    cols = ev["columns"]
    m = np.array([[ev["rows"][n]["cells"].get(c, {}).get("mean", np.nan) for c in cols] for n in names])
    labels = [f"{_short(c)} (unseen)" if c in ev.get("unseen", []) else _short(c) for c in cols]
    return figures.heatmap(m, [_short(n) for n in names], labels, path,
                           title="mean score per game of the row's agent against the column's opponent",
                           colorbar="mean score per game", fmt="{:.0f}", col_split=len(ev["pool"]),
                           row_split=len(ev.get("stage_rows", [])), xlabel="opponent", ylabel="agent")


def per_opponent_gains(ev: dict[str, Any], returns: dict[str, dict[str, list[float]]]
                       ) -> list[tuple[str, str, str, dict[str, float]]]:
    """(agent, over, opponent, paired difference) of every stage over the previous one, opponent by opponent."""
    from evoarena.training.evaluate import paired

    out = []
    for g in ev["gains"]:
        if g["kind"] != "over previous stage" or g["agent"] not in returns or g["over"] not in returns:
            continue
        for c in ev["columns"]:
            out.append((g["agent"], g["over"], c, paired(np.asarray(returns[g["agent"]][c]),
                                                         np.asarray(returns[g["over"]][c]))))
    return out


def plot_gains(ev: dict[str, Any], returns: dict[str, dict[str, list[float]]] | None, colors: dict[str, str],
               path: Path) -> Path | None:
    """Forest plot: each stage's paired gain over the previous one (and its teacher) on the pool and the
    unseen opponents; beside it the same gains opponent by opponent. Points: mean; bars: 95% intervals."""
    rows = []
    for g in ev["gains"]:
        over = g["over"] if g["kind"] == "over previous stage" else f"teacher {_short(g['over'])}"
        for group in ("pool", "unseen"):
            if g.get(group):
                rows.append((f"{g['agent']} over {over}: {group}", g[group], colors.get(g["agent"], OTHER_COLOR)))
    if not rows:
        return None
    per_opp = per_opponent_gains(ev, returns or {})
    pairs = list(dict.fromkeys((a, o) for a, o, _, _ in per_opp))
    opp_rows = [(f"{_short(c)}{' (unseen)' if c in ev.get('unseen', []) else ''}", a, d)
                for a, _, c, d in per_opp]
    return figures.forest(
        [(label, d["mean"], d["low"], d["high"], c) for label, d, c in rows],
        path, title="paired gain in mean score per game (same games, 95% CI)", xlabel="gain (points per game)",
        right=[(label, d["mean"], d["low"], d["high"], colors.get(a, OTHER_COLOR)) for label, a, d in opp_rows],
        right_title="the same gains opponent by opponent",
        right_groups=[(f"{a} over {o}", colors.get(a, OTHER_COLOR)) for a, o in pairs])


# --------------------------------------------------------------------------- example games


def pick_examples(ev: dict[str, Any]) -> list[tuple[str, str]]:
    """(why, opponent) of the games to show: where the last stage did best and where it did worst against
    the previous one (mean difference per game), preferring opponents whose recorded games differ between
    the two; always two opponents when there are two (the report's shape does not depend on the numbers)."""
    names = ev.get("stage_rows", [])
    if len(names) < 2:
        return [("", c) for c in ev["columns"][:1]]
    prev, last = names[-2], names[-1]
    diffs = []
    for c in ev["columns"]:
        a, b = ev["rows"][last]["cells"].get(c, {}), ev["rows"][prev]["cells"].get(c, {})
        if a.get("transcript") and b.get("transcript"):
            diffs.append((a["transcript"] != b["transcript"], a["mean"] - b["mean"], c))
    if not diffs:
        return [("", c) for c in ev["columns"][:1]]
    best = max(diffs, key=lambda d: (d[0], d[1]))
    out = [(f"where {last} did best against {prev} ({best[1]:+.2f} per game)", best[2])]
    rest = [d for d in diffs if d[2] != best[2]]
    if rest:
        worst = min(rest, key=lambda d: (not d[0], d[1]))
        out.append((f"where {last} did worst against {prev} ({worst[1]:+.2f} per game)", worst[2]))
    return out


def side_by_side(ev: dict[str, Any], column: str) -> str:
    """The stages' recorded games against ``column`` as one table, a line per row; differing lines in bold."""
    names = [n for n in ev.get("stage_rows", []) if ev["rows"][n]["cells"].get(column, {}).get("transcript")]
    texts = [ev["rows"][n]["cells"][column]["transcript"].strip().splitlines() for n in names]
    head = ["step"] + [f"{n} (mean {ev['rows'][n]['cells'][column]['mean']:.1f})" for n in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i in range(max(map(len, texts), default=0)):
        cells = [t[i].replace("|", "/") if i < len(t) else "" for t in texts]
        label, cells = _common_label(cells, str(i))
        differ = len(set(cells[-2:])) > 1  # where the last stage plays differently from the one before
        cells = [f"**{c}**" if differ and c else c for c in cells]
        lines.append("| " + " | ".join([label] + cells) + " |")
    return "\n".join(lines)


def _common_label(cells: list[str], default: str) -> tuple[str, list[str]]:
    """``["round 3: C C", "round 3: D C"]`` -> ``("round 3", ["C C", "D C"])``: a label every cell starts
    with moves to the first column."""
    heads = {c.split(": ", 1)[0] for c in cells if ": " in c}
    if len(heads) == 1 and all(": " in c for c in cells):
        return heads.pop(), [c.split(": ", 1)[1] for c in cells]
    return default, cells


# --------------------------------------------------------------------------- the report


def _intro(ev: dict[str, Any]) -> list[str]:
    kw = ", ".join(f"{k}={v}" for k, v in ev.get("env_kwargs", {}).items())
    return [f"World `{ev['env']}`" + (f" ({kw})" if kw else "") + f". Every agent plays the same games: "
            f"{ev['episodes_per_seat']} per opponent and seat order, seeds from {ev['eval_seed']}. Scores are mean "
            f"points per game of the row's agent ± the half-width of the 95% interval; a gain is the paired "
            f"difference game by game. **pool**: the {len(ev['pool'])} opponents the learner trained with; "
            f"**unseen**: {len(ev.get('unseen', []))} opponents no stage met. ✓ / ✗: the interval lies above / "
            f"below 0.", ""]


def _evolution_section(ev: dict[str, Any]) -> list[str]:
    out = [SECTIONS[0], "", evolution_table(ev), "", "Which checkpoint each row is:", ""]
    for n in ev.get("stage_rows", []):
        out.append(f"- **{n}**: {ev['rows'][n].get('source') or 'the stage checkpoint'}")
    return out + [""]


def _examples_section(ev: dict[str, Any]) -> list[str]:
    out = [SECTIONS[6], "", f"The first game of each stage's agent (seat `{ev.get('first_seat', 'player_0')}`, "
                            "its action first) against the same opponent on the same seed; the column head is "
                            "the agent's mean over all its games against that opponent; bold: steps where the "
                            "last stage plays differently from the one before.", ""]
    for why, col in pick_examples(ev):
        out += [f"**vs {col}**" + (f": {why}" if why else ""), "", side_by_side(ev, col), ""]
    return out


def _stages_section(stages: list[dict[str, Any]], results: dict[str, Any]) -> list[str]:
    out = [SECTIONS[7], "", "| # | stage | kind | wall time | summary |", "|---|---|---|---|---|"]
    for s in stages:
        summ = str(results.get(s["key"], {}).get("summary", "")).replace("|", "/").replace("\n", " ")
        wall = s.get("wall_s")
        out.append(f"| {s['key'][:2]} | {s['name']} | {s.get('task', s.get('kind'))} | "
                   f"{'' if wall is None else f'{wall:.0f} s'} | {summ} |")
    return out


def _returns(run_dir: Path, key: str) -> dict[str, dict[str, list[float]]] | None:
    path = run_dir / "stages" / key / "returns.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _img(path: Path | None, alt: str) -> list[str]:
    return [f"![{alt}]({PLOTS}/{path.name})", ""] if path is not None else []


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
    planned = {s["key"]: s for s in results.get("pipeline", {}).get("stages", [])}
    for s in stages:
        s.setdefault("task", planned.get(s["key"], {}).get("task", s.get("kind")))
    name = results.get("pipeline", {}).get("name", run_dir.name)
    plots = run_dir / PLOTS
    plots.mkdir(exist_ok=True)
    found = evaluation(results)
    colors = stage_colors([s["name"] for s in stages if s.get("kind") != "evaluate"])
    curves = plot_learning_curves(read_scalars(run_dir / "tb"), stages, colors, plots / "learning_curves.png")
    out = [f"# {name}: evolution report", ""]
    if found is None:
        out += [SECTIONS[3], "", *_img(curves, "learning curves")]
        out += _stages_section(stages, results)
        return runs.atomic_write_text(run_dir / REPORT, "\n".join(out) + "\n")
    key, ev = found
    out += _intro(ev) + _evolution_section(ev)
    gains = plot_gains(ev, _returns(run_dir, key), colors, plots / "gains.png")
    out += [SECTIONS[1], "", *_img(gains, "paired gains"), gains_table(ev), ""]
    out += [SECTIONS[2], "", *_img(plot_matrix(ev, plots / "matrix.png"), "score matrix")]
    out += [SECTIONS[3], "", "Each panel on its stage's own steps. PPO's greedy eval score (learner vs the pool, "
                             "both seats, other seeds than the tables) starts at update 0: the agent it started "
                             "from.", "", *_img(curves, "learning curves")]
    out += [SECTIONS[4], "", *_img(plot_stage_dots(ev, colors, plots / "stages.png"), "all agents"),
            agents_table(ev), ""]
    out += [SECTIONS[5], "", *_img(plot_actions(ev, colors, plots / "actions.png"), "actions")]
    for n in ev.get("stage_rows", []):
        counts = ev["rows"][n].get("actions", {})
        s = max(1, sum(counts.values()))
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:8]
        out.append(f"- **{n}**: " + ", ".join(f"{a} {c / s:.1%}" for a, c in top))
    out += [""] + _examples_section(ev) + _stages_section(stages, results)
    out += ["", f"TensorBoard: `tensorboard --logdir {run_dir}` (every stage on one step axis).", ""]
    return runs.atomic_write_text(run_dir / REPORT, "\n".join(out))
