"""Compare selection policies on recorded learning curves, from Python.

    python examples/replay_policies.py RECORDS.csv

With no argument it generates a synthetic matrix first (numbers made up: use your own records, or
the published ones, to learn anything about real models).
"""

from __future__ import annotations

import os
import sys

# examples/select.py is named like the standard library's `select` module, and Python puts a script's folder first on
# the import path: take this folder off, or `import subprocess` (deep inside every library) would import select.py.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from hf_twophase import PerformanceMatrix  # noqa: E402
from hf_twophase.method.replay import replay, summarise  # noqa: E402
from hf_twophase.records.synthetic import synthetic_records  # noqa: E402


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
