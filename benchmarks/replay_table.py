"""Replay every policy on every target of a records file (leave-one-out) and tabulate cost against regret.

Writes a Markdown table (per policy, stage length and growth: median speedup over brute force, mean and
max regret in points, zero-regret targets) and a regret-vs-speedup frontier plot, one line per policy.

    python benchmarks/replay_table.py --records R.csv [--stages 1,2,3,5] [--out-md T.md] [--out-png F.png]
"""

from __future__ import annotations

import argparse
import time

from report_io import stage_lengths

from hf_twophase import PerformanceMatrix
from hf_twophase.method.registry import make_fine_selection
from hf_twophase.method.replay import replay, replay_target, summarise
from hf_twophase.method.trends import benchmark_curves
from hf_twophase.records.curves import CurveCube

POLICIES = [  # (label, policy, variant, growth)
    ("successive halving", "successive-halving", None, 1.0),
    ("successive halving, growing stages (x2)", "successive-halving", None, 2.0),
    ("fine selection, paper (Algorithm 1)", "fine-selection", "paper", 1.0),
    ("fine selection, paper, growing stages (x2)", "fine-selection", "paper", 2.0),
    ("fine selection, improved", "fine-selection", "improved", 1.0),
    ("fine selection, improved, growing stages (x2)", "fine-selection", "improved", 2.0),
    ("ablation: improved without the runner-up guard", "unguarded", "improved", 1.0),
    ("ablation: improved without the runner-up guard, growing (x2)", "unguarded", "improved", 2.0),
]


def unguarded(cube: CurveCube, stage: int, growth: float) -> list:
    """The improved variant with its runner-up guard switched off: what the guard buys, target by target."""
    def make(cube: CurveCube, target: str):
        policy = make_fine_selection(lambda m: benchmark_curves(cube, m, exclude=target), "improved", stage=stage,
                                     growth=growth)
        policy.runner_up_guard = None
        return policy
    return [replay_target(cube, target, make) for target in cube.datasets]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", required=True)
    parser.add_argument("--stages", type=stage_lengths, default="1,2,3,5")
    parser.add_argument("--out-md", default=None)
    parser.add_argument("--out-png", default=None)
    args = parser.parse_args()
    stages = args.stages

    start = time.perf_counter()
    matrix = PerformanceMatrix.read(args.records)
    cube = CurveCube(matrix)
    rows, points = [], {}
    oracle = None
    for label, policy, variant, growth in POLICIES:
        for stage in stages:
            runs = unguarded(cube, stage, growth) if policy == "unguarded" else replay(
                matrix, policy, stage=stage, growth=growth, variant=variant or "improved", cube=cube)
            s = summarise(runs)
            rows.append((label, stage, s))
            points.setdefault(label, []).append((s["median_speedup"], 100 * s["mean_regret"]))
    # the oracle trains only the eventual best model: the ceiling on speedup
    bf = replay(matrix, "brute-force", cube=cube)
    oracle_speedups = sorted(r.brute_force_cost / cube.cost_until(
        max(cube.models_on(r.target), key=lambda m: cube.final_of(m, r.target)), r.target, cube.max_step)
        for r in bf)
    oracle = oracle_speedups[len(oracle_speedups) // 2] if len(oracle_speedups) % 2 else sum(
        oracle_speedups[len(oracle_speedups) // 2 - 1: len(oracle_speedups) // 2 + 1]) / 2
    seconds = time.perf_counter() - start

    lines = ["| policy | stage | median speedup vs BF | mean regret (pt) | max regret (pt) | zero-regret targets |",
             "|---|---|---|---|---|---|"]
    for label, stage, s in rows:
        lines.append(f"| {label} | {stage} | {s['median_speedup']:.2f}x | {100 * s['mean_regret']:.2f} | "
                     f"{100 * s['max_regret']:.2f} | {s['zero_regret']}/{s['targets']} |")
    lines.append(f"| oracle (train only the winner) | - | {oracle:.2f}x | 0.00 | 0.00 | all |")
    table = "\n".join(lines)
    print(table)
    print(f"\n{len(rows) + 1} policy settings x {len(cube.datasets)} targets replayed in {seconds:.1f} s")
    if args.out_md:
        with open(args.out_md, "w") as fh:
            fh.write(table + "\n")
    if args.out_png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cap = 3.0  # regret axis in points; settings above it are drawn on the top edge as triangles
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        for label, pts in points.items():
            xs = [x for x, _ in pts]
            ys = [min(y, cap) for _, y in pts]
            line, = ax.plot(xs, ys, marker="o", label=label)
            for x, (_, y), stage in zip(xs, pts, stages, strict=True):
                if y > cap:
                    ax.scatter([x], [cap], marker="^", s=60, color=line.get_color(), zorder=4)
                ax.annotate(str(stage), (x, min(y, cap)), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.scatter([oracle], [0.0], marker="*", s=120, color="black", label="oracle", zorder=5)
        ax.set_xlabel("median speedup over brute force (x)")
        ax.set_ylabel("mean regret (accuracy points)")
        ax.set_title("Regret vs speedup, leave-one-out replay (labels: stage length; ^ = off the scale)")
        ax.set_ylim(-0.1, cap + 0.2)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.out_png, dpi=120)


if __name__ == "__main__":
    main()
