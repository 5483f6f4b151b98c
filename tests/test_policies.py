import json
import math

import numpy as np
import pytest

from hf_twophase import (
    BruteForce,
    FineSelection,
    SelectionError,
    StageSchedule,
    StageScheduler,
    SuccessiveHalving,
    TwoPhase,
)
from hf_twophase.method.policies import CalibratedHalving
from hf_twophase.method.scheduler import play
from hf_twophase.method.trends import BenchmarkCurves, Prediction


class FixedPredictor:
    """Predicts a fixed final score per candidate, whatever the step: to make each rule fire by hand."""

    name = "fixed"

    def __init__(self, table):
        self.table = table

    def predict(self, curves, step, target_val):
        v = self.table.get(curves.benchmarks[0])
        return None if v is None else Prediction(v, 5, target_val)


def _fs(preds, threshold=0.0, stage=1):
    curves = {c: BenchmarkCurves((c,), np.zeros((1, 1)), np.zeros(1)) for c in preds}
    return FineSelection(curves, predictor=FixedPredictor(preds), threshold=threshold, schedule=StageSchedule(stage))


def _reasons(decisions):
    return {d.candidate: d.reason for d in decisions}


def test_trend_prune_fires():
    # worst-by-val 'a' is predicted far below 'b', which has a better val: pruned by the trend
    policy = _fs({"a": 0.5, "b": 0.9, "c": 0.6, "d": 0.95})
    out = policy.prune(1, ["a", "b", "c", "d"], {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4})
    r = _reasons(out)
    assert r["a"] == "trend-pruned" and r["b"] == "trend-pruned" and r["c"] == "trend-pruned"
    assert "d" not in r  # the best val is never trend-pruned
    a = next(d for d in out if d.candidate == "a")
    assert a.competitor == "d" and a.competitor_predicted == pytest.approx(0.95) and a.predicted == 0.5


def test_threshold_holds_a_close_competitor():
    preds = {"a": 0.90, "b": 0.905, "c": 0.5, "d": 0.4}
    vals = {"c": 0.1, "d": 0.2, "a": 0.3, "b": 0.4}
    assert "a" in _reasons(_fs(preds, threshold=0.0).prune(1, list(vals), vals))
    held = _reasons(_fs(preds, threshold=0.01).prune(1, list(vals), vals))
    assert "a" not in held and held["c"] == "trend-pruned"  # within the threshold: kept


def test_runner_up_guard_holds_the_last_cut_while_its_trend_predicts_higher():
    # three left, so halving would keep one; the guard's trend says the runner-up 'b' ends above leader 'c'
    vals = {"a": 0.1, "b": 0.7, "c": 0.72}
    curves = {c: BenchmarkCurves((c,), np.zeros((1, 1)), np.zeros(1)) for c in vals}

    def policy(guard_table):
        guard = FixedPredictor(guard_table) if guard_table else None
        return FineSelection(curves, predictor=FixedPredictor({}), schedule=StageSchedule(1),
                             runner_up_guard=guard)

    plain = _reasons(policy(None).prune(1, list(vals), vals))
    assert plain == {"a": "halved", "b": "halved"}  # the paper's floor: floor(3 / 2) = 1 survivor
    held = policy({"a": 0.5, "b": 0.8, "c": 0.75}).prune(1, list(vals), vals)
    assert _reasons(held) == {"a": "halved"}  # b kept with c: the cut to one waits
    assert "b kept as runner-up" in held[0].note and "0.8000" in held[0].note
    cut = policy({"a": 0.5, "b": 0.7, "c": 0.75}).prune(1, list(vals), vals)
    assert _reasons(cut) == {"a": "halved", "b": "halved"}  # trend agrees with val: cut to one now
    # the guard only protects the single-survivor cut: with 4 alive, two go as usual
    four = {"a": 0.1, "d": 0.2, "b": 0.7, "c": 0.72}
    curves.update({"d": BenchmarkCurves(("d",), np.zeros((1, 1)), np.zeros(1))})
    assert _reasons(policy({"a": 0.5, "d": 0.99, "b": 0.8, "c": 0.75}).prune(1, list(four), four)) == {
        "a": "halved", "d": "halved"}


def test_halving_floor_removes_worst_by_val():
    # no prediction beats anyone: only halving acts, keeping floor(5 / 2) = 2
    preds = {c: 0.5 for c in "abcde"}
    vals = {"a": 0.1, "b": 0.5, "c": 0.3, "d": 0.4, "e": 0.2}
    out = _fs(preds).prune(1, list(vals), vals)
    assert _reasons(out) == {"a": "halved", "e": "halved", "c": "halved"}


def test_no_prediction_is_judged_by_val_alone():
    preds = {"a": None, "b": 0.9, "c": 0.1}
    vals = {"a": 0.1, "c": 0.2, "b": 0.3}
    out = _fs(preds).prune(1, list(vals), vals)
    r = _reasons(out)
    assert r["c"] == "trend-pruned" and r["a"] == "halved"
    assert "no prediction" in next(d for d in out if d.candidate == "a").note


def observe(run: StageScheduler, vals: dict) -> list[dict]:
    """Every alive candidate reports the next stage end; the scheduler decides it."""
    step = run.next_step()
    for c, v in vals.items():
        run.report(c, step, v)
    return run.decide()


def test_single_survivor_wins_and_trains_to_budget():
    run = StageScheduler(_fs({"a": 0.2, "b": 0.9}), ["a", "b"], budget=5)
    assert run.next_step() == 1
    observe(run, {"a": 0.1, "b": 0.2})
    assert run.winner == "b" and run.next_step() is None
    assert run.decisions[-1].reason == "last-standing"
    assert run.answer("b", 2).go_on and run.answer("b", 2).reason == "winner"  # trains on to the budget
    assert run.decide() == []  # nothing left to decide


