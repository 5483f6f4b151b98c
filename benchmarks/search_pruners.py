"""A search over checkpoints x hyper-parameters, replayed on real learning curves: our pruner against Optuna's own.

Every trial is one real fine-tuning run of the QuickTune meta-dataset (a timm checkpoint with its own learning rate,
optimizer, augmentation...; 50 epochs of validation accuracy and GPU seconds). A search draws ``--trials`` of a
dataset's runs in a random order and runs them one after another, as `Trainer.hyperparameter_search` does with
Optuna: each trial reports its accuracy after every epoch to a real Optuna study, whose pruner may stop it; the best
completed trial is the answer. Our pruner is `StagePruner` over the `StageScheduler` (asynchronous rule), with the
matrix curves of each trial's checkpoint on the other datasets, exactly as `CheckpointSearch` builds it.

- speedup: GPU seconds of training every trial for 50 epochs / GPU seconds spent;
- regret: the best final accuracy among the search's trials minus the answer's final accuracy, in points.

Our policy (successive halving, or fine selection's calibrated halving with the checkpoints' matrix curves) and its
stage length are chosen by k-fold cross-validation over datasets: on the training folds, the setting with the highest
median speedup among those with a mean regret of at most --max-regret points (else the lowest regret); the figures
quoted are those of the held-back folds. At the default stage (a quarter of the budget) only the policy is chosen.
Optuna's pruners run with their defaults.

    python benchmarks/search_pruners.py prepare --quicktune DIR     # once: DIR holds perf.json, cost.json, table.csv
    python benchmarks/search_pruners.py run --markdown               # the table in docs/benchmarks.md

Data: QuickTune meta-dataset, extended split (Arango et al., "Quick-Tune: Quickly Learning Which Pretrained Model to
Finetune and How", ICLR 2024), github rapanti/quicktune at 41e6a21, src/quicktune/data/.mtlbm/extended (BSD-3-Clause,
notice in benchmarks/data/NOTICE). Only the 13 datasets of the project's development file are kept.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DATA = Path(__file__).with_name("data") / "quicktune_configs_dev.parquet"
DEV_CURVES = Path(__file__).resolve().parent.parent.parent / "shared" / "benchmarks" / "quicktune_curves_dev.csv"
EPOCHS = 50
STAGES = (1, 2, 5, 10, 12)  # 12: a quarter of the budget, the main job's default
# our pruners: the policy each runs (fine selection reads the matrix curves of each trial's checkpoint)
OURS = {"ours, fine selection": "fine-selection", "ours, successive halving": "successive-halving"}
PRUNER_CLASSES = {"median": "MedianPruner", "successive-halving": "SuccessiveHalvingPruner",
                  "hyperband": "HyperbandPruner(min_resource=1, max_resource=50)"}


def prepare(quicktune: Path, dev_curves: Path) -> pd.DataFrame:
    """One row per (dataset, run, epoch) of the runs that trained all 50 epochs, on the development datasets."""
    table = pd.read_csv(quicktune / "table.csv", index_col=0)
    model_columns = [c for c in table.columns if c.startswith("cat:model:")]
    model = table[model_columns].idxmax(axis=1).str.removeprefix("cat:model:")
    perf = json.loads((quicktune / "perf.json").read_text())
    cost = json.loads((quicktune / "cost.json").read_text())
    datasets = sorted(pd.read_csv(dev_curves)["dataset"].unique())
    rows = []
    for dataset in datasets:
        for run, curve in perf[dataset].items():
            seconds = cost[dataset].get(run, [])
            if len(curve) < EPOCHS or len(seconds) < EPOCHS or int(run) not in table.index:
                continue
            for epoch in range(EPOCHS):
                rows.append((dataset, run, model[int(run)], float(table.loc[int(run), "lr"]), epoch + 1,
                             curve[epoch] / 100.0, float(seconds[epoch])))
    return pd.DataFrame(rows, columns=["dataset", "run", "model", "lr", "step", "val", "cost"])


def make_pruner(name: str, stage: int, matrix, target: str, models: dict[str, str], checkpoints: list[str]):
    """The pruner called ``name``; ours reads each trial's checkpoint curves on every dataset but ``target``."""
    import optuna

    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner()
    if name == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=EPOCHS)
    from hf_twophase.method.live_policy import live_policy
    from hf_twophase.method.scheduler import StageScheduler
    from hf_twophase.trainer.optuna_pruner import StagePruner

    policy = live_policy(OURS[name], budget=EPOCHS, stage_steps=stage, matrix=matrix,
                         candidates=checkpoints, exclude=target, curves_of=models.get)
    scheduler = StageScheduler(policy, [], EPOCHS, mode="async")

    def on_trial(name: str, number: str, params: dict) -> None:
        models[name] = params["checkpoint"]

    return StagePruner(scheduler, on_trial=on_trial)


