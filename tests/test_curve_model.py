"""Phase 2 on predicted final scores: the curve fits, the pruning rule and the scheduler's points."""

from __future__ import annotations

import numpy as np
import pytest

from hf_twophase import PerformanceMatrix
from hf_twophase.errors import SelectionError
from hf_twophase.method.curve_model import CurveModelConfig, CurveModelHalving, combine, fit_curve_ensemble
from hf_twophase.method.policies import Progress, SelectionPolicy, StageSchedule, SuccessiveHalving
from hf_twophase.method.registry import make_policy
from hf_twophase.method.replay import replay
from hf_twophase.method.scheduler import StageScheduler, play
from hf_twophase.method.trends import BenchmarkCurves


def test_a_saturating_curve_is_extrapolated_to_the_budget():
    steps = np.arange(1, 9)
    truth = 0.9 - 0.5 * steps ** -0.7
    final = 0.9 - 0.5 * 50 ** -0.7
    assert fit_curve_ensemble(steps, truth, budget=50, families=["pow3"]).value == pytest.approx(final, abs=1e-6)
    estimate = fit_curve_ensemble(steps, truth, budget=50)  # the families disagree: the error says by how much
    assert abs(estimate.value - final) <= estimate.error and estimate.value > truth[-1]
    assert fit_curve_ensemble(steps[:2], truth[:2], budget=50) is None  # two points fit no three-parameter family
    assert fit_curve_ensemble([1, 2, 3], [np.nan, 0.5, 0.6], budget=50) is None  # non-finite points are dropped
    flat = fit_curve_ensemble([1, 2, 3, 4], [0.5, 0.5, 0.5, 0.5], budget=50)
    assert flat is not None and flat.value == pytest.approx(0.5, abs=1e-3)


def test_estimates_combine_by_inverse_variance():
    from hf_twophase.method.curve_model import FinalEstimate

    both = combine([FinalEstimate(0.8, 0.01, "a"), FinalEstimate(0.6, 0.1, "b")])
    assert 0.79 < both.value < 0.8 and both.error < 0.01
    assert combine([]) is None


def _curves(gain: float, n: int = 6, length: int = 10, noise: float = 0.0) -> BenchmarkCurves:
    """A candidate that gains ``gain`` from any point to the end on every benchmark, up to ``noise``."""
    rng = np.random.default_rng(int(gain * 1000) + n)
    start = np.linspace(0.3, 0.6, n)
    val = np.stack([np.linspace(s, s + gain, length) for s in start]) + noise * rng.standard_normal((n, length))
    return BenchmarkCurves(benchmarks=tuple(f"b{i}" for i in range(n)), val=val, final=val[:, -1] + gain * 0)


def test_predictions_far_apart_cut_deeper_than_halving():
    alive = ["a", "b", "c", "d", "e", "f"]
    vals = {"a": 0.50, "b": 0.51, "c": 0.52, "d": 0.53, "e": 0.54, "f": 0.55}
    # everyone ends where they stand, except "f", which gains 0.2: the others cannot catch up with it
    curves = {c: _curves(0.2 if c == "f" else 0.0, noise=0.001) for c in alive}
    policy = CurveModelHalving(curves, schedule=StageSchedule(2), config=CurveModelConfig(sources="prior"))
    pruned = {d.candidate for d in policy.prune(2, alive, vals, progress=Progress(budget=10, points={}))}
    assert pruned == {"a", "b", "c", "d", "e"}  # halving would keep three
    halving = {d.candidate for d in SuccessiveHalving(StageSchedule(2)).prune(2, alive, vals)}
    assert halving == {"a", "b", "c"}
    # close predictions: halving's cut, by validation score
    close = CurveModelHalving({c: _curves(0.05, noise=0.05) for c in alive}, config=CurveModelConfig(sources="prior"))
    assert {d.candidate for d in close.prune(2, alive, vals, progress=Progress(10, {}))} == halving


@pytest.mark.parametrize("rule, waits", [("halve", False), ("wait-if-close", False), ("wait-unless-apart", True)])
def test_the_last_cut_without_predictions(rule, waits):
    policy = CurveModelHalving({}, config=CurveModelConfig(last_cut=rule))
    out = policy.prune(2, ["a", "b"], {"a": 0.5, "b": 0.6}, progress=Progress(10, {}))
    assert len(out) == (0 if waits else 1)


