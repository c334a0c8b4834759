"""PNG figures of tournaments and sweeps: heat maps, interval charts, learning curves with bands and
performance profiles. Each function draws one figure from plain arrays and writes it to ``path``
(matplotlib's non-interactive Agg backend; nothing is shown on screen)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str | Path, dpi: int = 120) -> Path:
    """Lay out ``fig``, write it to ``path`` (its folder made if missing) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def _short(label: str, width: int = 28) -> str:
    return label if len(label) <= width else "..." + label[-(width - 3):]


def heatmap(matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], path: str | Path, title: str,
            colorbar: str = "", fmt: str = "{:.3g}", cmap: str = "viridis", col_split: int | None = None,
            row_split: int | None = None, xlabel: str = "", ylabel: str = "") -> Path:
    """A matrix as coloured cells with their values written in (NaN cells left blank); ``col_split`` /
    ``row_split`` draw a white line before that column / row (e.g. pool | unseen opponents)."""
    plt = pyplot()
    m = np.asarray(matrix, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(1.8 + 0.62 * len(cols), 1.4 + 0.36 * len(rows)))
    im = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(cols)), [_short(c) for c in cols], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [_short(r) for r in rows], fontsize=8)
    if col_split and 0 < col_split < len(cols):
        ax.axvline(col_split - 0.5, color="white", linewidth=3)
    if row_split and 0 < row_split < len(rows):
        ax.axhline(row_split - 0.5, color="white", linewidth=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    finite = m[np.isfinite(m)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if np.isfinite(m[i, j]):
                ax.text(j, i, fmt.format(m[i, j]), ha="center", va="center", fontsize=7,
                        color="black" if m[i, j] > mid else "white")
    fig.colorbar(im, ax=ax, label=colorbar)
    ax.set_title(title, fontsize=10)
    return save(fig, path)


ForestRow = tuple[str, float, float, float, str]  #: (label, point, low, high, colour)


def _forest_panel(ax, rows: Sequence[ForestRow], title: str, xlabel: str, slots: int,
                  groups: Sequence[tuple[str, str]] = ()) -> None:
    """Rows top to bottom at unit spacing (``slots`` rows tall, so two panels share one spacing);
    ``groups``: (name, colour) of equal consecutive blocks of rows, labelled and separated."""
    for i, (_, p, lo, hi, color) in enumerate(rows):
        ax.errorbar(p, i, xerr=[[p - lo], [hi - p]], fmt="o", color=color, capsize=3, markersize=5,
                    markerfacecolor=color if lo > 0 or hi < 0 else "white")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(np.arange(len(rows)), [_short(r[0], 44) for r in rows], fontsize=8)
    lows, highs = [r[2] for r in rows], [r[3] for r in rows]
    span = max(max(highs + [0.0]) - min(lows + [0.0]), 1e-6)
    ax.set_xlim(min(lows + [0.0]) - 0.08 * span, max(highs + [0.0]) + 0.08 * span)
    if groups:
        per = len(rows) // len(groups)
        for g, (name, color) in enumerate(groups):
            if g:
                ax.axhline(g * per - 0.5, color="grey", linewidth=0.6, linestyle=":")
            ax.text(0.99, g * per - 0.42, name, transform=ax.get_yaxis_transform(), ha="right", va="top",
                    fontsize=8, color=color, fontweight="bold")
    ax.set_ylim(slots - 0.5, -0.5)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)


def forest(rows: Sequence[ForestRow], path: str | Path, title: str, xlabel: str,
           right: Sequence[ForestRow] = (), right_title: str = "",
           right_groups: Sequence[tuple[str, str]] = ()) -> Path:
    """A forest plot: one row per estimate, its point and interval, a line at 0; filled points: the interval
    excludes 0. ``right``: a second panel under it (e.g. the same estimates opponent by opponent, in
    ``right_groups``: equal blocks of rows, each (name, colour))."""
    plt = pyplot()
    heights = [len(rows) + 2.5] + ([len(right) + 2.5] if right else [])
    fig, axes = plt.subplots(len(heights), 1, figsize=(8.0, 0.8 + 0.27 * sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    _forest_panel(axes[0, 0], rows, title, xlabel, len(rows))
    if right:
        _forest_panel(axes[1, 0], right, right_title, xlabel, len(right), right_groups)
    return save(fig, path)


def interval_chart(labels: Sequence[str], point: Sequence[float], low: Sequence[float], high: Sequence[float],
                   path: str | Path, title: str, xlabel: str) -> Path:
    """One horizontal bar per label: the point estimate and its interval."""
    plt = pyplot()
    y = np.arange(len(labels))
    p, lo, hi = (np.asarray(v, dtype=np.float64) for v in (point, low, high))
    fig, ax = plt.subplots(figsize=(6.5, 1.0 + 0.45 * len(labels)))
    ax.errorbar(p, y, xerr=np.stack([p - lo, hi - p]), fmt="o", capsize=4, color="tab:blue")
    ax.set_yticks(y, [_short(s, 36) for s in labels], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


def curves(panels: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]],
           path: str | Path, xlabel: str, ylabel: str) -> Path:
    """Learning curves, one panel per task: ``panels[task][variant] = (steps, centre, low, high)``,
    the centre as a line and ``low..high`` as a shaded band."""
    plt = pyplot()
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(5.0 * n, 3.6), squeeze=False)
    for ax, (task, lines) in zip(axes[0], panels.items()):
        for variant, (steps, centre, lo, hi) in lines.items():
            (line,) = ax.plot(steps, centre, label=variant)
            ax.fill_between(steps, lo, hi, alpha=0.2, color=line.get_color())
        ax.set_title(task, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save(fig, path)


def profiles(taus: np.ndarray, lines: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]], path: str | Path,
             xlabel: str) -> Path:
    """Performance profiles: ``lines[variant] = (fraction above tau, low, high)`` against ``taus``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for variant, (frac, lo, hi) in lines.items():
        (line,) = ax.plot(taus, frac, label=variant)
        ax.fill_between(taus, lo, hi, alpha=0.2, color=line.get_color())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(r"fraction of runs with score > $\tau$")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("performance profiles (95% stratified-bootstrap bands)", fontsize=10)
    return save(fig, path)
