"""The report's league section (a run whose train stage ran a ``league:``): ratings of the members and the
exploitability of every stage's agent.

- **Ratings**: a round-robin among the final main(s), every frozen member still in the league and the anchors
  (the pool's strategies), rated by Bradley-Terry with bootstrap 95% intervals and Elo
  (:func:`evoarena.bench.tournament.rate`); plotted against the generation (the update a member was frozen at).
- **Exploitability**: a short ``evoarena exploit`` (:mod:`evoarena.bench.exploit`) of each stage's agent and of the
  world's reference, on its own seeds (disjoint from training and from the evaluate stage's games).

Both are computed once and kept in ``league/league.json`` of the run folder; writing the report again reuses them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evoarena.storage import atomic_write_text
from evoarena.training.rl.seats import START, START_AGENT

CACHE = Path("league") / "league.json"
EPISODES = 10  #: games per pair and seat order in the ratings round-robin
#: the report's exploit per agent: the command's budget and restarts (20 updates x 1 measured the shipped dilemma agent
#: as robust as tit_for_tat, 40 x 3 found the exploit that costs it 5 points), fewer games, its own seed
EXPLOIT = {"budget": 40, "restarts": 3, "episodes": 50, "seed": 7}


def league_stage(results: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(results key, results) of the train stage that ran a league, if any."""
    return next(((k, v) for k, v in results.items() if isinstance(v, dict) and v.get("league")), None)


def _handed_on(stage: dict[str, Any], main: str) -> Path:
    folder = {"best": stage["best_checkpoint"], "averaged": stage.get("averaged_checkpoint")}.get(
        stage.get("hand_on")) or stage["checkpoint"]
    return Path(folder) / "policies" / main


def members(stage: dict[str, Any]) -> list[dict[str, Any]]:
    """Entrants of the ratings round-robin: name, spec, generation (None for anchors) and lineage; the ``start``
    anchor (a main frozen as it started) is its starting-weights snapshot."""
    league = stage["league"]
    snaps = Path(stage["checkpoint"]) / "snapshots"
    out = [{"name": f"{m} (final)", "spec": f"ckpt:{_handed_on(stage, m)}", "generation": stage["updates"],
            "lineage": m} for m in league["mains"]]
    out += [{"name": f"{n}@{u}", "spec": f"ckpt:{snaps / f'league_{n}' / f'{u:06d}'}", "generation": u,
             "lineage": "exploiter" if n in league["exploiters"] else n} for n, u in league["frozen"]]
    for a in league["anchors"]:
        if a != START_AGENT:
            out.append({"name": a, "spec": a, "generation": None, "lineage": "anchor"})
            continue
        for i, m in enumerate(league["mains"]):  # each main's own start (snapshot index: its place among the mains)
            name = START_AGENT if len(league["mains"]) == 1 else f"{START_AGENT} ({m})"
            out.append({"name": name, "spec": f"ckpt:{snaps / START / f'{i:06d}'}", "generation": None,
                        "lineage": "anchor"})
    return out


def stage_agents(results: dict[str, Any]) -> list[tuple[str, str]]:
    """(stage key, agent spec) of every stage that made a single-role agent: cloned and PPO-trained policies."""
    out = []
    for key, stage in results.items():
        if not isinstance(stage, dict):
            continue
        if stage.get("league") is not None or (stage.get("checkpoint") and stage.get("updates")):
            policies = Path(stage["checkpoint"]) / "policies"
            found = sorted(p.name for p in policies.iterdir()) if policies.is_dir() else ["main"]
            mains = (stage.get("league") or {}).get("mains") or found
            if len(mains) == 1:  # a stage of several learners makes no single agent to exploit
                out.append((key, f"ckpt:{_handed_on(stage, mains[0])}"))
        elif isinstance(stage.get("checkpoints"), dict) and len(stage["checkpoints"]) == 1:
            out.append((key, f"ckpt:{next(iter(stage['checkpoints'].values()))}"))
    return out


