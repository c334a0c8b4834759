"""Small pure statistics: means with confidence intervals (more arrive with tournaments and sweeps)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as sps


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t confidence interval (0 for fewer than 2 values)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, 0.0
    sem = float(x.std(ddof=1)) / math.sqrt(x.size)
    return mean, float(sps.t.ppf(0.5 + level / 2, df=x.size - 1)) * sem


def summarize(result: Any) -> dict[str, Any]:
    """JSON-ready summary of a :class:`~evoarena.agents.match.MatchResult`: mean return +- 95% CI
    per seat and the mean of every metric."""
    seats = {}
    for a in result.agents:
        mean, half = mean_ci(result.returns[a])
        seats[a] = {"agent": result.seat_names[a], "mean_return": mean, "ci95": half}
    return {"env": result.env_id, "episodes": len(result.metrics), "seats": seats, "metrics": result.mean_metrics()}
