"""Tournaments on real worlds: exact payoffs of deterministic strategies (hand-checked), every output file,
the CLI with its errors, N-player groups, and the Axelrod config."""

import csv
import json

import numpy as np
import pytest

from evoarena.bench.tournament import rate, run_tournament, schedule, write_tournament
from evoarena.cli import main

PRISONERS_200 = {"rounds": 200, "game": "prisoners"}


def read_csv(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def classic(tmp_path_factory):
    """tit_for_tat, always_defect, always_cooperate, grim_trigger: 200 rounds of prisoners, 3 episodes."""
    out = tmp_path_factory.mktemp("tournament")
    res = run_tournament("dilemma_v0", ["scripted:tit_for_tat", "scripted:always_defect", "scripted:always_cooperate",
                                        "grim=scripted:grim_trigger"], episodes=3, seed=0, env_kwargs=PRISONERS_200)
    rows = rate(res)
    return res, rows, write_tournament(res, rows, out, command="test")


def test_payoffs_csv_exact_for_deterministic_strategies(classic):
    res, _, paths = classic
    rows = read_csv(paths["payoffs"])
    assert list(rows[0]) == ["agent", "opponent", "mean_return", "ci95", "games"]
    got = {(r["agent"], r["opponent"]): (float(r["mean_return"]), float(r["ci95"]), int(r["games"])) for r in rows}
    # tit_for_tat cooperates once (S=0) then both defect 199 rounds (P=1): 199; always_defect 5 + 199 = 204
    assert got["tit_for_tat", "always_defect"] == (199.0, 0.0, 6)  # 3 episodes x both seat orders
    assert got["always_defect", "tit_for_tat"] == (204.0, 0.0, 6)
    assert got["tit_for_tat", "tit_for_tat"] == (600.0, 0.0, 3)  # R=3 for 200 rounds; self-play once
    assert got["always_defect", "always_cooperate"] == (1000.0, 0.0, 6)
    assert got["always_cooperate", "always_defect"] == (0.0, 0.0, 6)
    assert got["grim", "always_defect"] == (199.0, 0.0, 6)
    assert got["always_defect", "always_defect"] == (200.0, 0.0, 3)
    assert len(rows) == 16
    assert res.payoff_matrix()[0, 1] == 199.0


def test_ratings_and_axelrod_ranking(classic):
    res, rows, paths = classic
    by = {r["agent"]: r for r in read_csv(paths["ratings"])}
    # always_defect never loses a game: first by Bradley-Terry and Elo; with two suckers among three others
    # it also has the best score per round here (the full field of configs/bench/axelrod.yaml puts it last)
    assert by["always_defect"]["rank"] == "1" and by["always_defect"]["elo_rank"] == "1"
    assert (int(by["always_defect"]["wins"]), int(by["always_defect"]["losses"])) == (18, 0)  # 3 victims x 6
    assert by["always_defect"]["axelrod_rank"] == "1" and by["always_cooperate"]["axelrod_rank"] == "4"
    # per round against the others: tit_for_tat (199 + 600 + 600) / 3 / 200; always_defect (204 + 1000 + 204)
    assert float(by["tit_for_tat"]["median_score"]) == pytest.approx(1399 / 600)
    assert float(by["always_defect"]["median_score"]) == pytest.approx(1408 / 600)
    assert float(by["always_cooperate"]["median_score"]) == pytest.approx(1200 / 600)
    assert by["tit_for_tat"]["axelrod_rank"] == by["grim"]["axelrod_rank"] == "2"  # 1399 each, below alld's 1408
    bt = float(by["always_defect"]["bt"])
    assert float(by["always_defect"]["bt_low"]) <= bt <= float(by["always_defect"]["bt_high"])
    assert np.isclose(sum(float(r["bt"]) for r in by.values()), 0.0)


def test_every_output_is_written(classic):
    _, _, paths = classic
    assert paths["heatmap"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["markdown"].read_text()
    assert "## Ratings" in md and "## Payoffs" in md and "| tit_for_tat |" in md and "199.00" in md
    data = json.loads(paths["json"].read_text())
    assert data["env_kwargs"] == PRISONERS_200 and len(data["matches"]) == 16
    assert {"payoffs", "ratings", "normalised_scores", "agents"} <= set(data)


def test_common_random_numbers_across_pairings():
    res = run_tournament("dilemma_v0", ["random", "scripted:always_cooperate", "scripted:always_defect"],
                         episodes=5, seed=3, env_kwargs={"rounds": 10})
    # random in seat 0 sees the same coin flips against every opponent: against always_cooperate it scores
    # 5 per defection and 3 per cooperation, against always_defect 1 and 0, so its defections match
    vs_c = next(m for m in res.matches if m.seats == (0, 1)).returns[:, 0]
    vs_d = next(m for m in res.matches if m.seats == (0, 2)).returns[:, 0]
    assert np.array_equal((vs_c - 30) / 2, vs_d)  # d defections: 3*10 + 2d vs d


def test_n_player_groups():
    assert schedule(3, 2) == [(a, b) for a in range(3) for b in range(3)]
    res = run_tournament("dilemma_v0", ["scripted:tit_for_tat", "scripted:always_defect", "scripted:pavlov"],
                         episodes=2, seed=0, env_kwargs={"num_agents": 3, "rounds": 5}, groups=6)
    assert len(res.matches) == 6 and all(len(m.seats) == 3 for m in res.matches)
    rows = rate(res)
    assert {r["agent"] for r in rows} == {"tit_for_tat", "always_defect", "pavlov"}
    assert all(r["games"] > 0 for r in res.payoffs())


def test_cli_tournament_and_errors(tmp_path, capsys):
    out = tmp_path / "t"
    assert main(["tournament", "dilemma_v0", "--agents", "scripted:tit_for_tat", "scripted:always_defect",
                 "--episodes", "2", "--kw", "rounds=200", "--out", str(out)]) == 0
    assert "always_defect" in capsys.readouterr().out
    rows = {(r["agent"], r["opponent"]): r for r in read_csv(out / "payoffs.csv")}
    assert rows["tit_for_tat", "always_defect"]["mean_return"] == "199"
    assert "evoarena tournament dilemma_v0 --agents" in (out / "tournament.md").read_text()
    for args, words in [(["dilemma_v0", "--agents", "scripted:tft", "random"], ["'tft'", "tit_for_tat"]),
                        (["dilemma_v0", "--agents", "random", "random"], ["more than once", "NAME=SPEC"]),
                        (["dilemma_v0"], ["--agents"]),
                        ([str(tmp_path / "none.yaml")], ["none.yaml", "not found"])]:
        assert main(["tournament", *args, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        for w in words:
            assert w in err


def test_axelrod_config_runs(tmp_path, capsys):
    """configs/bench/axelrod.yaml: every strategy, 200 rounds (2 repetitions here for speed)."""
    out = tmp_path / "axelrod"
    assert main(["tournament", "configs/bench/axelrod.yaml", "--episodes", "2", "--set", "ratings.bootstrap=100",
                 "--out", str(out)]) == 0
    rows = read_csv(out / "ratings.csv")
    from evoarena.agents import list_strategies

    assert {r["agent"] for r in rows} == set(list_strategies("dilemma_v0"))
    ax = sorted(rows, key=lambda r: int(r["axelrod_rank"]))
    names = [r["agent"] for r in ax]
    # always_defect is last but for tester, whose probes lock reciprocators into mutual defection
    assert names.index("tit_for_tat") < names.index("always_defect") and names[-2:] == ["always_defect", "tester"]
    assert min(rows, key=lambda r: int(r["rank"]))["agent"] == "always_defect"