def _sh_cost(n, stage, growth, budget):
    """Steps trained by successive halving over n candidates whose val is their index (a deterministic race)."""
    names = [f"m{i}" for i in range(n)]
    run = StageScheduler(SuccessiveHalving(StageSchedule(stage, growth)), names, budget)
    reached = play(run, lambda c, step: float(c[1:]))
    return sum(reached.values()), run.winner


@pytest.mark.parametrize("n,stage", [(8, 1), (16, 3), (4, 2)])
def test_successive_halving_cost_is_m_s_log2m(n, stage):
    # classic SH (each stage twice as long) on a power of two, budget at the last stage: |M| s log2|M|
    budget = stage * (n - 1)
    cost, winner = _sh_cost(n, stage, 2.0, budget)
    assert cost == n * stage * math.log2(n) and winner == f"m{n - 1}"


@pytest.mark.parametrize("n,budget,expected", [(10, 5, 19), (40, 5, 77), (30, 4, 55)])
def test_successive_halving_matches_the_papers_epoch_counts(n, budget, expected):
    # Table V of the paper: fixed one-epoch stages, floor halving, winner trained to the budget
    assert _sh_cost(n, 1, 1.0, budget)[0] == expected


def test_brute_force_trains_everyone_to_the_budget():
    run = StageScheduler(BruteForce(), ["a", "b", "c"], budget=4)
    assert run.next_step() == 4
    observe(run, {"a": 0.3, "b": 0.5, "c": 0.4})
    assert run.winner == "b" and _reasons(run.decisions)["a"] == "lower-at-budget"


def test_schedule_and_faults():
    assert StageSchedule(1, 2.0).ends(20) == [1, 3, 7, 15, 20]
    assert StageSchedule(5).ends(12) == [5, 10, 12]
    with pytest.raises(ValueError):
        StageSchedule(0)
    run = StageScheduler(SuccessiveHalving(), ["a", "b", "c"], budget=3)
    observe(run, {"a": 0.1, "b": float("nan"), "c": 0.2})  # b failed: dropped with its reason
    assert _reasons(run.decisions)["b"] == "no score" and run.winner == "c"
    with pytest.raises(SelectionError, match="no candidates"):
        StageScheduler(SuccessiveHalving(), [], budget=3)


def test_state_round_trip_resumes_the_same_selection():
    names = [f"m{i}" for i in range(6)]
    a = StageScheduler(SuccessiveHalving(), names, budget=5)
    observe(a, {c: float(c[1:]) for c in a.alive})
    b = StageScheduler(SuccessiveHalving(), names, budget=5)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.alive == a.alive and b.decided == [1]
    for run in (a, b):
        while not run.done:
            observe(run, {c: float(c[1:]) for c in run.alive})
    assert a.winner == b.winner and [d.to_dict() for d in a.decisions] == [d.to_dict() for d in b.decisions]


def test_two_phase_records_who_was_not_recalled_and_charges_the_proxy():
    calls = []

    def recall(candidates):
        calls.append(list(candidates))
        return ["c", "a"], 2.5

    policy = TwoPhase(recall, SuccessiveHalving())
    run = StageScheduler(policy, ["a", "b", "c", "d"], budget=2, shortlist=True)
    assert run.alive == ["a", "c"] and run.shortlist_cost == 2.5
    assert _reasons(run.decisions) == {"b": "coarse recall", "d": "coarse recall"}
    state = json.loads(json.dumps(run.state_dict()))
    resumed = StageScheduler(policy, ["a", "b", "c", "d"], budget=2)
    resumed.load_state_dict(state)
    assert len(calls) == 1 and resumed.alive == ["a", "c"] and resumed.shortlist_cost == 2.5  # no second recall
    assert not resumed.answer("b", 1).go_on
    observe(run, {"a": 0.2, "c": 0.4})
    assert run.winner == "c"


def _agreeing_curves(n_models: int, agree: bool, steps: int = 20):
    """Benchmark curves of n models on 3 benchmarks: model 0 ends best everywhere; with ``agree`` it also leads from
    the first step, otherwise it starts last."""
    curves = {}
    for i in range(n_models):
        final = 0.9 - 0.05 * i
        start = (0.5 - 0.02 * i) if agree or i else 0.1
        val = np.array([[start + (final - start) * t / steps for t in range(1, steps + 1)]] * 3)
        curves[f"m{i}"] = BenchmarkCurves(benchmarks=("b1", "b2", "b3"), val=val, final=np.full(3, final))
    return curves


def test_calibrated_halving_cuts_deeper_only_when_every_benchmark_agrees_and_never_early():
    alive = [f"m{i}" for i in range(8)]
    vals = {c: 0.5 - 0.01 * i for i, c in enumerate(alive)}
    agreeing = CalibratedHalving(_agreeing_curves(8, agree=True), schedule=StageSchedule(2), min_fraction=0.1)
    assert len(agreeing.prune(1, alive, vals)) == 4  # 5% of training: plain halving, however sure the benchmarks
    deep = agreeing.prune(4, alive, vals)
    assert len(deep) == 7 and "every benchmark" in deep[0].note  # the eventual best led on every benchmark
    late_winner = CalibratedHalving(_agreeing_curves(8, agree=False), schedule=StageSchedule(2), min_fraction=0.1)
    assert len(late_winner.prune(4, alive, vals)) == 4  # never keeps more than halving would
    assert CalibratedHalving({}, schedule=StageSchedule(2)).prune(4, alive, vals)[0].reason == "halved"
    assert agreeing.prune(20, alive, vals, final=True) == []
