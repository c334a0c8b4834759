"""The report's league section: who is rated, which agents are exploited, and the section from cached figures."""

import json

from evoarena.bench.league_report import CACHE, league_section, members, stage_agents

TRAIN = {"updates": 20, "checkpoint": "/run/stages/03_train/checkpoint", "best_checkpoint": "/run/stages/03_train/best",
         "hand_on": "final", "league": {"mains": ["main"], "exploiters": ["exploiter_main_0"],
                                        "anchors": ["scripted:tit_for_tat"],
                                        "frozen": [["main", 10], ["exploiter_main_0", 10]]}}
RESULTS = {"02_finetune": {"checkpoints": {"*": "/run/stages/02_finetune/checkpoint"}}, "03_train": TRAIN,
           "04_evaluate": {"rows": {}, "gains": []}, "pipeline": {"name": "x"}}


def test_members_are_the_final_main_the_frozen_and_the_anchors():
    got = [(m["name"], m["spec"], m["generation"], m["lineage"]) for m in members(TRAIN)]
    assert got == [
        ("main (final)", "ckpt:/run/stages/03_train/checkpoint/policies/main", 20, "main"),
        ("main@10", "ckpt:/run/stages/03_train/checkpoint/snapshots/league_main/000010", 10, "main"),
        ("exploiter_main_0@10", "ckpt:/run/stages/03_train/checkpoint/snapshots/league_exploiter_main_0/000010", 10,
         "exploiter"),
        ("scripted:tit_for_tat", "scripted:tit_for_tat", None, "anchor")]
    assert members({**TRAIN, "hand_on": "best"})[0]["spec"] == "ckpt:/run/stages/03_train/best/policies/main"


def test_the_start_anchor_is_each_mains_starting_weights():
    """A pool's ``start`` entry is no agent spec outside training: the round-robin plays the main's start
    snapshot (before, ``evoarena report`` on such a run stopped with "bad agent spec 'start'")."""
    from evoarena.agents.specs import parse_spec

    league = {**TRAIN["league"], "anchors": ["scripted:tit_for_tat", "start"]}
    got = [(m["name"], m["spec"]) for m in members({**TRAIN, "league": league}) if m["lineage"] == "anchor"]
    assert got == [("scripted:tit_for_tat", "scripted:tit_for_tat"),
                   ("start", "ckpt:/run/stages/03_train/checkpoint/snapshots/league_start/000000")]
    for _, spec in got:
        parse_spec(spec)
    two = {**league, "mains": ["a", "b"], "frozen": []}
    assert [(m["name"], m["spec"].rsplit("/", 1)[1]) for m in members({**TRAIN, "league": two})
            if m["name"].startswith("start")] == [("start (a)", "000000"), ("start (b)", "000001")]


def test_every_stage_agent_is_exploited():
    assert stage_agents(RESULTS) == [("02_finetune", "ckpt:/run/stages/02_finetune/checkpoint"),
                                     ("03_train", "ckpt:/run/stages/03_train/checkpoint/policies/main")]


def test_the_section_from_cached_figures(tmp_path):
    assert league_section(tmp_path, {"03_train": {**TRAIN, "league": None}}, "dilemma_v0", {}, tmp_path) == []
    data = {"episodes": 10, "exploit_settings": {"budget": 40, "restarts": 3, "episodes": 50, "seed": 7},
            "members": [{**m, "bt": 0.1 * i, "bt_low": 0.1 * i - 0.05, "bt_high": 0.1 * i + 0.05, "elo": 1500.0,
                         "median_score": 2.5} for i, m in enumerate(members(TRAIN))],
            "exploit": [{"stage": "03_train", "spec": "ckpt:x", "agent_score": 57.0, "agent_ci": 0.0,
                         "exploiter_score": 62.0, "exploiter_ci": 0.0}]}
    (tmp_path / CACHE).parent.mkdir()
    (tmp_path / CACHE).write_text(json.dumps(data))
    plots = tmp_path / "plots"
    plots.mkdir()
    text = "\n".join(league_section(tmp_path, RESULTS, "dilemma_v0", {}, plots))
    assert "## League" in text and "(plots/league_ratings.png)" in text
    assert "| scripted:tit_for_tat | anchor | 0.30 [0.25, 0.35] | 1500 | 2.500 |" in text
    assert "| 03_train | `ckpt:x` | 57.00 +- 0.00 | 62.00 +- 0.00 |" in text
    assert (plots / "league_ratings.png").stat().st_size > 1000
