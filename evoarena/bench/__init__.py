"""Matches, tournaments, ratings, statistics, sweeps, reports and plots."""

from evoarena.agents.match import MatchResult, play
from evoarena.bench.stats import mean_ci, summarize

__all__ = ["MatchResult", "mean_ci", "play", "summarize"]
