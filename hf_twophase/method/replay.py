"""Replay a selection policy over recorded learning curves: what it would have cost, and what it would have picked.

Strictly leave-one-out: for each target dataset, its rows are the hidden truth of a simulated
fine-tuning run (validation scores revealed step by step, costs charged as recorded), and only the
other datasets serve as benchmarks. The policy objects are the ones live training uses.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hf_twophase.errors import SelectionError
from hf_twophase.method.policies import Decision, SelectionPolicy, TwoPhase
from hf_twophase.method.recall import RecallConfig
from hf_twophase.method.registry import default_stage, make_policy
from hf_twophase.method.scheduler import StageScheduler, play
from hf_twophase.method.trends import benchmark_curves
from hf_twophase.records.curves import CurveCube
from hf_twophase.records.matrix import PerformanceMatrix


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
    run = StageScheduler(policy, candidates, budget, shortlist=True)  # the very object live training drives
    proxy_cost = run.shortlist_cost
    recalled = list(run.alive) if isinstance(policy, TwoPhase) else None
    reached = play(run, lambda m, step: cube.val_at(m, target, step))
    cost = proxy_cost + sum(cube.cost_until(m, target, s) for m, s in reached.items() if s > 0)
    selected_score = truth[run.winner]
    return ReplayRun(
        target=target, policy=policy.name, selected=run.winner, selected_score=selected_score,
        best_score=best_score, regret=best_score - selected_score, cost=cost, brute_force_cost=bf_cost,
        speedup=bf_cost / cost if cost > 0 else float("inf"), n_candidates=len(candidates),
        steps_trained=sum(reached.values()), proxy_cost=proxy_cost, recalled=recalled, decisions=run.decisions,
    )


def policy_factory(
    policy: str, *, stage: int | None = None, budget: int | None = None, growth: float | None = None,
    threshold: float | None = None, variant: str = "calibrated",
    recall: Callable[[CurveCube, str], Callable[[list[str]], tuple[list[str], float]]] | None = None,
) -> PolicyFactory:
    """Build the policy for one target with the shared factory: fine selection gets the candidates'
    leave-one-out benchmark curves, two-phase also a `recall(cube, target)` that returns its phase-1 function.
    Without a ``stage``, each target gets the main job's schedule: a quarter of its budget (``budget``, else the
    target's longest curve) per first stage."""
    if policy == "two-phase" and recall is None:
        raise SelectionError("the two-phase policy needs proxy scores: pass --proxy FILE")
    make_policy(policy, stage=stage or 1, growth=growth, variant=variant, threshold=threshold,
                recall=lambda candidates: (candidates, 0.0))  # an unknown name or variant fails now, not per target

    def make(cube: CurveCube, target: str) -> SelectionPolicy:
        first = stage or default_stage(budget or max(cube.last_step(m, target) for m in cube.models_on(target)))
        return make_policy(policy, stage=first, growth=growth, variant=variant, threshold=threshold,
                           curves=lambda m: benchmark_curves(cube, m, exclude=target),
                           recall=recall(cube, target) if recall is not None else None)

    return make


def recall_phase(
    matrix: PerformanceMatrix, cube: CurveCube, target: str, proxy_table, *, k: int, proxy_method: str | None = None,
    normaliser: str = "auto", recall_config: RecallConfig | None = None,
) -> Callable[[list[str]], tuple[list[str], float]]:
    """Phase 1 for the two-phase policy, charged the proxy cost of the models it scores.

    The proxy file's `cost` is charged where present; otherwise half of one training step of that model
    on the target (the paper's accounting).
    """
    from hf_twophase.method.phase1 import Phase1, proxy_lookup
    from hf_twophase.method.recall import normaliser_for

    def shortlist(candidates: list[str]) -> tuple[list[str], float]:
        phase1 = Phase1.from_matrix(matrix, target=target, candidates=candidates, recall=recall_config)
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
    stage: int | None = None,
    growth: float | None = None,
    budget: int | None = None,
    threshold: float | None = None,
    variant: str = "calibrated",
    proxy_table=None,
    k: int = 10,
    proxy_method: str | None = None,
    cube: CurveCube | None = None,
    recall_config: RecallConfig | None = None,
) -> list[ReplayRun]:
    """Replay `policy` on every target (default: every dataset of the matrix, each in turn); the two-phase policy
    recalls with ``recall_config`` (default: the robust prior). ``stage`` None: the main job's quarter stages."""
    cube = cube or CurveCube(matrix)
    targets = list(targets) if targets else list(cube.datasets)
    recall = None
    if proxy_table is not None:
        def recall(cube: CurveCube, target: str) -> Callable[[list[str]], tuple[list[str], float]]:
            return recall_phase(matrix, cube, target, proxy_table, k=k, proxy_method=proxy_method,
                                recall_config=recall_config)
    make = policy_factory(policy, stage=stage, budget=budget, growth=growth, threshold=threshold, variant=variant,
                          recall=recall)
    return [replay_target(cube, target, make, budget=budget) for target in targets]
