"""PPO maths on small hand-checked numbers."""

import math

import numpy as np
import pytest
import torch

from evoarena.training.rl.ppo_math import (
    clipped_policy_loss,
    discounted_returns,
    explained_variance,
    gae,
    masked_entropy,
    masked_kl,
    normalize,
    value_loss,
)


def test_gae_terminated_by_hand():
    adv, ret = gae(np.array([1.0, 0.0, 2.0]), np.array([0.5, 0.4, 0.3]), bootstrap=0.0, gamma=0.9, lam=0.8)
    # t=2: 2 - .3 = 1.7; t=1: (.9*.3 - .4) + .72*1.7 = 1.094; t=0: (1 + .9*.4 - .5) + .72*1.094 = 1.64768
    assert adv == pytest.approx([1.64768, 1.094, 1.7])
    assert ret == pytest.approx(adv + [0.5, 0.4, 0.3])


def test_gae_truncated_bootstraps_from_last_value():
    adv, _ = gae(np.array([1.0, 0.0, 2.0]), np.array([0.5, 0.4, 0.3]), bootstrap=1.0, gamma=0.9, lam=0.8)
    assert adv == pytest.approx([2.11424, 1.742, 2.6])


def test_gae_lambda_one_is_return_minus_value():
    r, v = np.array([0.0, 3.0, 1.0]), np.array([1.0, 2.0, 0.5])
    adv, _ = gae(r, v, bootstrap=0.0, gamma=0.5, lam=1.0)
    assert adv == pytest.approx(discounted_returns(r, 0.0, 0.5) - v)
    assert discounted_returns(r, 0.0, 0.5) == pytest.approx([1.75, 3.5, 1.0])


def test_turn_based_gap_counts_decisions_not_steps():
    # An agent decides at env steps 0 and 4; reward 5 arrives at step 2 while it waits: it is credited
    # to the decision at step 0, discounted once (per decision), not four times.
    adv, _ = gae(np.array([5.0, 0.0]), np.array([0.0, 0.0]), bootstrap=0.0, gamma=0.9, lam=1.0)
    assert adv[0] == pytest.approx(5.0)


def test_clipped_policy_loss_by_hand():
    new, old = torch.tensor([math.log(1.5)]), torch.tensor([0.0])
    loss, clipfrac, kl = clipped_policy_loss(new, old, torch.tensor([1.0]), clip=0.2)
    assert loss.item() == pytest.approx(-1.2) and clipfrac.item() == 1.0
    assert kl.item() == pytest.approx(0.5 - math.log(1.5))
    loss, _, _ = clipped_policy_loss(new, old, torch.tensor([-1.0]), clip=0.2)
    assert loss.item() == pytest.approx(1.5)
    loss, clipfrac, _ = clipped_policy_loss(torch.tensor([math.log(1.1)]), old, torch.tensor([2.0]), clip=0.2)
    assert loss.item() == pytest.approx(-2.2) and clipfrac.item() == 0.0


def test_value_loss_clipped_by_hand():
    new, old, ret = torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([3.0])
    assert value_loss(new, old, ret, None).item() == pytest.approx(0.5)
    # clipped prediction 1.2: (1.2-3)^2 = 3.24 > (2-3)^2 = 1 -> 0.5 * 3.24
    assert value_loss(new, old, ret, 0.2).item() == pytest.approx(1.62)


def test_masked_kl_and_entropy_by_hand():
    mask = torch.tensor([[True, True, False]])
    p = torch.tensor([[0.0, 0.0, 100.0]])
    q = torch.tensor([[math.log(3.0), 0.0, -5.0]])
    kl = masked_kl(p, q, mask).item()
    assert kl == pytest.approx(0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25))
    assert masked_kl(p, p, mask).item() == pytest.approx(0.0, abs=1e-7)
    assert masked_entropy(p, mask).item() == pytest.approx(math.log(2))
    one = torch.tensor([[False, True, False]])
    assert masked_entropy(p, one).item() == pytest.approx(0.0)
    assert torch.isfinite(masked_kl(p, q, one)).all()


def test_normalize_and_explained_variance():
    x = normalize(torch.tensor([1.0, 2.0, 3.0]))
    assert x.mean().item() == pytest.approx(0.0, abs=1e-7) and x.std().item() == pytest.approx(1.0, rel=1e-6)
    assert normalize(torch.tensor([4.0])).item() == 0.0
    assert explained_variance(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 1.0
    assert math.isnan(explained_variance(np.array([1.0, 2.0]), np.array([3.0, 3.0])))
