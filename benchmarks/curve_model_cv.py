"""Phase 2 on predicted final scores (the curve model), replayed on recorded curves and cross-validated over datasets.

Every dataset of the records file is a target in turn (its curves are the hidden truth; the other datasets are the
benchmarks). For each stage length separately, the curve model's setting (sources of the prediction, bound width z,
rule for the last cut) is chosen on the training folds: the largest median speedup over successive halving among the
settings whose mean regret there is no higher than halving's, else the lowest regret. The figures for a target come
from the fold that held it back, beside successive halving and calibrated halving (the default variant) on the same
targets. Speedup = brute-force seconds / spent seconds (median over targets); regret = best final accuracy minus the
winner's (mean, points).

    python benchmarks/curve_model_cv.py --records R.csv [--stages 1,2,3,5,12] [--folds 3] [--seed 0] [--out F.md]
"""

from __future__ import annotations

import statistics
import time

from report_io import cv_parser, emit

from hf_twophase import PerformanceMatrix
from hf_twophase.method.crossval import cross_validate, dataset_folds, versus_halving
from hf_twophase.method.curve_model import LAST_CUT_RULES, CurveModelConfig, CurveModelHalving
from hf_twophase.method.policies import CalibratedHalving, StageSchedule, SuccessiveHalving
from hf_twophase.method.replay import replay_target
from hf_twophase.method.trends import benchmark_curves
from hf_twophase.records.curves import CurveCube

SETTINGS = [CurveModelConfig(sources=s, z=z, last_cut=cut)
            for s in ("prior", "both") for z in (0.5, 1.0, 1.5, 2.0) for cut in LAST_CUT_RULES]


def label(config: CurveModelConfig | str) -> str:
    if isinstance(config, str):
        return config
    return f"curve model, {config.sources}, z {config.z:g}, last cut: {config.last_cut}"


