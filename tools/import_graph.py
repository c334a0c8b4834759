"""The import graph of the ``evoarena`` package, imports inside functions included.

    python tools/import_graph.py            # prints the graph, its cycles and the layering violations

Exit status 1 when there is a cycle between modules or an import that breaks the layering of
``../shared/DESIGN.md``: ``envs`` imports none of ``agents``/``policies``/``training``; ``policies`` none of
``agents``/``training``; ``agents`` nothing of ``training``; nothing in the library imports ``cli``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "evoarena"
FORBIDDEN = {
    "envs": ("agents", "policies", "training", "bench", "cli"),
    "policies": ("agents", "training", "bench", "cli"),
    "agents": ("training", "bench", "cli"),
    "training": ("bench", "cli"),
    "bench": ("cli",),
    "": ("cli",),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Every ``evoarena`` module that ``path`` imports anywhere (``from pkg import mod`` names the module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules else base)
    return {_owner(m, modules) for m in found if m.split(".")[0] == "evoarena"} - {name, None}


def _owner(dotted: str, modules: set[str]) -> str | None:
    while dotted and dotted not in modules:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    modules = set(files)
    return {name: imports_of(path, modules) - {"evoarena"} for name, path in sorted(files.items())}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in FORBIDDEN) else ""


def violations(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in edges.items():
        for dst in sorted(targets):
            target = dst.split(".")[1] if "." in dst else ""
            if target in FORBIDDEN.get(layer(src), ()) and layer(dst) != layer(src):
                bad.append(f"{src} -> {dst}")
    return bad


def main() -> int:
    edges = graph()
    for src, targets in edges.items():
        short = ", ".join(t.removeprefix("evoarena.") for t in sorted(targets)) or "-"
        print(f"{src.removeprefix('evoarena.') or 'evoarena'}: {short}")
    found, bad = cycles(edges), violations(edges)
    print(f"\n{len(edges)} modules, {sum(map(len, edges.values()))} imports")
    print(f"cycles: {len(found)}" + "".join(f"\n  {' <-> '.join(c)}" for c in found))
    print(f"layering violations: {len(bad)}" + "".join(f"\n  {b}" for b in bad))
    return 1 if found or bad else 0


if __name__ == "__main__":
    sys.exit(main())
