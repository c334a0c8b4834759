"""The evoarena command: tables, JSON, --help everywhere, one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

from evoarena.cli import build_parser, main


def run_cli(*args, stdin=""):
    return subprocess.run([sys.executable, "-m", "evoarena.cli", *args], input=stdin, capture_output=True,
                          text=True, timeout=120)


def test_help_on_every_subcommand(capsys):
    parser = build_parser()
    names = parser.get_default("command_names")
    assert {"envs", "evaluate", "play", "run", "bench"} <= set(names)
    for name in names:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert "usage: evoarena " + name in capsys.readouterr().out


def test_envs_lists_worlds_and_strategies(capsys):
    assert main(["envs", "-v"]) == 0
    out = capsys.readouterr().out
    for word in ("negotiation_v0", "signaling_v0", "dilemma_v0", "tit_for_tat", "boulware", "literal"):
        assert word in out


def test_evaluate_table_and_json(tmp_path, capsys):
    out_file = tmp_path / "res.json"
    code = main(["evaluate", "dilemma_v0", "--agents", "scripted:tit_for_tat", "scripted:always_defect",
                 "--episodes", "10", "--json", str(out_file)])
    assert code == 0
    out = capsys.readouterr().out
    assert "19.000" in out and "24.000" in out and "cooperation_rate" in out
    data = json.loads(out_file.read_text())
    assert data["seats"]["player_1"]["mean_return"] == 24.0


@pytest.mark.parametrize(
    "args, words",
    [(["evaluate", "nope_v0", "--agents", "random"], ["nope_v0", "dilemma_v0"]),
     (["evaluate", "dilemma_v0", "--agents", "scripted:tft", "random"], ["'tft'", "tit_for_tat"]),
     (["evaluate", "dilemma_v0", "--agents", "random", "random", "--kw", "num_agents=9"], ["num_agents", "9"]),
     (["evaluate", "signaling_v0", "--agents", "random", "random", "--kw", "num_candidates=1"],
      ["num_candidates", "1"]),
     (["evaluate", "dilemma_v0", "--agents", "ckpt:/no/such/folder", "random"], ["/no/such/folder"]),
     (["exploit", "scripted:tit_for_tat", "--world", "dilemma_v0", "--kw", "prisoners=1"],
      ["dilemma_v0", "'prisoners'", "rounds", "continuation"])],
)
def test_errors_are_one_line_exit_2(args, words, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    for w in words:
        assert w in err


@pytest.mark.e2e
def test_error_in_a_real_process_has_no_traceback():
    res = run_cli("evaluate", "dilemma_v0", "--agents", "scripted:tft", "random")
    assert res.returncode == 2 and res.stderr.startswith("error: ") and "Traceback" not in res.stderr


@pytest.mark.e2e
def test_human_play_in_terminal():
    # The human is player_0 of the dilemma and always types 1 (defect) against always_cooperate.
    res = run_cli("play", "dilemma_v0", "--vs", "scripted:always_cooperate", stdin="x\n" + "1\n" * 20)
    assert res.returncode == 0, res.stderr
    assert "legal actions" in res.stdout and "is not a legal action" in res.stdout
    assert "100.0" in res.stdout
    assert "mean return" in res.stdout and "human" in res.stdout  # the evaluate tables close the game


def test_play_ends_with_the_evaluate_tables(monkeypatch, capsys):
    # The human (player_1 here) types 1 (defect) in every round of two games against always_cooperate.
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("1\n" * 40))
    code = main(["play", "dilemma_v0", "--vs", "scripted:always_cooperate", "--seat", "player_1",
                 "--episodes", "2", "--seed", "3"])
    assert code == 0
    out = capsys.readouterr().out
    tables = out[out.index("2 episode(s) played"):]
    for word in ("seat", "agent", "mean return", "95% CI", "metrics (mean over episodes)", "cooperation_rate"):
        assert word in tables, tables
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in tables.splitlines() if line.count("│") == 5}
    assert rows["player_1"] == ["human", "100.000", "+- 0.000"], rows
    assert rows["player_0"][1:] == ["0.000", "+- 0.000"], rows
    assert main(["play", "dilemma_v0", "--episodes", "0"]) == 2


def test_play_board_says_who_you_are_the_score_and_the_others_moves_in_words():
    # player_1 against tit_for_tat over 3 rounds: defect, cooperate, defect
    res = run_cli("play", "dilemma_v0", "--vs", "scripted:tit_for_tat", "--seat", "player_1", "--kw", "rounds=3",
                  stdin="1\n0\n1\n")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "you are player_1 (seat 2 of 2) against player_0 = scripted:tit_for_tat" in out
    assert "score: player_0 (scripted:tit_for_tat) 0, you 0" in out
    # round 1: tit_for_tat cooperates, you defect; round 2: it defects back
    assert "last step: player_0 (scripted:tit_for_tat): cooperate; you: defect; payoffs player_0 " \
           "(scripted:tit_for_tat) +0, you +5" in out
    assert "score: player_0 (scripted:tit_for_tat) 5, you 5" in out
    assert "final score: player_0 (scripted:tit_for_tat) 5, you 10" in out
    assert "{" not in out and "}" not in out  # no raw dicts
    tail = out.rstrip().splitlines()[-1]
    assert tail.startswith("└") and tail.endswith("┘")  # the metrics table closes the output, nothing after it
    quit_ = run_cli("play", "dilemma_v0", "--vs", "random", stdin="q\n")
    assert quit_.returncode == 1 and "stopped: you quit; 0 game(s) finished" in quit_.stdout
    assert "Traceback" not in quit_.stderr
