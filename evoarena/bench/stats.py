"""Small pure statistics: means with confidence intervals (more arrive with tournaments and sweeps)."""

from __future__ import annotations

from typing import Any

from evoarena.agents.match import mean_ci

__all__ = ["mean_ci", "summarize"]


def summarize(result: Any) -> dict[str, Any]:
    """JSON-ready summary of a :class:`~evoarena.agents.match.MatchResult`: mean return +- 95% CI
    per seat and the mean of every metric."""
    seats = {}
    for a in result.agents:
        mean, half = mean_ci(result.returns[a])
        seats[a] = {"agent": result.seat_names[a], "mean_return": mean, "ci95": half}
    return {"env": result.env_id, "episodes": len(result.metrics), "seats": seats, "metrics": result.mean_metrics()}