def compute(run_dir: Path, results: dict[str, Any], env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Ratings and exploitability (see the module docstring)."""
    from evoarena.bench.exploit import REFERENCES, exploit
    from evoarena.bench.tournament import rate, run_tournament

    _, stage = league_stage(results) or (None, {})
    entrants = members(stage)
    specs = [m["spec"] if m["generation"] is None else f"{m['name']}={m['spec']}" for m in entrants]
    res = run_tournament(env_id, specs, episodes=EPISODES, seed=0, env_kwargs=env_kwargs)
    ratings = {r["agent"]: r for r in rate(res)}
    for m, name in zip(entrants, res.names):  # entrants keep their order
        m.update({k: ratings[name][k] for k in ("bt", "bt_low", "bt_high", "elo", "median_score")})
    agents = stage_agents(results)
    if env_id in REFERENCES:
        agents.append(("reference", REFERENCES[env_id]))
    rows = []
    for key, spec in agents:
        r = exploit(spec, env_id, env_kwargs=env_kwargs, **EXPLOIT)
        rows.append({"stage": key, "spec": spec, "agent_score": r.agent_score, "agent_ci": r.agent_ci,
                     "exploiter_score": r.exploiter_score, "exploiter_ci": r.exploiter_ci})
    return {"members": entrants, "exploit": rows, "exploit_settings": EXPLOIT, "episodes": EPISODES}


def plot_ratings(data: dict[str, Any], path: Path) -> Path:
    """Bradley-Terry strength (95% interval) of each frozen member against the generation it was frozen at,
    one line per lineage; anchors as dotted horizontal lines."""
    from evoarena.bench.figures import pyplot, save

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    lineages = sorted({m["lineage"] for m in data["members"] if m["generation"] is not None})
    for lineage in lineages:
        ms = sorted((m for m in data["members"] if m["lineage"] == lineage and m["generation"] is not None),
                    key=lambda m: m["generation"])
        xs, ys = [m["generation"] for m in ms], [m["bt"] for m in ms]
        err = [[m["bt"] - m["bt_low"] for m in ms], [m["bt_high"] - m["bt"] for m in ms]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=lineage)
    left = ax.get_xlim()[0]
    for m in data["members"]:
        if m["generation"] is None:
            ax.axhline(m["bt"], linestyle=":", linewidth=0.8, color="grey")
            ax.annotate(m["name"].removeprefix("scripted:"), (left, m["bt"]), fontsize=6, color="grey")
    ax.set_xlabel("generation (update frozen at)")
    ax.set_ylabel("Bradley-Terry strength (95% CI)")
    ax.set_title("league members' ratings over generations")
    ax.legend(fontsize=7)
    return save(fig, path)


def league_section(run_dir: Path, results: dict[str, Any], env_id: str, env_kwargs: dict[str, Any],
                   plots: Path) -> list[str]:
    """The report's lines (empty when no league ran)."""
    if league_stage(results) is None:
        return []
    cache = run_dir / CACHE
    if cache.is_file():
        data = json.loads(cache.read_text())
    else:
        data = compute(run_dir, results, env_id, env_kwargs)
        cache.parent.mkdir(exist_ok=True)
        atomic_write_text(cache, json.dumps(data, indent=1))
    img = plot_ratings(data, plots / "league_ratings.png")
    out = ["## League", "", f"A round-robin of the league's members ({data['episodes']} games per pair and seat "
           "order): Bradley-Terry strength with its 95% bootstrap interval, Elo, and the median score per game.",
           "", f"![league ratings]({img.parent.name}/{img.name})", "",
           "| member | generation | Bradley-Terry [95% CI] | Elo | median score |", "| --- | --- | --- | --- | --- |"]
    for m in sorted(data["members"], key=lambda m: -m["bt"]):
        gen = "anchor" if m["generation"] is None else str(m["generation"])
        out.append(f"| {m['name']} | {gen} | {m['bt']:.2f} [{m['bt_low']:.2f}, {m['bt_high']:.2f}] | "
                   f"{m['elo']:.0f} | {m['median_score']:.3f} |")
    s = data["exploit_settings"]
    out += ["", f"Exploitability: a fresh exploiter ({s['budget']} PPO updates, {s['restarts']} restart(s), "
                "`evoarena exploit`) trained against each agent, then both scored per game on "
                f"{s['episodes']} fresh games (95% CI); higher 'under exploitation' is more robust.", "",
            "| stage | agent | agent's score under exploitation | exploiter's score |", "| --- | --- | --- | --- |"]
    for r in data["exploit"]:
        out.append(f"| {r['stage']} | `{r['spec']}` | {r['agent_score']:.2f} +- {r['agent_ci']:.2f} | "
                   f"{r['exploiter_score']:.2f} +- {r['exploiter_ci']:.2f} |")
    return out + [""]
