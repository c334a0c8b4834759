"""What the command line's modules share: the console they print through and ``KEY=VALUE`` world arguments."""

from __future__ import annotations

from typing import Any

from rich.console import Console

console = Console()


def env_kwargs(pairs: list[str] | None) -> dict[str, Any]:
    """``["num_agents=3", "game=stag_hunt"]`` -> dict, values parsed as YAML."""
    from evoarena.config import parse_overrides

    out: dict[str, Any] = {}
    for keys, value in parse_overrides(pairs):
        out[".".join(keys)] = value
    return out
