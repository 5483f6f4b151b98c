"""Replay a selection policy over recorded learning curves: what it would have cost, and what it would have picked.

Strictly leave-one-out: for each target dataset, its rows are the hidden truth of a simulated
fine-tuning run (validation scores revealed step by step, costs charged as recorded), and only the
other datasets serve as benchmarks. The policy objects are the ones live training uses.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hf_twophase.errors import SelectionError
from hf_twophase.method.engine import SelectionRun
from hf_twophase.method.policies import (
    BruteForce,
    Decision,
    SelectionPolicy,
    StageSchedule,
    SuccessiveHalving,
    TwoPhase,
    make_fine_selection,
)
from hf_twophase.method.trends import BenchmarkCurves
from hf_twophase.records.matrix import PerformanceMatrix

POLICIES = ("brute-force", "successive-halving", "fine-selection", "two-phase")


class CurveCube:
    """Dense view of a matrix: val[model, dataset, step-1], cost[...] and final[model, dataset] (NaN = none)."""

    def __init__(self, matrix: PerformanceMatrix):
        rec = matrix.records
        self.models = matrix.models
        self.datasets = matrix.datasets
        self.max_step = int(rec["step"].max())
        mi = {m: i for i, m in enumerate(self.models)}
        di = {d: i for i, d in enumerate(self.datasets)}
        m_idx = rec["model"].map(mi).to_numpy()
        d_idx = rec["dataset"].map(di).to_numpy()
        s_idx = rec["step"].to_numpy() - 1
        shape = (len(self.models), len(self.datasets), self.max_step)
        self.val = np.full(shape, np.nan)
        self.cost = np.full(shape, np.nan)
        self.present = np.zeros(shape, dtype=bool)
        self.val[m_idx, d_idx, s_idx] = rec["val"].to_numpy(dtype=float)
        self.cost[m_idx, d_idx, s_idx] = rec["cost"].to_numpy(dtype=float)
        self.present[m_idx, d_idx, s_idx] = True
        self.final = matrix.final_scores().reindex(index=self.models, columns=self.datasets).to_numpy(dtype=float)
        self._mi, self._di = mi, di

    def models_on(self, dataset: str) -> list[str]:
        d = self._di[dataset]
        return [m for i, m in enumerate(self.models) if self.present[i, d].any()]

    def benchmark_curves(self, model: str, exclude: str) -> BenchmarkCurves | None:
        """A model's curves on every dataset but `exclude`: the only history fine selection may use."""
        i = self._mi.get(model)
        if i is None:
            return None
        keep = [j for j, d in enumerate(self.datasets) if d != exclude and self.present[i, j].any()]
        if not keep:
            return None
        return BenchmarkCurves(benchmarks=tuple(self.datasets[j] for j in keep), val=self.val[i, keep],
                               final=self.final[i, keep])

    def val_at(self, model: str, dataset: str, step: int) -> float:
        """The val a live run would report at `step`: the latest recorded point at or before it."""
        row = self.val[self._mi[model], self._di[dataset], :step]
        have = self.present[self._mi[model], self._di[dataset], :step]
        return float(row[have][-1]) if have.any() else float("nan")

    def cost_until(self, model: str, dataset: str, step: int) -> float:
        """Recorded cost of steps 1..step; a recorded step without a cost counts as one unit."""
        c = self.cost[self._mi[model], self._di[dataset], :step]
        have = self.present[self._mi[model], self._di[dataset], :step]
        return float(np.where(np.isnan(c), 1.0, c)[have].sum())

    def last_step(self, model: str, dataset: str) -> int:
        have = np.flatnonzero(self.present[self._mi[model], self._di[dataset]])
        return int(have[-1]) + 1 if have.size else 0

    def final_of(self, model: str, dataset: str) -> float:
        return float(self.final[self._mi[model], self._di[dataset]])


