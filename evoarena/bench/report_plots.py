"""The plots of the evolution report (``plots/*.png``, :mod:`evoarena.bench.report`): learning curves on each
stage's own step axis, every agent's scores, the agents x opponents heat map, the paired gains (forest plot)
and the stages' actions. Each stage's agent has one colour in every plot (:func:`stage_colors`); other
agents are grey.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evoarena.bench import figures

STAGE_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
OTHER_COLOR = "#9a9a9a"
DPI = 100


def stage_colors(stage_names: list[str]) -> dict[str, str]:
    """One colour per stage's agent, the same in every plot (baselines are grey)."""
    return {n: STAGE_PALETTE[i % len(STAGE_PALETTE)] for i, n in enumerate(stage_names)}


def _short(spec: str) -> str:
    return spec.replace("scripted:", "")


def agent_order(ev: dict[str, Any]) -> list[str]:
    """The stages' agents in chain order, then every other agent by its pool score, best first."""
    stages = [n for n in ev.get("stage_rows", []) if n in ev["rows"]]
    others = sorted((n for n in ev["rows"] if n not in stages), key=lambda n: -ev["rows"][n]["pool"]["mean"])
    return stages + others


# --------------------------------------------------------------------------- learning curves


def panels_of(stage: dict[str, Any], tags: list[str]) -> list[tuple[str, str, list[str], bool]]:
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
    rows = [(s, p) for s in stages for p in [panels_of(s, list(scalars))] if p]
    rows = [(s, p) for s, p in rows if any(t in scalars for _, _, tags, _ in p for t in tags)]
    if not rows:
        return None
    plt = figures.pyplot()
    ncol = max(len(p) for _, p in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(5.2 * ncol, 2.9 * len(rows)), squeeze=False)
    for r, (stage, panels) in enumerate(rows):
        for c in range(ncol):
            ax = axes[r, c]
            if c >= len(panels) or not _draw_panel(ax, stage, *panels[c], scalars,
                                                   colors.get(stage["name"], OTHER_COLOR)):
                ax.axis("off")
    return figures.save(fig, path, dpi=DPI)


# --------------------------------------------------------------------------- the evaluation


def plot_stage_dots(ev: dict[str, Any], colors: dict[str, str], path: Path) -> Path:
    """Every agent's pool (filled) and unseen (hollow) mean score with 95% intervals, best pool first; the
    axis spans the data, not 0, so differences of a point or less are visible."""
    plt = figures.pyplot()
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
    return figures.save(fig, path, dpi=DPI)


def plot_actions(ev: dict[str, Any], colors: dict[str, str], path: Path, top: int = 12) -> Path | None:
    """Action distribution (share of decisions) of each stage's agent in the evaluation games."""
    plt = figures.pyplot()
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
    return figures.save(fig, path, dpi=DPI)


def plot_matrix(ev: dict[str, Any], path: Path) -> Path:
    """The agents x opponents matrix of mean scores as a heat map (unseen opponents right of the line)."""
    names = agent_order(ev)
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
