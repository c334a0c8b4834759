"""The package's import graph: no cycle between modules (imports inside functions included) and the layering
of DESIGN (envs <- policies <- agents <- training <- bench <- cli)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "import_graph.py"


def _tool():
    spec = importlib.util.spec_from_file_location("import_graph", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = module
    spec.loader.exec_module(module)
    return module


def test_no_import_cycle_and_no_layering_violation():
    tool = _tool()
    edges = tool.graph()
    assert "evoarena.training.pipeline" in edges and "evoarena.training.stages" in edges["evoarena.training.pipeline"]
    assert tool.cycles(edges) == []
    assert tool.violations(edges) == []


def test_the_checker_sees_a_cycle_and_a_violation():
    tool = _tool()
    edges = {"evoarena.envs.base": {"evoarena.agents.scripted"}, "evoarena.agents.scripted": {"evoarena.envs.base"},
             "evoarena.policies.io": {"evoarena.training.infra.runs"}, "evoarena.training.infra.runs": set()}
    assert tool.cycles(edges) == [["evoarena.agents.scripted", "evoarena.envs.base"]]
    assert tool.violations(edges) == ["evoarena.envs.base -> evoarena.agents.scripted",
                                      "evoarena.policies.io -> evoarena.training.infra.runs"]
