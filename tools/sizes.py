"""Files over 450 lines and functions over 80 lines in ``evoarena/`` (the limits of issue 14).

    python tools/sizes.py [--files N] [--functions N]
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "evoarena"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=450)
    ap.add_argument("--functions", type=int, default=80)
    args = ap.parse_args()
    long_files, long_functions = [], []
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text()
        lines = len(text.splitlines())
        if lines > args.files:
            long_files.append(f"{lines:5d}  {path.relative_to(ROOT.parent)}")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > args.functions:
                    long_functions.append(f"{n:5d}  {path.relative_to(ROOT.parent)}:{node.lineno} {node.name}")
    print(f"files over {args.files} lines: {len(long_files)}", *long_files, sep="\n")
    print(f"functions over {args.functions} lines: {len(long_functions)}", *long_functions, sep="\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