def replay(runs: pd.DataFrame, order: list[str], pruner_name: str, stage: int, matrix, target: str,
           study_name: str) -> dict:
    """One search: the runs of ``order`` one after another, under the pruner."""
    import optuna

    models: dict[str, str] = {}
    checkpoints = sorted(runs["model"].unique())
    pruner = make_pruner(pruner_name, stage, matrix, target, models, checkpoints)
    # named: Hyperband assigns trials to brackets by a hash of the study's name, random unless given
    study = optuna.create_study(direction="maximize", pruner=pruner, study_name=study_name)
    spent = full = 0.0
    finals = {}
    for run in order:
        curve = runs.loc[run]
        study.enqueue_trial({"checkpoint": curve["model"].iloc[0]})  # the run's own checkpoint, as a Trainer trial
        trial = study.ask()
        trial.suggest_categorical("checkpoint", checkpoints)
        vals, costs = curve["val"].to_numpy(), curve["cost"].to_numpy()
        full += costs.sum()
        finals[trial.number] = vals[-1]
        for epoch in range(EPOCHS):
            trial.report(float(vals[epoch]), epoch + 1)
            spent += costs[epoch]
            if trial.should_prune():  # also after the last epoch, as the Trainer asks
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, float(vals[-1]))
    chosen = study.best_trial.number
    return {"speedup": full / spent, "regret": 100.0 * (max(finals.values()) - finals[chosen])}


def evaluate(data: pd.DataFrame, datasets: list[str], pruner: str, stage: int, matrix, trials: int, repeats: int
             ) -> pd.DataFrame:
    rows = []
    for dataset in datasets:
        runs = data[data["dataset"] == dataset].set_index("run").sort_values("step")
        names = sorted(runs.index.unique())
        for repeat in range(repeats):
            rng = np.random.default_rng(repeat)
            order = list(rng.choice(names, size=min(trials, len(names)), replace=False))
            outcome = replay(runs, order, pruner, stage, matrix, dataset, f"{dataset}-{repeat}")
            rows.append({"dataset": dataset, "repeat": repeat, **outcome})
    return pd.DataFrame(rows)


def choose(scores: dict[tuple[str, int], pd.DataFrame], max_regret: float) -> tuple[str, int]:
    """The (pruner, stage) with the highest median speedup among those whose mean regret is at most ``max_regret``
    points on ``scores`` (else the lowest regret); ties go to the longer stage, then the simpler pruner."""
    ok = {o: f for o, f in scores.items() if f["regret"].mean() <= max_regret}
    if ok:
        return max(ok, key=lambda o: (round(ok[o]["speedup"].median(), 6), o[1], o[0] == "ours, successive halving"))
    return min(scores, key=lambda o: (scores[o]["regret"].mean(), -o[1]))


