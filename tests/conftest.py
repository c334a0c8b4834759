"""Fixtures shared by the tests: the tiny configs they train.

Every test that builds or trains a transformer policy starts from one tiny encoder (a BERT of 32 hidden units,
one layer, a WordPiece vocabulary of at most 400 pieces), so that a PPO update takes well under a second on one
CPU thread. A test that needs something else says what, as keyword overrides of the encoder's config keys:
``tiny_encoder(num_layers=3)`` (layers to freeze and cache), ``tiny_encoder(hidden_size=64,
intermediate_size=128)`` (width to learn a masked LM in a few dozen steps).

Both fixtures are factories: each call returns a new dict, so a test may change what it gets.

Markers (registered in pyproject.toml): ``slow`` (not in ``make test``; ``make test-slow`` runs them) and
``e2e`` (the test runs the ``evoarena`` command, an example script or a training step in new processes, end to
end; ``pytest -m "not slow and not e2e"`` runs the unit tests alone: a ``-m`` given replaces the default one).

``make test`` spreads the test files over one pytest-xdist worker per core; each worker gives torch one thread,
so that two workers on two cores do not thrash.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # one of several workers: one torch thread each
    import torch

    torch.set_num_threads(1)

#: the tiny encoder's config (keys of evoarena.config.EncoderConfig); fp32 (``autocast: off``), since ``auto``'s
#: bf16 verdict depends on the CPU and its load, and tests compare outputs to 1e-5 (a test of autocast says so)
TINY_ENCODER: dict[str, Any] = {"preset": "tiny", "hidden_size": 32, "num_layers": 1, "num_heads": 2,
                                "intermediate_size": 64, "vocab_size": 400, "autocast": "off"}


@pytest.fixture(scope="session")
def tiny_encoder() -> Callable[..., dict[str, Any]]:
    """``tiny_encoder(**over)``: a new dict of the tiny encoder's config with ``over`` set."""

    def make(**over: Any) -> dict[str, Any]:
        return {**TINY_ENCODER, **over}

    return make


@pytest.fixture(scope="session")
def tiny_policy(tiny_encoder) -> Callable[..., dict[str, Any]]:
    """``tiny_policy(encoder=None, **over)``: a new dict of a transformer policy's config on the tiny encoder;
    ``encoder`` overrides keys of the encoder, ``over`` keys of the policy (``head``, ``standardize``, ...)."""

    def make(encoder: dict[str, Any] | None = None, **over: Any) -> dict[str, Any]:
        return {"kind": "transformer", "encoder": tiny_encoder(**(encoder or {})), **over}

    return make
