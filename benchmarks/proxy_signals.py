"""Every proxy score against fine-tuning, on the embedded repositories and their default targets.

For each task, every model of the embedded repository is fine-tuned on the default target at the default budget
(a brute-force run of the main job: `--policy brute-force --k <all>`, its report.json), and scored on the same
training data by every proxy (LEEP on the head; LogME, k-NN accuracy, H-score, GBC and NCTI on pooled features, one
forward pass per model for all of them; NCTI ranks the target's models together). Per target:
Kendall's tau between the proxy and the fine-tuned accuracy, and the regret of the proxy's top model and of its top
K (the default K). Leave one target out: the signal is chosen on the other target (highest tau), and the figure
reported for a target is the chosen signal's there.

    python examples/select.py --policy brute-force --k 8 --output-dir bf-image --json
    python examples/select.py --task text-classification --policy brute-force --k 5 --output-dir bf-text --json
    python benchmarks/proxy_signals.py --image bf-image/report.json --text bf-text/report.json [--out F.md]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from report_io import emit
from scipy.stats import kendalltau

from hf_twophase.inputs.columns import cap_examples
from hf_twophase.matrix_build.benchmarks import get_benchmark
from hf_twophase.matrix_build.defaults import SETUPS
from hf_twophase.proxy import FEATURE_SCORES, FeatureScorer, ProxyConfig, make_scorer
from hf_twophase.proxy.feature_scores import SET_SCORES
from hf_twophase.proxy_names import PROXY_METHODS


def fine_tuned(report: Path) -> dict[str, float]:
    """Each candidate's validation accuracy at the budget in a brute-force report (its name is what the scorer
    loads: a packaged model or a derived model's folder)."""
    data = json.loads(report.read_text())
    return {c["name"]: float(c["curve"][str(max(int(s) for s in c["curve"]))]) for c in data["candidates"]
            if c.get("curve")}


def score_target(task: str, truth: dict[str, float], samples: int) -> dict:
    setup = SETUPS[task]
    train, _, _ = get_benchmark(setup.target).load(seed=0)
    train = cap_examples(train, setup.train_examples, seed=0)
    config = ProxyConfig(max_samples=samples, progress=False, use_cache=False)
    leep = make_scorer("leep", config, fallback=True)
    scores: dict[str, dict[str, float]] = {"leep": {name: leep.score(name, train).score for name in truth}}
    features = FeatureScorer("logme", config)
    set_terms: dict[str, dict] = {method: {} for method in SET_SCORES}
    for name in truth:
        pooled, labels = features.features(name, train)
        for method, score in FEATURE_SCORES.items():
            scores.setdefault(method, {})[name] = score(pooled, labels)
        for method, set_score in SET_SCORES.items():
            set_terms[method][name] = set_score.terms(pooled, labels)
    for method, set_score in SET_SCORES.items():
        scores[method] = set_score.combine(set_terms[method])
    best = max(truth.values())
    out = {}
    for method, by_model in scores.items():
        names = sorted(truth)
        tau = kendalltau([by_model[m] for m in names], [truth[m] for m in names]).statistic
        ranked = sorted(names, key=lambda m: -by_model[m])
        out[method] = {"tau": float(tau), "top1_regret": 100 * (best - truth[ranked[0]]),
                       "topk_regret": 100 * (best - max(truth[m] for m in ranked[:setup.k])), "k": setup.k,
                       "scores": {Path(m).name: v for m, v in by_model.items()}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, required=True, help="report.json of the image brute-force run")
    parser.add_argument("--text", type=Path, required=True, help="report.json of the text brute-force run")
    parser.add_argument("--samples", type=int, default=500, help="examples each proxy looks at (the job's default)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    start = time.perf_counter()
    results = {task: score_target(task, fine_tuned(path), args.samples)
               for task, path in (("image-classification", args.image), ("text-classification", args.text))}
    lines = ["| target | models | proxy | Kendall's tau with fine-tuned accuracy | regret of its top 1 (pt) | "
             "regret of its top K (pt) |", "|---|---|---|---|---|---|"]
    for task, by_method in results.items():
        n = len(next(iter(by_method.values()))["scores"])
        for method, r in by_method.items():
            lines.append(f"| {SETUPS[task].target} | {n} | {method} | {r['tau']:.2f} | {r['top1_regret']:.1f} | "
                         f"{r['topk_regret']:.1f} (K={r['k']}) |")
    lines += ["", "Leave one target out (chosen by tau on the other target):", "",
              "| held-out target | chosen proxy | tau there | regret of its top K (pt) |", "|---|---|---|---|"]
    tasks = list(results)
    for held, other in ((tasks[0], tasks[1]), (tasks[1], tasks[0])):
        chosen = max(PROXY_METHODS, key=lambda m: (results[other][m]["tau"], -PROXY_METHODS.index(m)))
        r = results[held][chosen]
        lines.append(f"| {SETUPS[held].target} | {chosen} | {r['tau']:.2f} | {r['topk_regret']:.1f} |")
    lines.append(f"\n({time.perf_counter() - start:.0f} s)")
    emit("\n".join(lines), args.out, args.json, results)


if __name__ == "__main__":
    main()
