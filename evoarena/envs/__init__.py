"""PettingZoo worlds with text observations and the one registry of them.

Worlds of your own register with :func:`register`; to make the ``evoarena`` command see them, name their
modules (``pkg.mod``) or files (``path/to/world.py``) in ``EVOARENA_PLUGINS`` (comma-separated), which is
imported once, right after the built-in worlds register.

Worlds know no players: this package imports nothing else of the project. The Gymnasium view of one seat
played against agents is :func:`evoarena.agents.single_agent`.
"""

import importlib
import importlib.util
import os
import sys

from evoarena.envs import dilemma, negotiation, signaling
from evoarena.envs.base import EnvArgumentError, TextParallelEnv, forced_actions, only_legal
from evoarena.envs.registry import UnknownEnvError, WorldInfo, describe, env_class, list_envs, make, make_aec, register

register("negotiation_v0", negotiation.NegotiationEnv)
register("signaling_v0", signaling.SignalingEnv)
register("dilemma_v0", dilemma.DilemmaEnv)


def load_plugins(spec: str | None = None) -> list[str]:
    """Import the modules or ``.py`` files named in ``spec`` (default: ``$EVOARENA_PLUGINS``)."""
    spec = os.environ.get("EVOARENA_PLUGINS", "") if spec is None else spec
    loaded = []
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        if entry.endswith(".py"):
            name = f"evoarena_plugin_{os.path.splitext(os.path.basename(entry))[0]}"
            if name not in sys.modules:
                mod_spec = importlib.util.spec_from_file_location(name, entry)
                if mod_spec is None or mod_spec.loader is None or not os.path.isfile(entry):
                    raise ImportError(f"EVOARENA_PLUGINS: no such file {entry!r}")
                module = importlib.util.module_from_spec(mod_spec)
                sys.modules[name] = module
                mod_spec.loader.exec_module(module)
        else:
            importlib.import_module(entry)
        loaded.append(entry)
    return loaded


__all__ = ["EnvArgumentError", "TextParallelEnv", "UnknownEnvError", "WorldInfo", "describe", "env_class",
           "forced_actions", "list_envs", "load_plugins", "make", "make_aec", "only_legal", "register"]

load_plugins()
