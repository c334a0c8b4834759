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

The plots are drawn by :mod:`evoarena.bench.report_plots` (each stage has one colour in every plot); this
module writes the tables and the text. Everything is read back from ``results.json``, ``pipeline.json``,
``stages/NN_evaluate/returns.json`` and ``tb/`` (:func:`evoarena.bench.scalars.read_scalars`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evoarena.bench.league_report import league_section
from evoarena.bench.report_plots import (
    agent_order,
    plot_actions,
    plot_gains,
    plot_learning_curves,
    plot_matrix,
    plot_stage_dots,
    stage_colors,
)
from evoarena.bench.scalars import read_scalars
from evoarena.storage import atomic_write_text
from evoarena.training.infra import runs

PLOTS = "plots"
REPORT = "report.md"
HIDDEN_METRICS = ("payoff_player_", "score_player_")  #: per-seat metrics that say nothing averaged over seats
SECTIONS = ("## Evolution", "## Paired gains", "## Score against each opponent", "## Learning curves",
            "## All agents", "## Actions", "## Example games", "## Stages")
DEALS = "## Deals (Lewis et al. 2017)"  #: only for worlds whose games end in a deal or not (negotiation)
PNGS = ("gains.png", "matrix.png", "learning_curves.png", "stages.png", "actions.png")


def evaluation(results: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(key, results) of the run's last evaluate stage, or None."""
    found = [(k, v) for k, v in results.items() if isinstance(v, dict) and "rows" in v and "gains" in v]
    return found[-1] if found else None


def _ci(d: dict[str, Any] | None) -> str:
    return "" if not d else f"{d['mean']:.2f} ± {d['ci95']:.2f}"


def _gain(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    mark = " ✓" if d["low"] > 0 else (" ✗" if d["high"] < 0 else "")
    return f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]{mark}"


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
    for name in agent_order(ev):
        entry = ev["rows"][name]
        cells = [f"**{name}**" if entry.get("stage") else name, entry.get("label", ""), _ci(entry.get("pool"))]
        cells += [_ci(entry.get("unseen"))] if unseen else []
        cells += [f"{entry['pool']['metrics'].get(m, float('nan')):.3f}" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _deal_cells(d: dict[str, Any] | None) -> list[str]:
    if not d:
        return ["", "", "", ""]
    agreed = "" if d.get("score_agreed") is None else f"{d['score_agreed']:.2f}"
    pareto = "" if d.get("pareto_of_agreed") is None else f"{d['pareto_of_agreed']:.1%}"
    return [f"{d['score']:.2f}", agreed, f"{d['agreed']:.1%}", pareto]


def has_deals(ev: dict[str, Any]) -> bool:
    return any("deals" in entry.get("pool", {}) for entry in ev["rows"].values())


def deals_tables(ev: dict[str, Any]) -> list[str]:
    """Lewis et al. (2017)'s metrics of every agent: score over all games and over agreed games, % of games
    agreed, % of deals Pareto-optimal; per group (pool, unseen), then per opponent."""
    groups = [g for g in ("pool", "unseen") if ev.get(g) or (g == "pool")]
    head = ["agent"] + [f"{g}: {m}" for g in groups for m in ("score (all)", "score (agreed)", "agreed",
                                                              "Pareto-optimal deals")]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in agent_order(ev):
        entry = ev["rows"][name]
        label = f"**{name}**" if entry.get("stage") else name
        out.append("| " + " | ".join([label] + [c for g in groups for c in _deal_cells(entry.get(g, {}).get("deals"))])
                   + " |")
    out += ["", "<details><summary>per opponent</summary>", "",
            "| agent | opponent | score (all) | score (agreed) | agreed | Pareto-optimal deals |",
            "|---|---|---|---|---|---|"]
    for name in agent_order(ev):
        for col, cell in ev["rows"][name]["cells"].items():
            out.append("| " + " | ".join([name, col] + _deal_cells(cell.get("deals"))) + " |")
    return out + ["", "</details>", ""]


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
        return atomic_write_text(run_dir / REPORT, "\n".join(out) + "\n")
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
    if has_deals(ev):
        out += [DEALS, "", "Score per game of the row's agent over all its games and over those that ended in a "
                           "deal; the share of games agreed; the share of deals no other split beats for both "
                           "players (Pareto-optimal).", "", *deals_tables(ev)]
    out += [SECTIONS[5], "", *_img(plot_actions(ev, colors, plots / "actions.png"), "actions")]
    for n in ev.get("stage_rows", []):
        counts = ev["rows"][n].get("actions", {})
        s = max(1, sum(counts.values()))
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:8]
        out.append(f"- **{n}**: " + ", ".join(f"{a} {c / s:.1%}" for a, c in top))
    out += [""] + league_section(run_dir, results, ev["env"], ev.get("env_kwargs") or {}, plots)
    out += _examples_section(ev) + _stages_section(stages, results)
    out += ["", f"TensorBoard: `tensorboard --logdir {run_dir}` (every stage on one step axis).", ""]
    return atomic_write_text(run_dir / REPORT, "\n".join(out))
