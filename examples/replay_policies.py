"""Compare selection policies on recorded learning curves, from Python.

    python examples/replay_policies.py RECORDS.csv

With no argument it generates a synthetic matrix first (numbers made up: use your own records, or
the published ones, to learn anything about real models).
"""

from __future__ import annotations

import sys

from hf_twophase import PerformanceMatrix
from hf_twophase.method.replay import replay, summarise
from hf_twophase.records.synthetic import synthetic_records


def main() -> None:
    if len(sys.argv) > 1:
        matrix = PerformanceMatrix.read(sys.argv[1])
    else:
        matrix = PerformanceMatrix(synthetic_records(30, 10, steps=8), source="synthetic")
    print(matrix)
    for policy, variant in [("brute-force", None), ("successive-halving", None), ("fine-selection", "paper"),
                            ("fine-selection", "improved")]:
        runs = replay(matrix, policy, stage=1, variant=variant or "improved")
        s = summarise(runs)
        name = policy + (f" ({variant})" if variant else "")
        print(f"{name:30} median speedup {s['median_speedup']:6.2f}x   mean regret {100 * s['mean_regret']:.2f} pt   "
              f"zero regret {s['zero_regret']}/{s['targets']}")


if __name__ == "__main__":
    main()