def run(args: argparse.Namespace) -> list[dict]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("hf_twophase").setLevel(logging.ERROR)
    data = pd.read_parquet(args.data)
    data["run"] = data["run"].astype(str)
    from hf_twophase.records.matrix import PerformanceMatrix

    matrix = PerformanceMatrix.read(args.dev_curves)
    datasets = sorted(d for d in data["dataset"].unique()
                      if data[data["dataset"] == d]["run"].nunique() >= args.trials)
    folds = [datasets[i::args.folds] for i in range(args.folds)]
    started = time.perf_counter()
    combos = {(name, stage): evaluate(data, datasets, name, stage, matrix, args.trials, args.repeats)
              for name in OURS for stage in STAGES}
    fold_names = [",".join(f) for f in folds]

    def cross_validated(options: list[tuple[str, int]], label: str) -> dict:
        held_out, chosen = [], []
        for fold in folds:
            pick = choose({o: combos[o][~combos[o]["dataset"].isin(fold)] for o in options}, args.max_regret)
            chosen.append(f"{pick[0]} / {pick[1]}")
            held_out.append(combos[pick][combos[pick]["dataset"].isin(fold)])
        return _summary(label, pd.concat(held_out), "chosen per fold: " + "; ".join(
            f"{c} for {f}" for c, f in zip(chosen, fold_names, strict=True)))

    quarter = STAGES[-1]
    results = [cross_validated([(n, quarter) for n in OURS], f"ours at the default stage ({quarter} epochs, a "
                               "quarter): policy chosen on the other folds"),
               cross_validated(list(combos), "ours: policy and stage chosen on the other folds")]
    in_sample = [_summary(f"{name}, stage {stage} (in-sample)", frame, "") for (name, stage), frame in combos.items()]
    for name in ("median", "successive-halving", "hyperband", "none"):
        label = f"Optuna {PRUNER_CLASSES[name]}" if name != "none" else "no pruning (every trial to the end)"
        results.append(_summary(label, evaluate(data, datasets, name, 0, matrix, args.trials, args.repeats),
                                "Optuna's defaults"))
    results += in_sample
    results.append({"policy": "seconds", "value": time.perf_counter() - started, "datasets": datasets})
    return results


def _summary(policy: str, frame: pd.DataFrame, note: str) -> dict:
    return {"policy": policy, "median speedup": float(frame["speedup"].median()),
            "mean speedup": float(frame["speedup"].mean()), "mean regret (pt)": float(frame["regret"].mean()),
            "worst regret (pt)": float(frame["regret"].max()), "searches": len(frame), "note": note}


def markdown(results: list[dict], args: argparse.Namespace) -> str:
    meta = results[-1]
    lines = [f"{len(meta['datasets'])} datasets, {args.trials} trials per search, {args.repeats} searches per "
             f"dataset, {args.folds} folds; {meta['value'] / 60:.1f} min.", "",
             "| pruner | median speedup | mean speedup | mean regret | worst regret | note |",
             "|---|---|---|---|---|---|"]
    for r in results[:-1]:
        lines.append(f"| {r['policy']} | {r['median speedup']:.2f}x | {r['mean speedup']:.2f}x | "
                     f"{r['mean regret (pt)']:.2f} pt | {r['worst regret (pt)']:.2f} pt | {r['note']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="derive the runs file from the QuickTune meta-dataset")
    prep.add_argument("--quicktune", type=Path, required=True)
    prep.add_argument("--dev-curves", type=Path, default=DEV_CURVES)
    prep.add_argument("--out", type=Path, default=DATA)
    go = sub.add_parser("run", help="replay the searches")
    go.add_argument("--data", type=Path, default=DATA)
    go.add_argument("--dev-curves", type=Path, default=DEV_CURVES)
    go.add_argument("--trials", type=int, default=24)
    go.add_argument("--repeats", type=int, default=20)
    go.add_argument("--folds", type=int, default=3)
    go.add_argument("--max-regret", type=float, default=0.5)
    go.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.command == "prepare":
        frame = prepare(args.quicktune, args.dev_curves)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(args.out, index=False)
        print(f"{len(frame)} rows, {frame.groupby('dataset')['run'].nunique().to_dict()} runs -> {args.out}")
        return
    results = run(args)
    print(markdown(results, args) if args.markdown else json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
