"""How long Eq. 1 clustering takes on a large synthetic repository (the paper's method at Hub scale).

    python benchmarks/cluster_scale.py [--models 10000] [--benchmarks 50] [--missing 0.1]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from hf_twophase import ClusteringConfig, cluster_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--benchmarks", type=int, default=50)
    parser.add_argument("--families", type=int, default=200)
    parser.add_argument("--missing", type=float, default=0.1, help="fraction of cells never run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    family = rng.integers(0, args.families, size=args.models)
    centres = rng.uniform(0.3, 0.95, size=(args.families, args.benchmarks))
    scores = np.clip(centres[family] + rng.normal(0, 0.01, size=(args.models, args.benchmarks)), 0, 1)
    scores[rng.uniform(size=scores.shape) < args.missing] = np.nan
    models = [f"model-{i:05d}" for i in range(args.models)]

    start = time.perf_counter()
    result = cluster_models(models, scores, ClusteringConfig())
    seconds = time.perf_counter() - start
    sizes = [len(c) for c in result.clusters]
    print(f"{args.models} models x {args.benchmarks} benchmarks ({args.missing:.0%} missing) on "
          f"{os.cpu_count()} CPU cores: {seconds:.1f} s; {len(sizes)} clusters, "
          f"{len(result.non_singleton)} with 2+ members, silhouette {result.silhouette:.3f}")


if __name__ == "__main__":
    main()