@dataclass
class ReplayRun:
    target: str
    policy: str
    selected: str
    selected_score: float
    best_score: float
    regret: float
    cost: float
    brute_force_cost: float
    speedup: float
    n_candidates: int
    steps_trained: int
    proxy_cost: float = 0.0
    recalled: list[str] | None = None
    decisions: list[Decision] = field(default_factory=list)

    def to_dict(self, with_decisions: bool = False) -> dict:
        out = {
            "target": self.target, "policy": self.policy, "selected": self.selected,
            "selected_score": self.selected_score, "best_score": self.best_score, "regret": self.regret,
            "cost": self.cost, "brute_force_cost": self.brute_force_cost, "speedup": self.speedup,
            "n_candidates": self.n_candidates, "steps_trained": self.steps_trained,
        }
        if self.recalled is not None:
            out["recalled"] = self.recalled
            out["proxy_cost"] = self.proxy_cost
        if with_decisions:
            out["decisions"] = [d.to_dict() for d in self.decisions]
        return out


PolicyFactory = Callable[[CurveCube, str], SelectionPolicy]


def replay_target(
    cube: CurveCube,
    target: str,
    make_policy: PolicyFactory,
    *,
    budget: int | None = None,
) -> ReplayRun:
    """Simulate one selection on `target`, charging recorded costs (and the policy's shortlist cost)."""
    if target not in cube.datasets:
        raise SelectionError(f"unknown target '{target}'; datasets in the records: {', '.join(cube.datasets)}")
    candidates = cube.models_on(target)
    if not candidates:
        raise SelectionError(f"no model has a curve on target '{target}'")
    budget = budget or max(cube.last_step(m, target) for m in candidates)
    truth = {m: cube.final_of(m, target) for m in candidates}
    scored_truth = [v for v in truth.values() if not np.isnan(v)]
    if not scored_truth:
        raise SelectionError(f"no model has a final test score on target '{target}'")
    best_score = max(scored_truth)
    bf_cost = sum(cube.cost_until(m, target, budget) for m in candidates)
    policy = make_policy(cube, target)
    run = SelectionRun(policy, candidates, budget)
    proxy_cost = run.shortlist_cost
    recalled = list(run.alive) if isinstance(policy, TwoPhase) else None
    reached = run.play(lambda m, step: cube.val_at(m, target, step))
    cost = proxy_cost + sum(cube.cost_until(m, target, s) for m, s in reached.items() if s > 0)
    selected_score = truth[run.winner]
    return ReplayRun(
        target=target, policy=policy.name, selected=run.winner, selected_score=selected_score,
        best_score=best_score, regret=best_score - selected_score, cost=cost, brute_force_cost=bf_cost,
        speedup=bf_cost / cost if cost > 0 else float("inf"), n_candidates=len(candidates),
        steps_trained=sum(reached.values()), proxy_cost=proxy_cost, recalled=recalled, decisions=run.decisions,
    )


