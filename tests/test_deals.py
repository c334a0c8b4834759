"""Lewis et al. (2017)'s negotiation metrics in the evaluate stage and the report: score over all games and over
agreed games, % agreed, % of deals Pareto-optimal, per agent and opponent."""

from __future__ import annotations

import numpy as np
import pytest

from evoarena.bench.report import DEALS, write_report
from evoarena.config import EvaluateConfig
from evoarena.training.evaluate import deal_metrics
from evoarena.training.protocol import StageContext
from evoarena.training.stages import REGISTRY, run_stage


def test_deal_metrics_counts_scores_of_agreed_games_and_pareto_among_deals():
    d = deal_metrics(np.array([5.0, 0.0, 7.0, 0.0]), {"agreement": np.array([1, 0, 1, 0.0]),
                                                      "pareto_optimal": np.array([1, 0, 0, 0.0])})
    assert d == {"score": 3.0, "score_agreed": 6.0, "agreed": 0.5, "pareto_of_agreed": 0.5, "games": 4,
                 "agreed_games": 2}
    none = deal_metrics(np.zeros(3), {"agreement": np.zeros(3)})
    assert none["score_agreed"] is None and none["pareto_of_agreed"] is None and none["agreed"] == 0.0


@pytest.fixture(scope="module")
def negotiation_eval(tmp_path_factory):
    run = tmp_path_factory.mktemp("deals")
    cfg = EvaluateConfig.model_validate({"env": {"id": "negotiation_v0"}, "episodes": 6, "transcripts": False,
                                         "opponents": ["scripted:greedy", "scripted:conceder"],
                                         "unseen": ["scripted:boulware"]})
    results = run_stage(REGISTRY["evaluate"], cfg, StageContext.standalone(run, "evaluate", progress=False))
    return run, results


def test_evaluate_records_deals_per_cell_and_group(negotiation_eval):
    _, ev = negotiation_eval
    row = ev["rows"]["scripted:fair"]
    for cell in row["cells"].values():
        deals = cell["deals"]
        assert deals["games"] == cell["games"] == 12  # both seat orders x 6
        assert deals["score"] == pytest.approx(cell["mean"])
        assert deals["agreed"] == pytest.approx(cell["metrics"]["agreement"])
        if deals["agreed_games"]:
            assert deals["pareto_of_agreed"] == pytest.approx(cell["metrics"]["pareto_optimal"] / deals["agreed"])
            assert deals["score_agreed"] >= deals["score"]  # a game without a deal scores 0 in this world
    pool = row["pool"]["deals"]
    assert pool["games"] == 24 and pool["score"] == pytest.approx(row["pool"]["mean"])
    agreed = [row["cells"][c]["deals"]["agreed_games"] for c in ("scripted:greedy", "scripted:conceder")]
    assert pool["agreed_games"] == sum(agreed)
    assert row["unseen"]["deals"]["games"] == 12


def test_report_has_the_deals_table_for_negotiation(negotiation_eval):
    run, ev = negotiation_eval
    report = write_report(run).read_text()
    assert DEALS in report
    section = report.split(DEALS)[1]
    assert "| agent | pool: score (all) | pool: score (agreed) | pool: agreed | pool: Pareto-optimal deals |" in section
    fair = ev["rows"]["scripted:fair"]["pool"]["deals"]
    line = next(ln for ln in section.splitlines() if ln.startswith("| scripted:fair |"))
    assert f"{fair['score']:.2f}" in line and f"{fair['agreed']:.1%}" in line
    assert "| scripted:fair | scripted:boulware |" in section  # per opponent, the unseen one included
