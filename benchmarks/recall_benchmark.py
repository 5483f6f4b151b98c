"""Coarse recall (phase 1) on real records, leave-one-out, against scoring every model with the proxy.

For every target that has proxy scores: is the best fine-tuned model among the top K, how far is the
best recalled model from the best model, and what fraction of the repository was proxy-scored.

    python benchmarks/recall_benchmark.py --records R.csv --proxy P.csv [--k 10] [--out docs/recall.md]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from hf_twophase import ClusteringConfig, PerformanceMatrix, Phase1, read_proxy_scores
from hf_twophase.method.phase1 import proxy_lookup
from hf_twophase.method.recall import normaliser_for


def evaluate(ranked: list[str], truth: dict[str, float], k: int) -> tuple[bool, float]:
    best = max(truth.values())
    top = [m for m in ranked if m in truth][:k]
    recalled_best = max(truth[m] for m in top)
    return any(truth[m] == best for m in top), best - recalled_best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", required=True)
    parser.add_argument("--proxy", required=True)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threshold", type=float, default=0.09)
    parser.add_argument("--out", default=None, help="write the Markdown table here too")
    args = parser.parse_args()

    matrix = PerformanceMatrix.read(args.records)
    proxy_table = read_proxy_scores(args.proxy)
    final = matrix.final_scores()
    lines = [
        f"| target | models | two-phase: best in top {args.k} | gap (pt) | scored | "
        f"proxy on all: best in top {args.k} | gap (pt) | scored | mean score only: best in top {args.k} | gap (pt) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    agg: dict[str, list] = {"tp_hit": [], "tp_gap": [], "tp_frac": [], "all_hit": [], "all_gap": [], "acc_hit": [],
                            "acc_gap": []}
    start = time.perf_counter()
    for target in sorted(proxy_table["dataset"].unique()):
        if target not in final.columns:
            continue
        truth = final[target].dropna().to_dict()
        scores, method = proxy_lookup(proxy_table, target)
        phase1 = Phase1.from_matrix(matrix, target=target, candidates=list(truth),
                                    config=ClusteringConfig(threshold=args.threshold))
        models = phase1.clustering.models
        truth = {m: truth[m] for m in models}
        needed = phase1.to_score(args.k)
        result = phase1.recall({m: scores[m] for m in needed}, k=args.k, normaliser=normaliser_for("auto", method))
        tp_hit, tp_gap = evaluate(result.recalled, truth, args.k)
        by_proxy = sorted(models, key=lambda m: -scores.get(m, -np.inf))
        all_hit, all_gap = evaluate(by_proxy, truth, args.k)
        acc = dict(zip(models, np.nanmean(phase1.scores, axis=1), strict=True))
        acc_hit, acc_gap = evaluate(sorted(models, key=lambda m: -acc[m]), truth, args.k)
        frac = len(needed) / len(models)
        n_proxy = sum(1 for m in models if m in scores)
        for key, value in (("tp_hit", tp_hit), ("tp_gap", tp_gap), ("tp_frac", frac), ("all_hit", all_hit),
                           ("all_gap", all_gap), ("acc_hit", acc_hit), ("acc_gap", acc_gap)):
            agg[key].append(value)
        lines.append(
            f"| {target} | {len(models)} | {'yes' if tp_hit else 'no'} | {100 * tp_gap:.2f} | {len(needed)} "
            f"({100 * frac:.1f}%) | {'yes' if all_hit else 'no'} | {100 * all_gap:.2f} | {n_proxy} "
            f"({100 * n_proxy / len(models):.0f}%) | {'yes' if acc_hit else 'no'} | {100 * acc_gap:.2f} |"
        )
    n = len(agg["tp_hit"])
    lines.append(
        f"| **all {n}** | | **{sum(agg['tp_hit'])}/{n}** | **{100 * statistics.mean(agg['tp_gap']):.2f}** (mean) | "
        f"**{100 * statistics.mean(agg['tp_frac']):.1f}%** | **{sum(agg['all_hit'])}/{n}** | "
        f"**{100 * statistics.mean(agg['all_gap']):.2f}** | 100% | **{sum(agg['acc_hit'])}/{n}** | "
        f"**{100 * statistics.mean(agg['acc_gap']):.2f}** |"
    )
    table = "\n".join(lines)
    print(table)
    print(f"\n{n} targets in {time.perf_counter() - start:.1f} s")
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(table + "\n")


if __name__ == "__main__":
    main()
