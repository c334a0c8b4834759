"""Candidate and reference against negotiation strategies outside the project, on the same games (both seats).

Run:  EVOARENA_PLUGINS=docs/results/negotiation/extra_strategies.py \
          .venv/bin/python docs/results/negotiation/robustness.py CANDIDATE_SPEC REFERENCE_SPEC
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from negotiation_vs_teacher import scores_vs  # noqa: E402

from evoarena.bench.stats import mean_ci  # noqa: E402

OPPONENTS = ["scripted:x_linear", "scripted:x_mirror", "scripted:x_noisy", "scripted:x_hardline"]
EPISODES, SEED = 250, 3_000_000


def main() -> None:
    cand, ref = sys.argv[1], sys.argv[2]
    allc, allr = [], []
    for opp in OPPONENTS:
        c, ca = scores_vs(cand, opp, EPISODES, SEED)
        r, ra = scores_vs(ref, opp, EPISODES, SEED)
        m, h = mean_ci(c - r)
        print(f"{opp:22s} cand {c.mean():.3f} (agree {ca.mean():.2f})  ref {r.mean():.3f} (agree {ra.mean():.2f})  "
              f"diff {m:+.3f} +- {h:.3f}")
        allc.append(c)
        allr.append(r)
    c, r = np.concatenate(allc), np.concatenate(allr)
    m, h = mean_ci(c - r)
    print(f"all: cand {c.mean():.3f} ref {r.mean():.3f} diff {m:+.3f} +- {h:.3f}")


if __name__ == "__main__":
    main()
