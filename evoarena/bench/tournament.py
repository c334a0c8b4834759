"""Round-robin tournaments: payoff matrices, Elo and Bradley-Terry ratings, and the Axelrod ranking.

In a two-player world every ordered pairing of the entrants is played, self-play included, so each
pair meets in both seat orders. In a world of ``N > 2`` players, ``groups`` groups of ``N`` entrants
are drawn (uniformly, with repetition) and each plays as one match. Every match plays the same
episodes, seeds ``seed .. seed + episodes - 1`` (common random numbers: two pairings differ only in who
plays), through :func:`evoarena.agents.match.play`.

* payoff of ``a`` against ``b``: ``a``'s mean return per game over the games in which ``b`` sat at
  another seat (in two-player worlds: over both seat orders); self-play is ``a`` against ``a``.
* ratings: every game between two different entrants is an outcome (the higher return wins, equal
  returns draw; in N-player games every pair of seats is compared). Elo is averaged over random game
  orders; Bradley-Terry is fitted by maximum likelihood with stratified-bootstrap 95% intervals.
* Axelrod ranking (as the ``axelrod`` library ranks): for each repetition (episode index), an
  entrant's mean return per turn over its games against the others (no self-play), then the median
  over repetitions; rank 1 = highest median. A turn is a round where the world has ``rounds``
  (``dilemma_v0``), else a whole game.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evoarena.agents.match import mean_ci, play
from evoarena.bench import ratings as rt
from evoarena.config import RatingsConfig, TournamentConfig

PAYOFF_COLUMNS = ["agent", "opponent", "mean_return", "ci95", "games"]
RATING_COLUMNS = ["rank", "agent", "bt", "bt_low", "bt_high", "elo", "elo_sd", "elo_rank", "wins", "draws",
                  "losses", "median_score", "axelrod_rank", "spec"]


# --------------------------------------------------------------------------- results


@dataclass
class Match:
    """One match: the entrant index of every seat (in the world's agent order) and the returns
    ``(episodes, seats)``."""

    seats: tuple[int, ...]
    returns: np.ndarray


@dataclass
class TournamentResult:
    """Every match of a tournament, and what the payoffs and ratings are computed from."""

    env_id: str
    env_kwargs: dict[str, Any]
    names: list[str]
    specs: list[str]
    episodes: int
    seed: int
    turns: int
    turn_unit: str
    matches: list[Match] = field(default_factory=list)

    def per_game(self) -> dict[tuple[int, int], list[np.ndarray]]:
        """``(a, b) -> [per-game returns of a in each match where b sat at another seat]``."""
        out: dict[tuple[int, int], list[np.ndarray]] = {}
        for m in self.matches:
            for a in set(m.seats):
                for b in set(m.seats):
                    seats = [s for s, who in enumerate(m.seats) if who == a
                             and any(t != s and m.seats[t] == b for t in range(len(m.seats)))]
                    if seats:
                        out.setdefault((a, b), []).append(m.returns[:, seats].mean(axis=1))
        return out

    def payoffs(self) -> list[dict[str, Any]]:
        """Rows ``agent, opponent, mean_return, ci95, games`` for every pair that met."""
        rows = []
        games = self.per_game()
        for a in range(len(self.names)):
            for b in range(len(self.names)):
                if (a, b) not in games:
                    continue
                vals = np.concatenate(games[(a, b)])
                mean, half = mean_ci(vals)
                rows.append({"agent": self.names[a], "opponent": self.names[b], "mean_return": mean,
                             "ci95": half, "games": int(vals.size)})
        return rows

    def payoff_matrix(self) -> np.ndarray:
        """``M[a, b]``: mean return per game of ``a`` against ``b`` (NaN where they never met)."""
        k = len(self.names)
        m = np.full((k, k), np.nan)
        for (a, b), parts in self.per_game().items():
            m[a, b] = float(np.concatenate(parts).mean())
        return m

    def outcomes(self) -> tuple[np.ndarray, np.ndarray]:
        """Pairwise outcomes of games between different entrants: ``pairs (G, 2)`` and ``scores (G,)``
        (score of ``pairs[:, 0]``)."""
        pairs, scores = [], []
        for m in self.matches:
            for s in range(len(m.seats)):
                for t in range(s + 1, len(m.seats)):
                    if m.seats[s] == m.seats[t]:
                        continue
                    sc = rt.outcome_score(m.returns[:, s], m.returns[:, t])
                    pairs.append(np.tile([m.seats[s], m.seats[t]], (len(sc), 1)))
                    scores.append(sc)
        if not pairs:
            return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
        return np.concatenate(pairs).astype(np.int64), np.concatenate(scores)

    def normalised_scores(self) -> np.ndarray:
        """``(entrants, episodes)``: per repetition, mean return per turn against the others (Axelrod's
        normalised score; NaN for an entrant that met nobody else)."""
        k = len(self.names)
        total = np.zeros((k, self.episodes))
        count = np.zeros(k)
        for m in self.matches:
            for s, a in enumerate(m.seats):
                if all(b == a for b in m.seats):
                    continue
                total[a] += m.returns[:, s]
                count[a] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / count[:, None] / self.turns


# --------------------------------------------------------------------------- running


def parse_entrant(text: str) -> tuple[str, str]:
    """``"tft=scripted:tit_for_tat"`` -> ``("tft", "scripted:tit_for_tat")``. A bare spec names itself,
    ``scripted:NAME`` as ``NAME``."""
    name, sep, spec = text.partition("=")
    if sep and name.strip() and ":" not in name:
        return name.strip(), spec.strip()
    spec = text.strip()
    kind, _, arg = spec.partition(":")
    return (arg if kind == "scripted" and arg else spec), spec


def expand_agents(env_id: str, agents: Sequence[str]) -> list[str]:
    """``scripted:*`` stands for every scripted strategy of the world (in registry order)."""
    from evoarena.agents import list_strategies

    out: list[str] = []
    for a in agents:
        out += [f"scripted:{s}" for s in list_strategies(env_id)] if a.strip() == "scripted:*" else [a]
    return out


def entrant_names(agents: Sequence[str]) -> list[tuple[str, str]]:
    """``(name, spec)`` of every entrant; a short ``scripted:`` name that two entrants would share falls
    back to the full spec. A name given twice is an error."""
    parsed = [parse_entrant(a) for a in agents]
    short = [n for n, _ in parsed]
    out = [(s if short.count(n) > 1 and n != s and "=" not in a else n, s)
           for (n, s), a in zip(parsed, agents)]
    names = [n for n, _ in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"tournament: agent(s) {dup} given more than once; each entrant needs its own name "
                         f"(NAME=SPEC)")
    return out


def default_groups(entrants: int, players: int) -> int:
    """Groups drawn in an N-player world: about 4 meetings per ordered pair of entrants."""
    return max(entrants, math.ceil(4 * entrants * entrants / (players * (players - 1))))


def schedule(entrants: int, players: int, groups: int | None = None, seed: int = 0) -> list[tuple[int, ...]]:
    """Who sits where in each match: every ordered pair (self-play included) for two players, else
    ``groups`` groups drawn uniformly with repetition."""
    if players == 2:
        return [(a, b) for a in range(entrants) for b in range(entrants)]
    rng = np.random.default_rng(seed)
    n = groups or default_groups(entrants, players)
    return [tuple(int(x) for x in rng.integers(0, entrants, size=players)) for _ in range(n)]


def _rounds(env_id: str, env_kwargs: dict[str, Any]) -> int | None:
    """The world's ``rounds`` (a game's turns, e.g. ``dilemma_v0``), or None for a world without rounds."""
    from evoarena.envs import make

    world = make(env_id, **env_kwargs)
    try:
        return getattr(world, "rounds", None)
    finally:
        world.close()


def run_tournament(env_id: str, agents: Sequence[str], episodes: int = 20, seed: int = 0,
                   env_kwargs: dict[str, Any] | None = None, groups: int | None = None,
                   progress: bool = False) -> TournamentResult:
    """Play every match of the tournament of ``agents`` (specs, each optionally ``NAME=SPEC``; ``scripted:*``
    for every scripted strategy) in ``env_id``."""
    from evoarena.agents import make_agent
    from evoarena.envs import describe

    env_kwargs = dict(env_kwargs or {})
    entrants = entrant_names(expand_agents(env_id, agents))
    names = [n for n, _ in entrants]
    if len(entrants) < 2:
        raise ValueError(f"tournament: needs at least 2 agents, got {names}")
    players = len(describe(env_id, env_kwargs).agents)
    turns = _rounds(env_id, env_kwargs)
    objs = []
    for name, spec in entrants:
        try:
            objs.append(make_agent(spec, env_id, seed=seed))
        except (ValueError, FileNotFoundError, KeyError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise ValueError(f"tournament agent {name!r}: {msg}") from None
    result = TournamentResult(env_id, env_kwargs, names, [s for _, s in entrants], episodes, seed,
                              int(turns) if turns else 1, "round" if turns else "game")
    plan = schedule(len(entrants), players, groups, seed)
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task(f"tournament ({len(plan)} matches)", total=len(plan))
    try:
        for seats in plan:
            res = play(env_id, [objs[i] for i in seats], episodes=episodes, seed=seed, env_kwargs=env_kwargs)
            result.matches.append(Match(seats, np.stack([res.returns[a] for a in res.agents], axis=1)))
            if bar is not None:
                bar.advance(task)
    finally:
        if bar is not None:
            bar.stop()
    return result


# --------------------------------------------------------------------------- ratings


def rate(result: TournamentResult, cfg: RatingsConfig | None = None) -> list[dict[str, Any]]:
    """One row per entrant (best first): Bradley-Terry strength with its interval, Elo, both ranks,
    wins/draws/losses, and the Axelrod median normalised score and rank."""
    cfg = cfg or RatingsConfig()
    k = len(result.names)
    pairs, scores = result.outcomes()
    if len(scores):
        bt, lo, hi = rt.bradley_terry_intervals(pairs, scores, k, reps=cfg.bootstrap, level=cfg.level,
                                                alpha=cfg.bt_alpha, seed=cfg.seed)
        elo, elo_sd = rt.elo_ratings(pairs, scores, k, k=cfg.elo_k, initial=cfg.elo_initial,
                                     orders=cfg.elo_orders, seed=cfg.seed)
    else:
        bt = lo = hi = np.zeros(k)
        elo, elo_sd = np.full(k, cfg.elo_initial), np.zeros(k)
    wins, draws, losses = np.zeros(k, int), np.zeros(k, int), np.zeros(k, int)
    for (i, j), s in zip(pairs, scores):
        for who, sc in ((i, s), (j, 1.0 - s)):
            if sc == 1.0:
                wins[who] += 1
            elif sc == 0.5:
                draws[who] += 1
            else:
                losses[who] += 1
    norm = result.normalised_scores()
    met = np.isfinite(norm).any(axis=1)  # entrants that met someone else
    med = np.full(k, np.nan)
    med[met] = np.nanmedian(norm[met], axis=1)
    bt_rank, elo_rank, ax_rank = rt.ranks(bt), rt.ranks(elo), rt.ranks(np.nan_to_num(med, nan=-np.inf))
    rows = [{"rank": int(bt_rank[i]), "agent": result.names[i], "bt": float(bt[i]), "bt_low": float(lo[i]),
             "bt_high": float(hi[i]), "elo": float(elo[i]), "elo_sd": float(elo_sd[i]), "elo_rank": int(elo_rank[i]),
             "wins": int(wins[i]), "draws": int(draws[i]), "losses": int(losses[i]), "median_score": float(med[i]),
             "axelrod_rank": int(ax_rank[i]), "spec": result.specs[i]} for i in range(k)]
    return sorted(rows, key=lambda r: (r["rank"], r["axelrod_rank"], r["agent"]))


# --------------------------------------------------------------------------- output


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: (f"{row[c]:.10g}" if isinstance(row[c], float) else row[c]) for c in columns})


def _kwargs_text(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in kwargs.items()) or "defaults"


def markdown(result: TournamentResult, rows: list[dict[str, Any]], command: str | None = None,
             level: float = 0.95, heatmap: str | None = "payoffs.png") -> str:
    """``tournament.md``: how it was played, the ratings table and the payoff matrix."""
    k, players = len(result.names), len(result.matches[0].seats) if result.matches else 2
    how = ("every ordered pairing, self-play included (both seat orders)" if players == 2
           else f"{len(result.matches)} groups of {players} drawn with repetition")
    lines = [f"# Tournament: {result.env_id} ({_kwargs_text(result.env_kwargs)})", ""]
    if command:
        lines += [f"`{command}`", ""]
    lines += [f"{k} agents; {how}; {result.episodes} episode(s) per match on seeds {result.seed}.."
              f"{result.seed + result.episodes - 1}, the same in every match (common random numbers).", "",
              "## Ratings", "",
              f"Bradley-Terry strength (log-odds of winning a game; mean 0) with {level:.0%} bootstrap "
              "interval, Elo averaged over random game orders (+- its spread over orders), wins-draws-losses "
              "(higher return wins), and, as the Axelrod library ranks, the median over repetitions of the "
              f"mean return per {result.turn_unit} against the others.", "",
              f"| rank | agent | Bradley-Terry [{level:.0%} CI] | Elo | W-D-L | median score per {result.turn_unit} "
              "| Axelrod rank |", "| ---: | --- | --- | ---: | --- | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['rank']} | {r['agent']} | {r['bt']:+.2f} [{r['bt_low']:+.2f}, {r['bt_high']:+.2f}] | "
                     f"{r['elo']:.0f} +- {r['elo_sd']:.0f} | {r['wins']}-{r['draws']}-{r['losses']} | "
                     f"{r['median_score']:.3f} | {r['axelrod_rank']} |")
    order = [result.names.index(r["agent"]) for r in sorted(rows, key=lambda r: r["axelrod_rank"])]
    m = result.payoff_matrix()
    lines += ["", "## Payoffs", "", "Mean return per game of the row agent against the column agent"
              + (" (averaged over both seat orders)" if players == 2 else "") + "; rows and columns in Axelrod "
              "rank order. `payoffs.csv` has the 95% intervals and game counts.", "",
              "| agent \\ opponent | " + " | ".join(result.names[j] for j in order) + " |",
              "| --- |" + " ---: |" * k]
    for i in order:
        lines.append(f"| {result.names[i]} | " + " | ".join("" if math.isnan(m[i, j]) else f"{m[i, j]:.2f}"
                                                            for j in order) + " |")
    if heatmap:
        lines += ["", f"![payoff matrix]({heatmap})"]
    return "\n".join(lines) + "\n"


def write_tournament(result: TournamentResult, rows: list[dict[str, Any]], out_dir: str | Path,
                     command: str | None = None, settings: RatingsConfig | None = None) -> dict[str, Path]:
    """Write ``payoffs.csv``, ``ratings.csv``, ``payoffs.png``, ``tournament.md`` and ``tournament.json``."""
    from evoarena.bench.figures import heatmap

    settings = settings or RatingsConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payoffs = result.payoffs()
    paths = {"payoffs": out / "payoffs.csv", "ratings": out / "ratings.csv", "heatmap": out / "payoffs.png",
             "markdown": out / "tournament.md", "json": out / "tournament.json"}
    _write_csv(paths["payoffs"], PAYOFF_COLUMNS, payoffs)
    _write_csv(paths["ratings"], RATING_COLUMNS, rows)
    order = [result.names.index(r["agent"]) for r in sorted(rows, key=lambda r: r["axelrod_rank"])]
    m = result.payoff_matrix()[np.ix_(order, order)]
    heatmap(m, [result.names[i] for i in order], [result.names[i] for i in order], paths["heatmap"],
            f"{result.env_id}: mean return of row agent vs column agent", colorbar="mean return per game", fmt="{:.4g}")
    paths["markdown"].write_text(markdown(result, rows, command, settings.level))
    data = {"env": result.env_id, "env_kwargs": result.env_kwargs, "episodes": result.episodes, "seed": result.seed,
            "turns": result.turns, "turn_unit": result.turn_unit, "command": command,
            "agents": [{"name": n, "spec": s} for n, s in zip(result.names, result.specs)],
            "ratings_settings": settings.model_dump(), "ratings": rows, "payoffs": payoffs,
            "normalised_scores": {n: v.tolist() for n, v in zip(result.names, result.normalised_scores())},
            "matches": [{"seats": [result.names[i] for i in m.seats], "returns": m.returns.tolist()}
                        for m in result.matches]}
    paths["json"].write_text(json.dumps(data, indent=1, default=float))
    return paths


def run_config(cfg: TournamentConfig, out_dir: str | Path | None = None, command: str | None = None,
               progress: bool = False) -> tuple[TournamentResult, list[dict[str, Any]], dict[str, Path]]:
    """Play, rate and write the tournament of ``cfg`` (into ``out_dir``, else ``cfg.out``, else
    ``runs/tournaments/NAME``)."""
    from evoarena.training.infra.checks import check_env

    check_env(cfg.env, f"tournament {cfg.name}")
    result = run_tournament(cfg.env.id, cfg.agents, cfg.episodes, cfg.seed, cfg.env.kwargs, cfg.groups, progress)
    rows = rate(result, cfg.ratings)
    out = Path(out_dir or cfg.out or Path("runs") / "tournaments" / cfg.name)
    return result, rows, write_tournament(result, rows, out, command, cfg.ratings)
