"""The report puts the winner's score next to what makes it meaningful."""

from __future__ import annotations

from hf_twophase.trainer.report import CandidateReport, SelectionReport


def _report(winner_curve: dict[int, float], baseline: float | None = 0.5) -> SelectionReport:
    candidates = [
        CandidateReport(name="org/winner", status="winner", reason="best-at-budget", note="", curve=winner_curve,
                        steps_trained=8, seconds=1.0, stopped_at=None),
        CandidateReport(name="/deep/cache/models/other", status="pruned", reason="halved", note="",
                        curve={4: 0.62}, steps_trained=4, seconds=1.0, stopped_at=4),
        CandidateReport(name="org/left-out", status="not-recalled", reason="", note="", curve={}, steps_trained=0,
                        seconds=0.0, stopped_at=None),
    ]
    extra = {} if baseline is None else {"majority_baseline": baseline}
    return SelectionReport(candidates=candidates, winner="org/winner", budget=8, stage_ends=[4, 8],
                           metric="eval_accuracy", policy={"policy": "fine-selection"},
                           winner_score=max(winner_curve.values()), extra=extra)


def test_the_winner_comes_with_the_majority_class_and_the_best_other_candidate():
    lines = _report({4: 0.70, 8: 0.705}).context()
    assert lines[0] == "majority class alone: eval_accuracy 0.5000"
    assert lines[1] == "best other candidate: other, eval_accuracy 0.6200 at step 4"  # by its folder's name
    assert len(lines) == 2  # half a point over the last stage: no advice
    assert "- majority class alone" in _report({4: 0.70, 8: 0.705}).to_markdown()


def test_a_winner_still_rising_suggests_a_larger_budget():
    lines = _report({4: 0.55, 8: 0.70}, baseline=None).context()
    assert not any("majority" in line for line in lines)
    assert lines[-1].startswith("the winner's eval_accuracy still rose 15.0 points") and "--budget 16" in lines[-1]
