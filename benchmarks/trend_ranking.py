"""How well does each predictor rank candidates by final score, from what is known at step t?

Leave-one-out over the targets of a records file: for every target and step t, every candidate's
final score is predicted from its val at t (and, for trend predictors, its curves on the other
datasets); the Spearman correlation with the true final scores is averaged over targets.

    python benchmarks/trend_ranking.py --records R.csv [--steps 1,2,3,5,8,12,20]
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import spearmanr

from hf_twophase import PerformanceMatrix
from hf_twophase.method.trends import GainTrendPredictor, PaperTrendPredictor, benchmark_curves
from hf_twophase.records.curves import CurveCube


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", required=True)
    parser.add_argument("--steps", default="1,2,3,5,8,12,20")
    args = parser.parse_args()
    cube = CurveCube(PerformanceMatrix.read(args.records))
    predictors = {"val at t": None, "paper trends": PaperTrendPredictor(), "gain trend": GainTrendPredictor()}
    print("| step | " + " | ".join(f"{name}: Spearman / MAE" for name in predictors) + " |")
    print("|---|" + "---|" * len(predictors))
    for step in (int(s) for s in args.steps.split(",")):
        cells = []
        for predictor in predictors.values():
            rhos, maes = [], []
            for target in cube.datasets:
                models = cube.models_on(target)
                truth = np.array([cube.final_of(m, target) for m in models])
                preds = []
                for m in models:
                    val = cube.val_at(m, target, step)
                    p = None if predictor is None else predictor.predict(benchmark_curves(cube, m, target), step, val)
                    preds.append(val if p is None else p.value)
                ok = ~np.isnan(truth) & ~np.isnan(preds)
                if ok.sum() > 2:
                    rhos.append(spearmanr(np.array(preds)[ok], truth[ok])[0])
                    maes.append(np.mean(np.abs(np.array(preds)[ok] - truth[ok])))
            cells.append(f"{np.nanmean(rhos):.2f} / {100 * np.mean(maes):.1f} pt")
        print(f"| {step} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
