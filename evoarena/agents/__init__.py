"""Who acts in a seat: scripted strategies, learned policies, humans; agent spec strings.

An agent spec is ``random``, ``scripted:NAME``, ``ckpt:PATH`` or ``human``.
``make_agent(spec, env_id)`` (:mod:`~evoarena.agents.specs`) returns an object with ``name``, ``reset(seed)``,
``act(obs) -> int`` and ``act_batch(list_of_obs) -> list[int]``. Observations may carry ``action_names``
(added by matches and rollouts) for agents that read them (humans, scoring policy heads).

Modules: ``specs`` (spec strings, ``make_agent``), ``scripted`` (the strategy registry and base class),
``strategies/`` (the built-in strategies per world, registered when this package is imported), ``random_agent``,
``learned`` (policies as agents), ``human``, ``match`` (``play``: agents in seats for N episodes) and
``single_agent`` (one seat of a world as a Gymnasium env, the other seats played by agents).
"""

from evoarena.agents.scripted import ScriptedAgent, UnknownStrategyError, describe_strategy, list_strategies
from evoarena.agents.specs import SPEC_FORMS, Agent, AgentSpecError, make_agent, parse_spec, spec_tag

# isort: split
# Last: these import evoarena.envs, whose first import loads the EVOARENA_PLUGINS worlds, which may use the names
# above (a plugin's strategies, its agents).
from evoarena.agents import strategies  # noqa: F401  (registers the built-in scripted strategies)
from evoarena.agents.single_agent import SingleAgentEnv, single_agent

__all__ = ["SPEC_FORMS", "Agent", "AgentSpecError", "ScriptedAgent", "SingleAgentEnv", "UnknownStrategyError",
           "describe_strategy", "list_strategies", "make_agent", "parse_spec", "single_agent", "spec_tag"]
