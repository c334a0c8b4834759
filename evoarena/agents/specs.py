"""Agent spec strings: ``random``, ``scripted:NAME``, ``ckpt:PATH``, ``human``; ``make_agent`` builds the agent
one names, for a world, as an object with ``name``, ``reset(seed)``, ``act(obs)`` and ``act_batch(obs_list)``."""

from __future__ import annotations

from typing import Any, Protocol

SPEC_FORMS = "random, scripted:NAME, ckpt:PATH, human"


class Agent(Protocol):
    name: str

    def reset(self, seed: int | None = None) -> None: ...

    def act(self, obs: dict[str, Any]) -> int: ...

    def act_batch(self, obs_list: list[dict[str, Any]]) -> list[int]: ...


class AgentSpecError(ValueError):
    """An agent spec string that cannot be used."""


def parse_spec(spec: str) -> tuple[str, str]:
    """``"scripted:greedy"`` -> ``("scripted", "greedy")``; ``"random"`` -> ``("random", "")``."""
    kind, _, arg = spec.strip().partition(":")
    if kind in ("random", "human") and not arg:
        return kind, ""
    if kind in ("scripted", "ckpt") and arg:
        return kind, arg
    raise AgentSpecError(f"bad agent spec {spec!r}; expected one of: {SPEC_FORMS}")


def spec_tag(spec: str) -> str:
    """An agent spec as one TensorBoard tag segment, spelt the same by every stage:
    ``scripted:tit_for_tat`` -> ``scripted_tit_for_tat`` (no ``:``, space or ``/``)."""
    return spec.strip().replace(":", "_").replace(" ", "_").replace("/", "_")


def make_agent(spec: str, env_id: str, seed: int | None = None) -> Agent:
    """The agent that ``spec`` names, for world ``env_id``."""
    from evoarena.envs import env_class

    env_class(env_id)  # unknown env ids fail here, with the known ones listed
    kind, arg = parse_spec(spec)
    if kind == "random":
        from evoarena.agents.random_agent import RandomAgent

        return RandomAgent(seed)
    if kind == "human":
        from evoarena.agents.human import HumanAgent

        return HumanAgent()
    if kind == "scripted":
        from evoarena.agents.scripted import make_strategy

        return make_strategy(env_id, arg, seed)
    from evoarena.agents.learned import load_policy_agent

    return load_policy_agent(arg, env_id, greedy=True, seed=seed)
