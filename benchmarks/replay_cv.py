"""Phase 2 replayed on recorded learning curves, cross-validated over datasets.

Every dataset of the records file is a target in turn (leave-one-out: the other datasets are its benchmarks). The
fine-selection setting is chosen on the other folds' targets only, by this rule: the most stage settings at which it
is no worse than successive halving on both counts (mean regret no higher, median speedup no lower), then the largest
summed gain over halving (regret points saved + log speedup ratio). The figures reported for a target come from the
fold that held it back, next to successive halving and the fixed variants on the same targets.

    python benchmarks/replay_cv.py --records R.csv [--stages 1,2,3,5] [--folds 3] [--seed 0] [--out F.md]
"""

from __future__ import annotations

import statistics
import time

from report_io import cv_parser, emit

from hf_twophase import PerformanceMatrix
from hf_twophase.method.crossval import cross_validate, dataset_folds, versus_halving
from hf_twophase.method.policies import CalibratedHalving, StageSchedule, SuccessiveHalving
from hf_twophase.method.registry import make_fine_selection
from hf_twophase.method.replay import replay_target
from hf_twophase.method.trends import benchmark_curves
from hf_twophase.records.curves import CurveCube

HALVING = ("successive halving", None, None)
FIXED = [("fine selection, improved", "improved", None), ("fine selection, paper", "paper", None)]
CALIBRATED = [(f"calibrated, coverage {c:g}, from {f:.0%} of training", "calibrated", (c, f))
              for c in (1.0, 0.9) for f in (0.06, 0.1, 0.2)]


def make(setting, stage: int):
    label, variant, params = setting

    def factory(cube: CurveCube, target: str):
        curves = lambda m: benchmark_curves(cube, m, exclude=target)  # noqa: E731
        if variant is None:
            return SuccessiveHalving(StageSchedule(stage, 1.0))
        if variant == "calibrated":
            return CalibratedHalving(curves, schedule=StageSchedule(stage, 1.0), coverage=params[0],
                                     min_fraction=params[1])
        return make_fine_selection(curves, variant, stage=stage)

    return factory


def main() -> None:
    args = cv_parser(__doc__, stages="1,2,3,5").parse_args()
    stages = args.stages

    start = time.perf_counter()
    cube = CurveCube(PerformanceMatrix.read(args.records))
    cache: dict = {}

    def outcome(setting, target: str) -> dict:
        """One target, every stage setting: {stage: (speedup, regret in points)}."""
        key = (setting[0], target)
        if key not in cache:
            cache[key] = {st: (lambda r: (r.speedup, 100 * r.regret))(replay_target(cube, target, make(setting, st)))
                          for st in stages}
        return cache[key]

    def summary(setting, targets, stage):
        runs = [outcome(setting, t)[stage] for t in targets]
        return statistics.median(s for s, _ in runs), statistics.mean(r for _, r in runs)

    def training_score(outcomes: list[dict]) -> tuple:  # the rule the calibrated variant's constants were chosen by
        return versus_halving(outcomes, stages)

    grid = [HALVING, *CALIBRATED, *FIXED]
    folds = dataset_folds(cube.datasets, args.folds, args.seed)
    results = cross_validate(folds, grid, lambda s, t: {"setting": outcome(s, t), "halving": outcome(HALVING, t)},
                             training_score)
    targets = [t for f in results for t in f.held_out]
    lines = [f"Folds (seed {args.seed}): " + "; ".join(f"{i + 1}: {', '.join(f.held_out)}"
                                                       for i, f in enumerate(results)),
             "Chosen on the other folds: " + "; ".join(f"fold {i + 1}: {f.chosen[0]}" for i, f in enumerate(results)),
             "", "| stage | cross-validated choice | successive halving | fine selection, improved | "
                 "fine selection, paper |", "|---|---|---|---|---|"]
    held = {}
    for st in stages:
        runs = [f.outcomes[t]["setting"][st] for f in results for t in f.held_out]
        speed, regret = statistics.median(s for s, _ in runs), statistics.mean(r for _, r in runs)
        held[st] = {"speedup": speed, "regret": regret}
        cells = [f"{v[0]:.2f}x at {v[1]:.2f} pt" for v in (summary(s, targets, st) for s in (HALVING, *FIXED))]
        lines.append(f"| {st} | **{speed:.2f}x at {regret:.2f} pt** | " + " | ".join(cells) + " |")
    lines += ["", "Every setting on every target (in-sample: for reference, not for choosing):", "",
              "| setting | " + " | ".join(f"stage {st}" for st in stages) + " |", "|---|" + "---|" * len(stages)]
    for setting in grid:
        cells = [f"{sp:.2f}x at {rg:.2f}" for sp, rg in (summary(setting, targets, st) for st in stages)]
        lines.append(f"| {setting[0]} | " + " | ".join(cells) + " |")
    lines.append(f"\n({len(grid)} settings x {len(stages)} stage settings x {len(targets)} targets, "
                 f"{time.perf_counter() - start:.1f} s)")
    emit("\n".join(lines), args.out, args.json,
         {"seed": args.seed, "folds": [f.held_out for f in results], "chosen": [f.chosen[0] for f in results],
          "held_out": held})

if __name__ == "__main__":
    main()
