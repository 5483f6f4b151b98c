"""Coarse recall (phase 1) on real records, cross-validated over datasets.

Each dataset of the records file is a target in turn, with its own column left out of the matrix. The recall setting
(variant, proxy weight, shortlist rule) is chosen on the other folds' targets only, and the figures reported for a
target come from the fold that held it back. Per target: is the best fine-tuned model in the top K, how far is the
best recalled model from it (regret, in points), and what fraction of the repository was proxy-scored.

    python benchmarks/recall_benchmark.py --records R.csv --proxy P.csv [--proxy-method M] [--k 10] [--folds 3]
        [--seed 0] [--out F.md]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import asdict

from report_io import emit
from scipy.stats import spearmanr

from hf_twophase import PerformanceMatrix, Phase1, read_proxy_scores
from hf_twophase.method.crossval import cross_validate, dataset_folds
from hf_twophase.method.phase1 import proxy_lookup
from hf_twophase.method.recall import RecallConfig, normaliser_for

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)
SHORTLISTS = ("prior", "representatives")
TEMPERATURES = (0.05, 0.1, 0.25, 0.5)  # target-aware benchmark weights: from near argmax to near the plain mean


def settings() -> list[RecallConfig]:
    grid = [RecallConfig(variant="robust", proxy_weight=w, shortlist=s) for w in WEIGHTS for s in SHORTLISTS
            if not (w == 0.0 and s == "representatives")]  # no proxy: the shortlist rule does not matter
    aware = [RecallConfig(variant="robust", proxy_weight=w, shortlist=s, target_temperature=t)
             for t in TEMPERATURES for s in SHORTLISTS for w in (0.0, 0.5)]
    return [*grid, *aware, RecallConfig(variant="paper")]


def label(config: RecallConfig) -> str:
    if config.variant == "paper":
        return "paper (Eq. 2-4)"
    aware = "" if config.target_temperature is None else f"target-aware T={config.target_temperature:g}, "
    if config.proxy_weight == 0 and not aware:
        return "robust prior only"
    return f"robust, {aware}weight {config.proxy_weight:g}, shortlist {config.shortlist}"


def make_evaluate(matrix: PerformanceMatrix, proxy_table, k: int, *, keep_target: bool = False,
                  method: str | None = None):
    """``keep_target``: the target's own column stays among the benchmarks (the sanity check: a user whose data is
    one of the benchmarks)."""
    final = matrix.final_scores()

    def evaluate(config: RecallConfig, target: str) -> dict:
        truth = final[target].dropna().to_dict()
        scores, used = proxy_lookup(proxy_table, target, method)
        phase1 = Phase1.from_matrix(matrix, target=None if keep_target else target,
                                    candidates=[m for m in truth if m in scores], recall=config)
        models = phase1.clustering.models
        needed = phase1.to_score(k)
        result = phase1.recall({m: scores[m] for m in needed}, k=k, normaliser=normaliser_for("auto", used))
        best = max(truth[m] for m in models)
        top = result.recalled[:k]
        leaders = sorted(models, key=lambda m: -truth[m])[:k]
        return {"hit": any(truth[m] == best for m in top), "regret": 100 * (best - max(truth[m] for m in top)),
                "scored": len(needed), "models": len(models), "leaders": len(set(leaders) & set(top))}

    return evaluate


def best_model_ranks(matrix: PerformanceMatrix, proxy_table, target: str, method: str | None
                     ) -> tuple[str, float, int, int, int]:
    """Why a target's best model was missed: where the prior alone and the proxy alone put it (1 = first)."""
    truth = matrix.final_scores()[target].dropna().to_dict()
    scores, _ = proxy_lookup(proxy_table, target, method)
    phase1 = Phase1.from_matrix(matrix, target=target, candidates=[m for m in truth if m in scores],
                                recall=RecallConfig(variant="robust", proxy_weight=0.0))
    models = phase1.clustering.models
    by_prior = phase1.recall({}, k=len(models)).recalled
    best = max(models, key=lambda m: truth[m])
    by_proxy = sorted(models, key=lambda m: -scores[m])
    return best, truth[best], by_prior.index(best) + 1, by_proxy.index(best) + 1, len(models)