def test_the_last_cut_waits_while_the_runner_up_may_still_win():
    vals = {"a": 0.50, "b": 0.52}
    close = {c: _curves(0.05, noise=0.03) for c in vals}
    for rule in ("wait-if-close", "wait-unless-apart"):
        policy = CurveModelHalving(close, config=CurveModelConfig(sources="prior", last_cut=rule))
        assert policy.prune(2, list(vals), vals, progress=Progress(10, {})) == []
    cut = CurveModelHalving(close, config=CurveModelConfig(sources="prior", last_cut="halve"))
    assert [d.candidate for d in cut.prune(2, list(vals), vals, progress=Progress(10, {}))] == ["a"]
    apart = {"a": _curves(0.0, noise=0.001), "b": _curves(0.3, noise=0.001)}
    policy = CurveModelHalving(apart, config=CurveModelConfig(sources="prior"))
    assert [d.candidate for d in policy.prune(2, list(vals), vals, progress=Progress(10, {}))] == ["a"]


def test_a_runner_up_the_last_cut_waited_for_says_so_when_it_stops():
    """Without predictions the cut to one candidate waits: the runner-up's own decision, at the budget, records
    that wait, so the report can say why the job trained more than halving would have."""
    policy = CurveModelHalving({}, schedule=StageSchedule(2),  # no benchmark curves: never a prediction
                               config=CurveModelConfig(sources="prior", last_cut="wait-unless-apart"))
    run = StageScheduler(policy, ["a", "b", "c"], budget=6)
    play(run, lambda c, step: step / 10 + {"a": 0.0, "b": 0.2, "c": 0.1}[c])
    by_candidate = {d.candidate: d for d in run.decisions}
    assert run.winner == "b" and by_candidate["b"].reason == "best-at-budget"
    assert by_candidate["a"].step == 2 and "runner-up" in by_candidate["a"].note  # c was kept beside b at step 2
    runner_up = by_candidate["c"]
    assert (runner_up.step, runner_up.reason) == (6, "lower-at-budget")
    assert "kept as runner-up since step 2" in runner_up.note  # the cut waited at 2 and at 4
    # halving would have left two (four entered the last stage): nothing waited, nothing to say
    four = Progress(6, {c: [(4, 0.5)] for c in "abcd"})
    assert policy.prune(6, ["a", "b"], {"a": 0.5, "b": 0.6}, final=True, progress=four) == []
    halve = CurveModelHalving({}, config=CurveModelConfig(last_cut="halve"))
    assert halve.waited_since(6, ["a", "b"], Progress(6, {c: [(4, 0.5)] for c in "ab"})) is None
    # four entered stage 2 (halving kept two), two entered 4 and waited: the wait began at 4
    history = Progress(8, {"a": [(2, 0.1), (4, 0.2)], "b": [(2, 0.3), (4, 0.4)], "c": [(2, 0.0)], "d": [(2, 0.0)]})
    assert policy.waited_since(6, ["a", "b"], history) == 4


class _Recorder(SelectionPolicy):
    uses_progress = True

    def __init__(self):
        super().__init__(StageSchedule(2))
        self.seen: list[Progress] = []

    def prune(self, step, alive, vals, final=False, progress=None):
        self.seen.append(progress)
        return []


def test_the_scheduler_hands_every_point_so_far_to_a_policy_that_models_curves():
    recorder = _Recorder()
    run = StageScheduler(recorder, ["a", "b"], budget=6)
    play(run, lambda c, step: step / 10 + (0.5 if c == "b" else 0.0))
    assert [p.budget for p in recorder.seen] == [6, 6, 6]
    assert recorder.seen[1].points == {"a": [(2, 0.2), (4, 0.4)], "b": [(2, 0.7), (4, 0.9)]}
    asynchronous = _Recorder()
    run = StageScheduler(asynchronous, [], budget=6, mode="async")
    run.enroll("a")
    run.report("a", 2, 0.3)
    assert run.answer("a", 2).go_on and asynchronous.seen[-1].points == {"a": [(2, 0.3)]}


def test_the_variant_is_registered_and_replays_from_the_command_line_factory():
    policy = make_policy("fine-selection", stage=2, variant="curve-model")
    assert isinstance(policy, CurveModelHalving) and policy.describe()["variant"] == "curve-model"
    with pytest.raises(SelectionError, match="curve-model"):
        make_policy("fine-selection", stage=2, variant="curve-models")
    from hf_twophase.records.synthetic import synthetic_records

    runs = replay(PerformanceMatrix(synthetic_records(12, 4, n_families=3, steps=8, seed=2)), "fine-selection",
                  variant="curve-model", stage=2)
    assert len(runs) == 4 and all(r.speedup >= 1.0 for r in runs)


@pytest.mark.parametrize("bad", [dict(sources="mine"), dict(z=0.0), dict(z=float("nan")), dict(last_cut="never")])
def test_config_refuses_bad_values(bad):
    with pytest.raises(ValueError):
        CurveModelConfig(**bad)
