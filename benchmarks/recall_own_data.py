"""Target-aware recall when the user's data is one of the matrix's benchmarks (the sanity check, in-sample).

The embedded image repository with scikit-learn's digits as the user's data: two of its models were fine-tuned on
that very benchmark. Recall with K = 4 under the plain robust prior and under target-aware benchmark weights at two
proxy budgets and both shortlist rules; prints which models each recalls.

    python benchmarks/recall_own_data.py [--proxy leep|logme|knn|hscore|gbc|ncti]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hf_twophase.matrix_build.benchmarks import get_benchmark
from hf_twophase.matrix_build.defaults import ensure_default
from hf_twophase.method.recall import RecallConfig
from hf_twophase.proxy import ProxyConfig
from hf_twophase.proxy_names import PROXY_METHODS
from hf_twophase.selector import RepoSelector, SelectorConfig

SETTINGS = {
    "robust prior (the default)": RecallConfig(),
    "target-aware, T = 0.1, 10% budget": RecallConfig(target_temperature=0.1),
    "target-aware, T = 0.1, 50% budget, shortlist by prior": RecallConfig(target_temperature=0.1,
                                                                          proxy_fraction=0.5),
    "target-aware, T = 0.1, 50% budget, shortlist of representatives": RecallConfig(
        target_temperature=0.1, proxy_fraction=0.5, shortlist="representatives"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", default="leep", choices=PROXY_METHODS, help="the proxy scored on the target")
    args = parser.parse_args()
    repo = ensure_default("image-classification", progress=False)
    train, _, _ = get_benchmark("digits").load(seed=0)
    print("| recall | proxy-scored | benchmark weights | recalled |\n|---|---|---|---|")
    for label, recall in SETTINGS.items():
        selector = RepoSelector.from_models(repo.models, repo.matrix, task="image-classification",
                                            config=SelectorConfig(k=4, recall=recall, proxy=args.proxy,
                                                                  proxy_config=ProxyConfig(progress=False)))
        outcome = selector.recall(train)
        names = ", ".join(Path(m).name.removeprefix("packaged:") for m in outcome.recalled)
        weights = ", ".join(f"{b} {w:.2f}" for b, w in outcome.benchmark_weights.items()) or "equal"
        print(f"| {label} | {len(outcome.scored)} of {len(repo.models)} | {weights} | {names} |")


if __name__ == "__main__":
    main()