def training_score(outcomes: list[dict]) -> tuple:
    """More targets with the best model recalled, then lower mean regret, then fewer proxy scores."""
    return (sum(o["hit"] for o in outcomes), -statistics.mean(o["regret"] for o in outcomes),
            -statistics.mean(o["scored"] / o["models"] for o in outcomes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", required=True)
    parser.add_argument("--proxy", required=True)
    parser.add_argument("--proxy-method", default=None, help="which proxy to read when the file holds several")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the Markdown tables here too")
    parser.add_argument("--json", default=None, help="write every outcome as JSON here")
    args = parser.parse_args()

    start = time.perf_counter()
    matrix = PerformanceMatrix.read(args.records)
    proxy_table = read_proxy_scores(args.proxy)
    targets = sorted(set(proxy_table["dataset"]) & set(matrix.datasets))
    folds = dataset_folds(targets, args.folds, args.seed)
    grid = settings()
    evaluate = make_evaluate(matrix, proxy_table, args.k, method=args.proxy_method)
    results = cross_validate(folds, grid, evaluate, training_score)

    lines = [f"Folds (seed {args.seed}): " + "; ".join(f"{i + 1}: {', '.join(f.held_out)}"
                                                       for i, f in enumerate(results)), "",
             "| fold | chosen on the other folds | held-out target | models | best in top "
             f"{args.k} | regret (pt) | proxy-scored |", "|---|---|---|---|---|---|---|"]
    held = []
    for i, fold in enumerate(results):
        for target, o in sorted(fold.outcomes.items()):
            held.append(o)
            lines.append(f"| {i + 1} | {label(fold.chosen)} | {target} | {o['models']} | "
                         f"{'yes' if o['hit'] else 'no'} | {o['regret']:.2f} | {o['scored']} "
                         f"({100 * o['scored'] / o['models']:.1f}%) |")
    n = len(held)
    lines.append(f"| **all** | | **{n} targets** | | **{sum(o['hit'] for o in held)}/{n}** | "
                 f"**{statistics.mean(o['regret'] for o in held):.2f}** (mean) | "
                 f"**{100 * statistics.mean(o['scored'] / o['models'] for o in held):.1f}%** (mean) |")
    lines += ["", "Every setting on every target (in-sample: for reference, not for choosing):", "",
              f"| setting | best in top {args.k} | mean regret (pt) | mean proxy-scored |", "|---|---|---|---|"]
    everything = {}
    for config in grid:
        outcomes = [evaluate(config, t) for t in targets]
        everything[label(config)] = outcomes
        lines.append(f"| {label(config)} | {sum(o['hit'] for o in outcomes)}/{len(outcomes)} | "
                     f"{statistics.mean(o['regret'] for o in outcomes):.2f} | "
                     f"{100 * statistics.mean(o['scored'] / o['models'] for o in outcomes):.1f}% |")
    lines += ["", f"Sanity, in-sample: the target's own column kept among the benchmarks (a user whose data is one of "
              f"them); of the target's {args.k} best models, how many are recalled (mean over targets):", "",
              f"| setting | best in top {args.k} | mean regret (pt) | target's top {args.k} recalled |",
              "|---|---|---|---|"]
    sanity = make_evaluate(matrix, proxy_table, args.k, keep_target=True, method=args.proxy_method)
    for config in grid:
        outcomes = [sanity(config, t) for t in targets]
        lines.append(f"| {label(config)} | {sum(o['hit'] for o in outcomes)}/{len(outcomes)} | "
                     f"{statistics.mean(o['regret'] for o in outcomes):.2f} | "
                     f"{statistics.mean(o['leaders'] for o in outcomes):.1f} |")
    lines += ["", "What target-aware weights can read: Spearman's rho between the proxy on the target and each "
              "benchmark's scores, over every model with both (in-sample):", "",
              "| target | rho with its own column | best other column | its rho |", "|---|---|---|---|"]
    final = matrix.final_scores()
    for target in targets:
        scores, _ = proxy_lookup(proxy_table, target, args.proxy_method)
        rho = {}
        for column in final.columns:
            both = final[column].dropna()
            both = both[both.index.isin(list(scores))]
            rho[column] = spearmanr(both.to_numpy(), [scores[m] for m in both.index]).statistic
        other = max((c for c in rho if c != target), key=lambda c: rho[c])
        lines.append(f"| {target} | {rho[target]:.2f}{' (highest)' if rho[target] > rho[other] else ''} | {other} | "
                     f"{rho[other]:.2f} |")
    misses = sorted(t for f in results for t, o in f.outcomes.items() if not o["hit"])
    if misses:
        lines += ["", "Where the held-out best model was missed: its rank among the candidates by the robust prior "
                  "(its own column left out) and by the proxy alone:", "",
                  "| target | best model | its accuracy | prior rank | proxy rank | candidates |",
                  "|---|---|---|---|---|---|"]
        for target in misses:
            best, accuracy, prior_rank, proxy_rank, count = best_model_ranks(matrix, proxy_table, target,
                                                                             args.proxy_method)
            lines.append(f"| {target} | {best} | {accuracy:.4f} | {prior_rank} | {proxy_rank} | {count} |")
    lines.append(f"\n({time.perf_counter() - start:.1f} s)")
    emit("\n".join(lines), args.out, args.json,
         {"folds": [f.held_out for f in results], "seed": args.seed,
          "chosen": [asdict(f.chosen) for f in results],
          "held_out": {t: o for f in results for t, o in f.outcomes.items()}, "in_sample": everything})

if __name__ == "__main__":
    main()