def policy_factory(
    policy: str, *, stage: int = 1, growth: float | None = None, threshold: float | None = None,
    variant: str = "improved",
    recall: Callable[[CurveCube, str], Callable[[list[str]], tuple[list[str], float]]] | None = None,
) -> PolicyFactory:
    """Build the policy for one target; fine selection gets the candidates' leave-one-out benchmark curves,
    two-phase also a `recall(cube, target)` that returns its phase-1 function."""
    if policy == "brute-force":
        return lambda cube, target: BruteForce()
    if policy == "successive-halving":
        return lambda cube, target: SuccessiveHalving(StageSchedule(stage, 1.0 if growth is None else growth))
    if policy == "fine-selection":
        def make(cube: CurveCube, target: str) -> SelectionPolicy:
            return make_fine_selection(lambda m: cube.benchmark_curves(m, exclude=target), variant,
                                       threshold=threshold, stage=stage, growth=growth)
        return make
    if policy == "two-phase":
        if recall is None:
            raise SelectionError("the two-phase policy needs proxy scores: pass --proxy FILE")
        inner = policy_factory("fine-selection", stage=stage, growth=growth, threshold=threshold, variant=variant)
        return lambda cube, target: TwoPhase(recall(cube, target), inner(cube, target))
    raise SelectionError(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")


def recall_phase(
    matrix: PerformanceMatrix, cube: CurveCube, target: str, proxy_table, *, k: int, proxy_method: str | None = None,
    normaliser: str = "auto",
) -> Callable[[list[str]], tuple[list[str], float]]:
    """Phase 1 for the two-phase policy, charged the proxy cost of the models it scores.

    The proxy file's `cost` is charged where present; otherwise half of one training step of that model
    on the target (the paper's accounting).
    """
    from hf_twophase.method.phase1 import Phase1, proxy_lookup
    from hf_twophase.method.recall import normaliser_for

    def shortlist(candidates: list[str]) -> tuple[list[str], float]:
        phase1 = Phase1.from_matrix(matrix, target=target, candidates=candidates)
        needed = phase1.to_score(k)
        scores, method = proxy_lookup(proxy_table, target, proxy_method)
        missing = [m for m in needed if m not in scores]
        if missing:
            raise SelectionError(f"no proxy score on '{target}' for {', '.join(missing[:5])}")
        result = phase1.recall({m: scores[m] for m in needed}, k=k, normaliser=normaliser_for(normaliser, method))
        rows = proxy_table[(proxy_table["dataset"] == target) & (proxy_table["method"] == method)]
        recorded = dict(zip(rows["model"], rows["cost"].astype(float), strict=False))
        cost = 0.0
        for m in needed:
            c = recorded.get(m, float("nan"))
            if np.isnan(c):
                steps = max(1, cube.last_step(m, target))
                c = 0.5 * cube.cost_until(m, target, steps) / steps
            cost += c
        return result.recalled, cost

    return shortlist


def summarise(runs: Sequence[ReplayRun]) -> dict:
    if not runs:
        return {"median_speedup": None, "mean_regret": None, "zero_regret": 0, "targets": 0}
    regrets = [r.regret for r in runs]
    return {
        "median_speedup": statistics.median(r.speedup for r in runs),
        "mean_regret": float(np.mean(regrets)),
        "max_regret": float(np.max(regrets)),
        "zero_regret": sum(1 for x in regrets if x <= 1e-12),
        "targets": len(runs),
    }


def replay(
    matrix: PerformanceMatrix,
    policy: str,
    *,
    targets: Sequence[str] | None = None,
    stage: int = 1,
    growth: float | None = None,
    budget: int | None = None,
    threshold: float | None = None,
    variant: str = "improved",
    proxy_table=None,
    k: int = 10,
    proxy_method: str | None = None,
    cube: CurveCube | None = None,
) -> list[ReplayRun]:
    """Replay `policy` on every target (default: every dataset of the matrix, each in turn)."""
    cube = cube or CurveCube(matrix)
    targets = list(targets) if targets else list(cube.datasets)
    recall = None
    if proxy_table is not None:
        def recall(cube: CurveCube, target: str) -> Callable[[list[str]], tuple[list[str], float]]:
            return recall_phase(matrix, cube, target, proxy_table, k=k, proxy_method=proxy_method)
    make = policy_factory(policy, stage=stage, growth=growth, threshold=threshold, variant=variant, recall=recall)
    return [replay_target(cube, target, make, budget=budget) for target in targets]


def add_replay_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--records", required=True, help="records file with learning curves (CSV or Parquet)")
    p.add_argument("--proxy", default=None, help="proxy-score file (needed by --policy two-phase)")
    p.add_argument("--targets", default=None, help="comma-separated target datasets (default: every dataset)")
    p.add_argument("--policy", choices=POLICIES, default="fine-selection")
    p.add_argument("--stage", type=int, default=1, help="steps in the first stage")
    p.add_argument("--growth", type=float, default=None,
                   help="each stage this many times longer than the one before (default 1: fixed stages)")
    p.add_argument("--budget", type=int, default=None, help="full training budget in steps (default: longest curve)")
    p.add_argument("--threshold", type=float, default=None, help="fine selection: trend-prune threshold (default 0)")
    p.add_argument("--variant", choices=["paper", "improved"], default="improved",
                   help="fine selection: the paper's Algorithm 1, or our improved predictor and schedule")
    p.add_argument("--k", type=int, default=10, help="two-phase: models recalled in phase 1")
    p.add_argument("--proxy-method", default=None, help="two-phase: proxy method to read")
    p.add_argument("--decisions", action="store_true", help="include every decision in the JSON")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def replay_command(args: argparse.Namespace) -> dict:
    from hf_twophase.records.matrix import read_proxy_scores

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
