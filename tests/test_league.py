"""The league's pure parts on hand numbers: PFSP weights, normalised results, who is drawn and recorded."""

import numpy as np
import pytest

from evoarena.config import LeagueConfig, TrainConfig
from evoarena.training.rl.league import League, exploiter_names, normalised_scores, pfsp_weights
from evoarena.training.rl.rollout import EpisodeRecord


def test_pfsp_prefers_the_opponents_the_learner_does_worst_against():
    # (1 - s)^1 = 1, 0.5, 0 -> 2/3, 1/3, 0; with a floor of 0.3: 0.7 * that + 0.1
    np.testing.assert_allclose(pfsp_weights([0.0, 0.5, 1.0], power=1.0, floor=0.3), [0.5667, 0.3333, 0.1],
                               atol=1e-4)
    # squared: 1, 0.25, 0 -> 0.8, 0.2, 0 (no floor)
    np.testing.assert_allclose(pfsp_weights([0.0, 0.5, 1.0], power=2.0, floor=0.0), [0.8, 0.2, 0.0])
    np.testing.assert_allclose(pfsp_weights([None, 1.0], power=1.0, floor=0.0), [1.0, 0.0])  # unplayed: hardest
    np.testing.assert_allclose(pfsp_weights([1.0, 1.0], power=1.0, floor=0.0), [0.5, 0.5])  # all weights 0
    np.testing.assert_allclose(pfsp_weights([0.2, 0.9], power=0.0, floor=0.0), [0.5, 0.5])  # power 0: uniform
    assert pfsp_weights([]).size == 0


def test_results_are_normalised_over_the_opponents_played():
    assert normalised_scores([20.0, 60.0, 40.0, None]) == [0.0, 1.0, 0.5, None]
    assert normalised_scores([3.0, 3.0]) == [0.5, 0.5]
    assert normalised_scores([None]) == [None]


def record(main_return: float, opponent: str) -> EpisodeRecord:
    return EpisodeRecord({"player_0": main_return, "player_1": 0.0},
                         {"player_0": "learner:main", "player_1": opponent}, {}, 20)


def test_the_league_draws_exploiters_and_the_hardest_anchor_most():
    lc = LeagueConfig(exploiters=2, exploiter_share=0.5, pfsp_floor=0.0, window=3)
    league = League(lc, ["main"], ["scripted:always_defect", "scripted:tit_for_tat"], {}, seed=0)
    assert list(league.exploiters) == ["exploiter_main_0", "exploiter_main_1"] == list(exploiter_names(["main"], 2))
    league.record([record(60.0, "scripted:tit_for_tat"), record(19.0, "scripted:always_defect"),
                   record(21.0, "scripted:always_defect"), record(0.0, "learner:exploiter_main_0")])
    assert league.results == {"scripted:tit_for_tat": [60.0], "scripted:always_defect": [19.0, 21.0]}
    league.record([record(v, "scripted:tit_for_tat") for v in (1.0, 2.0, 3.0)])
    assert league.results["scripted:tit_for_tat"] == [1.0, 2.0, 3.0]  # the window keeps the last 3
    labels, p = league.weights()
    assert labels == ["scripted:always_defect", "scripted:tit_for_tat"] and p.tolist() == [0.0, 1.0]
    rng = np.random.default_rng(0)
    drawn = [league.draw("main", rng, lambda spec: spec) for _ in range(400)]
    kinds = {("learner", "exploiter_main_0"), ("learner", "exploiter_main_1"), ("agent", "scripted:tit_for_tat")}
    assert set(drawn) == kinds
    assert 150 < sum(k == "learner" for k, _ in drawn) < 250  # exploiter_share 0.5


def test_a_league_needs_a_pool_seat_and_the_evoarena_backend():
    base = {"env": {"id": "dilemma_v0"}, "policies": {"main": {}}, "league": {}}
    with pytest.raises(ValueError, match="no seat has a pool"):
        TrainConfig.model_validate({**base, "seats": {"player_0": {"policy": "main"},
                                                      "player_1": {"agent": "random"}}})
    pool = {"player_0": {"policy": "main"}, "player_1": {"pool": [{"agent": "random"}]}}
    with pytest.raises(ValueError, match="backend"):
        TrainConfig.model_validate({**base, "seats": pool, "ppo": {"backend": "sb3"}})
    assert TrainConfig.model_validate({**base, "seats": pool}).league.exploiters == 1


def test_a_weight_average_is_asked_for_before_it_is_handed_on(tmp_path):
    from evoarena.training.rl.train_stage import STAGE

    seats = {"player_0": {"policy": "main"}, "player_1": {"agent": "random"}}
    base = {"env": {"id": "dilemma_v0"}, "policies": {"main": {}}, "seats": seats}
    with pytest.raises(ValueError, match="needs average_from"):
        TrainConfig.model_validate({**base, "hand_on": "averaged"})
    assert TrainConfig.model_validate({**base, "hand_on": "averaged", "average_from": 0.5}).average_from == 0.5
    assert STAGE.checkpoint({**base, "hand_on": "averaged"}, tmp_path, "player") == tmp_path / "averaged/policies/main"
    assert STAGE.checkpoint({**base, "hand_on": "final"}, tmp_path, "player") == tmp_path / "checkpoint/policies/main"
