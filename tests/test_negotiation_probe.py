"""``benchmarks/negotiation_probe.py``: its ridge probe gives a linear fact R^2 ~1 and noise R^2 ~0 on held-out
rows, and on a real (untrained) negotiation policy it records one row of features and facts per decision."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "negotiation_probe.py"


@pytest.fixture(scope="module")
def probe_module():
    spec = importlib.util.spec_from_file_location("negotiation_probe", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_probe_finds_a_linear_fact_and_not_noise(probe_module):
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(n, 16)) for n in (400, 100, 200)]  # fit, penalty, held out
    w = rng.normal(size=(16, 1))
    linear = [x @ w + 0.01 * rng.normal(size=(len(x), 1)) for x in xs]
    noise = [rng.normal(size=(len(x), 1)) for x in xs]
    assert probe_module.probe(xs, linear)[0] > 0.99
    assert abs(probe_module.probe(xs, noise)[0]) < 0.1


def test_probe_records_every_decision_of_a_policy(tmp_path, tiny_policy, probe_module):
    from evoarena.config import PolicyConfig
    from evoarena.policies.actor_critic import build_policy
    from evoarena.policies.io import save_checkpoint

    policy = build_policy(PolicyConfig(**tiny_policy()), "negotiation_v0")
    save_checkpoint(tmp_path / "ckpt", policy)
    x, facts = probe_module.record(f"ckpt:{tmp_path / 'ckpt'}", 3, seed=7)
    assert len(x) == len(facts) > 0 and x.shape[1] == policy.encoder.hidden_size
    assert facts.shape[1] == len(probe_module.FEATURE_NAMES)
    made = {name: has.sum() for name, (_, has) in probe_module.targets(facts).items()}
    assert made["turn"] == len(facts) and 0 < made["offer_value"] <= len(facts)
