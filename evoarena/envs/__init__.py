"""PettingZoo worlds with text observations and the one registry of them."""

from evoarena.envs import dilemma, negotiation, signaling
from evoarena.envs.base import EnvArgumentError, TextParallelEnv
from evoarena.envs.registry import UnknownEnvError, env_class, list_envs, make, make_aec, register
from evoarena.envs.single_agent import SingleAgentEnv, single_agent

register("negotiation_v0", negotiation.NegotiationEnv)
register("signaling_v0", signaling.SignalingEnv)
register("dilemma_v0", dilemma.DilemmaEnv)

__all__ = ["EnvArgumentError", "SingleAgentEnv", "TextParallelEnv", "UnknownEnvError", "env_class", "list_envs",
           "make", "make_aec", "register", "single_agent"]