def main() -> None:
    args = cv_parser(__doc__, stages="1,2,3,5,12").parse_args()
    stages = args.stages

    start = time.perf_counter()
    cube = CurveCube(PerformanceMatrix.read(args.records))
    cache: dict = {}

    def policy(setting, stage: int, target: str):
        schedule = StageSchedule(stage, 1.0)
        curves = lambda m: benchmark_curves(cube, m, exclude=target)  # noqa: E731
        if setting == "successive halving":
            return SuccessiveHalving(schedule)
        if setting == "calibrated halving":
            return CalibratedHalving(curves, schedule=schedule)
        return CurveModelHalving(curves, schedule=schedule, config=setting)

    def outcome(setting, stage: int, target: str) -> tuple[float, float]:
        key = (label(setting), stage, target)
        if key not in cache:
            run = replay_target(cube, target, lambda c, t: policy(setting, stage, t))
            cache[key] = (run.speedup, 100 * run.regret)
        return cache[key]

    folds = dataset_folds(cube.datasets, args.folds, args.seed)
    lines = [f"Folds (seed {args.seed}): " + "; ".join(f"{i + 1}: {', '.join(f)}" for i, f in enumerate(folds)), "",
             "| stage | chosen on the other folds | curve model, held back | successive halving | calibrated halving |"
             " speedup over halving |", "|---|---|---|---|---|---|"]
    held_out: dict = {}
    for stage in stages:
        def evaluate(setting, target, stage=stage):
            return {"run": outcome(setting, stage, target), "halving": outcome("successive halving", stage, target)}

        def training_score(outcomes: list[dict]) -> tuple:
            regret = statistics.mean(o["run"][1] for o in outcomes)
            base = statistics.mean(o["halving"][1] for o in outcomes)
            speed = statistics.median(o["run"][0] / o["halving"][0] for o in outcomes)
            return (regret <= base + 1e-9, speed if regret <= base + 1e-9 else -regret)

        results = cross_validate(folds, SETTINGS, evaluate, training_score)
        targets = [t for f in results for t in f.held_out]
        runs = [f.outcomes[t]["run"] for f in results for t in f.held_out]

        def cell(setting, stage=stage, targets=targets):
            values = [outcome(setting, stage, t) for t in targets]
            return statistics.median(s for s, _ in values), statistics.mean(r for _, r in values)

        speed, regret = statistics.median(s for s, _ in runs), statistics.mean(r for _, r in runs)
        halving = cell("successive halving")
        held_out[stage] = {"speedup": speed, "regret": regret, "halving": halving,
                           "chosen": [label(f.chosen) for f in results]}
        chosen = "; ".join(f"{i + 1}: {label(f.chosen).removeprefix('curve model, ')}" for i, f in enumerate(results))
        lines.append(f"| {stage} | {chosen} | **{speed:.2f}x at {regret:.2f} pt** | {halving[0]:.2f}x at "
                     f"{halving[1]:.2f} pt | " + "{:.2f}x at {:.2f} pt".format(*cell("calibrated halving"))
                     + f" | {speed / halving[0]:.2f}x |")
    # one setting for every stage length (what a default must be): the most stage lengths at which it is no worse than
    # halving on both counts on the training folds, then the largest summed gain (regret points saved + log speedup)
    def across(setting, target):
        return {"setting": {st: outcome(setting, st, target) for st in stages},
                "halving": {st: outcome("successive halving", st, target) for st in stages}}

    def overall_score(outcomes: list[dict]) -> tuple:  # the rule the calibrated variant's constants were chosen by
        return versus_halving(outcomes, stages)

    candidates = ["calibrated halving", *SETTINGS]  # the current default competes for its place
    overall = cross_validate(folds, candidates, across, overall_score)
    everywhere = max(candidates, key=lambda c: (overall_score([across(c, t) for t in cube.datasets]),
                                                -candidates.index(c)))
    lines += ["", "One setting for every stage length, calibrated halving included (how a default is chosen), chosen "
              "on the other folds: " + "; ".join(f"fold {i + 1}: {label(f.chosen)}" for i, f in enumerate(overall))
              + f". Chosen the same way on every target: {label(everywhere)}.", "",
              "| stage | chosen setting, held back | successive halving | speedup over halving |", "|---|---|---|---|"]
    held_out["one setting"] = {"chosen": [label(f.chosen) for f in overall], "on every target": label(everywhere)}
    for st in stages:
        runs = [f.outcomes[t]["setting"][st] for f in overall for t in f.held_out]
        base = [f.outcomes[t]["halving"][st] for f in overall for t in f.held_out]
        speed, regret = statistics.median(s for s, _ in runs), statistics.mean(r for _, r in runs)
        base_speed, base_regret = statistics.median(s for s, _ in base), statistics.mean(r for _, r in base)
        held_out["one setting"][st] = {"speedup": speed, "regret": regret}
        lines.append(f"| {st} | **{speed:.2f}x at {regret:.2f} pt** | {base_speed:.2f}x at {base_regret:.2f} pt | "
                     f"{speed / base_speed:.2f}x |")
    lines += ["", "Every setting on every target (in-sample: for reference, not for choosing):", "",
              "| setting | " + " | ".join(f"stage {st}" for st in stages) + " |", "|---|" + "---|" * len(stages)]
    for setting in ["successive halving", "calibrated halving", *SETTINGS]:
        cells = []
        for stage in stages:
            values = [outcome(setting, stage, t) for t in cube.datasets]
            cells.append(f"{statistics.median(s for s, _ in values):.2f}x at "
                         f"{statistics.mean(r for _, r in values):.2f}")
        lines.append(f"| {label(setting)} | " + " | ".join(cells) + " |")
    lines.append(f"\n({len(SETTINGS)} settings x {len(stages)} stage lengths x {len(cube.datasets)} targets, "
                 f"{time.perf_counter() - start:.1f} s)")
    emit("\n".join(lines), args.out, args.json, {"seed": args.seed, "folds": folds, "held_out": held_out})


if __name__ == "__main__":
    main()
