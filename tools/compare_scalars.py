"""Compare the TensorBoard scalars of two run folders, tag by tag and step by step.

    python tools/compare_scalars.py RUN_A RUN_B [--include-perf]

Prints the tag groups and every tag whose (step, value) series differ; exit status 1 when any does. ``perf/``
tags (timings) are skipped unless ``--include-perf``. Used to show that a refactor changes no result.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evoarena.bench.scalars import read_scalars  # noqa: E402


def series(run_dir: str, include_perf: bool) -> dict[str, list[tuple[int, float]]]:
    return {tag: sorted(points) for tag, points in read_scalars(Path(run_dir) / "tb").items()
            if include_perf or not tag.startswith("perf/")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a")
    ap.add_argument("run_b")
    ap.add_argument("--include-perf", action="store_true")
    args = ap.parse_args()
    a, b = series(args.run_a, args.include_perf), series(args.run_b, args.include_perf)
    for name, s in ((args.run_a, a), (args.run_b, b)):
        print(f"{name}: {len(s)} tags, {sum(map(len, s.values()))} points")
    print("tag groups:", dict(Counter(t.split("/")[0] for t in a)))
    differing = [t for t in sorted(set(a) | set(b)) if a.get(t) != b.get(t)]
    print(f"differing tags: {len(differing)}")
    for tag in differing[:20]:
        print(f"  {tag}: {(a.get(tag) or [])[:3]} vs {(b.get(tag) or [])[:3]}")
    return 1 if differing else 0


if __name__ == "__main__":
    raise SystemExit(main())
