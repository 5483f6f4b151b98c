"""`hf-twophase replay`: replay a selection policy over recorded learning curves, leave-one-out, and print what it
would have cost and picked."""

from __future__ import annotations

import argparse

from hf_twophase.cli.arguments import growth_factor, non_negative_float, positive_int
from hf_twophase.method.registry import DEFAULT_VARIANT, REPLAY_POLICY_NAMES, VARIANTS
from hf_twophase.method.replay import replay, summarise
from hf_twophase.records.matrix import PerformanceMatrix, read_proxy_scores


def add_replay_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--records", required=True, help="records file with learning curves (CSV or Parquet)")
    p.add_argument("--proxy", default=None, help="proxy-score file (needed by --policy two-phase)")
    p.add_argument("--targets", default=None, help="comma-separated target datasets (default: every dataset)")
    p.add_argument("--policy", choices=REPLAY_POLICY_NAMES, default="fine-selection")
    p.add_argument("--stage", type=positive_int, default=None,
                   help="steps in the first stage (default: a quarter of each target's budget, as in the main job)")
    p.add_argument("--growth", type=growth_factor, default=None,
                   help="each stage this many times longer than the one before (default 1: fixed stages)")
    p.add_argument("--budget", type=positive_int, default=None,
                   help="full training budget in steps (default: longest curve)")
    p.add_argument("--threshold", type=non_negative_float, default=None,
                   help="fine selection: trend-prune threshold (default 0)")
    p.add_argument("--variant", choices=VARIANTS, default=DEFAULT_VARIANT,
                   help="fine selection: calibrated halving (cuts deeper than halving only where the benchmarks' "
                        "curves say it is safe), improved trend bounds, or the paper's Algorithm 1 (docs/method.md)")
    p.add_argument("--k", type=positive_int, default=10, help="two-phase: models recalled in phase 1")
    p.add_argument("--proxy-method", default=None, help="two-phase: proxy method to read")
    p.add_argument("--decisions", action="store_true", help="include every decision in the JSON")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def replay_command(args: argparse.Namespace) -> dict:
    matrix = PerformanceMatrix.read(args.records)
    proxy_table = read_proxy_scores(args.proxy) if args.proxy else None
    targets = [t.strip() for t in args.targets.split(",") if t.strip()] if args.targets else None
    runs = replay(matrix, args.policy, targets=targets, stage=args.stage, growth=args.growth, budget=args.budget,
                  threshold=args.threshold, variant=args.variant, proxy_table=proxy_table, k=args.k,
                  proxy_method=args.proxy_method)
    out = {"runs": [r.to_dict(args.decisions) for r in runs], "summary": summarise(runs)}
    if not args.json:
        for r in runs:
            print(f"{r.target:>24}  {r.selected:<40} regret {r.regret:.4f}  speedup {r.speedup:6.2f}x")
        s = out["summary"]
        print(f"median speedup {s['median_speedup']:.2f}x, mean regret {s['mean_regret']:.4f}, "
              f"zero regret on {s['zero_regret']}/{s['targets']} targets")
    return out
