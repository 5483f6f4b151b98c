"""One place that turns a policy name into a policy, for every entry point: replay, live selection, the coordinator
and the command line. A benchmark that replays "fine-selection" therefore measures the very object a live run uses,
and the same budget gets the same stage schedule from Python and from the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from hf_twophase.errors import SelectionError
from hf_twophase.method.curve_model import CurveModelHalving
from hf_twophase.method.policies import (
    BruteForce,
    CalibratedHalving,
    FineSelection,
    SelectionPolicy,
    StageSchedule,
    SuccessiveHalving,
    TwoPhase,
)
from hf_twophase.method.trends import BenchmarkCurves, GainTrendPredictor, PaperTrendPredictor

POLICY_NAMES = ("fine-selection", "successive-halving", "brute-force")  # the policies a live selection runs
REPLAY_POLICY_NAMES = (*POLICY_NAMES, "two-phase")  # replay also simulates phase 1 before fine selection
VARIANTS = ("calibrated", "curve-model", "improved", "paper")  # the first is the default (chosen by cross-validation)
DEFAULT_VARIANT = VARIANTS[0]
STAGES_PER_BUDGET = 4  # a budget is cut into four stages unless told otherwise (the main job's schedule)


def default_stage(budget: int) -> int:
    """Steps in the first stage when the user gives none."""
    if budget < 1:
        raise SelectionError(f"the budget must be at least 1 step, got {budget}")
    return max(1, budget // STAGES_PER_BUDGET)


def make_fine_selection(
    curves: Mapping[str, BenchmarkCurves] | Callable[[str], BenchmarkCurves | None],
    variant: str = "calibrated",
    *,
    threshold: float | None = None,
    stage: int = 1,
    growth: float | None = None,
) -> SelectionPolicy:
    """Named presets: "calibrated" is the default, "paper" is Algorithm 1 as published, "improved" trades speed for
    regret.

    "calibrated" (``CalibratedHalving``) halves by validation score and cuts deeper only where the benchmarks'
    curves say the early ranking was already right; its constants (every benchmark, from 6% of training) were
    chosen by 3-fold cross-validation over datasets, where it was no worse than successive halving at any stage
    setting (docs/benchmarks.md).

    "curve-model" (``CurveModelHalving``) halves by validation score, cuts deeper where the predicted final scores
    (curve fits to the target's points combined with the benchmarks' gains) are apart, and lets the cut to a single
    candidate wait until they are. Held out it loses less than halving at the same speed for first stages up to a
    tenth of training; at a quarter, the main job's schedule, it ties with "calibrated" (docs/benchmarks.md).

    "improved" predicts with the gain-based trend (median gain of the nearest benchmarks) and trend-prunes
    only when the rival's pessimistic prediction beats the candidate's optimistic one, each bound two
    leave-one-benchmark-out errors from the prediction, so a noisy trend cannot wipe out the field;
    halving stays by val. The one irreversible cut, from two or more candidates to a single one,
    waits while the runner-up's paper trend (Eq. 5-6) predicts it finishes above the leader. It spends more than
    successive halving at the same stage setting for a lower regret.
    """
    schedule = StageSchedule(stage, 1.0 if growth is None else growth)
    threshold = 0.0 if threshold is None else threshold
    if variant == "calibrated":
        return CalibratedHalving(curves, schedule=schedule)
    if variant == "curve-model":
        return CurveModelHalving(curves, schedule=schedule)
    if variant == "paper":
        return FineSelection(curves, predictor=PaperTrendPredictor(), threshold=threshold, schedule=schedule)
    if variant == "improved":
        return FineSelection(curves, predictor=GainTrendPredictor(), threshold=threshold, schedule=schedule,
                             bound="interval", runner_up_guard=PaperTrendPredictor())
    raise ValueError(f"unknown fine-selection variant {variant!r}; expected 'calibrated', 'curve-model', 'paper' or "
                     "'improved'")


def make_policy(
    name: str,
    *,
    stage: int,
    growth: float | None = None,
    curves: Mapping[str, BenchmarkCurves] | Callable[[str], BenchmarkCurves | None] | None = None,
    variant: str = DEFAULT_VARIANT,
    threshold: float | None = None,
    recall: Callable[[list[str]], tuple[list[str], float]] | None = None,
) -> SelectionPolicy:
    """The policy called ``name``. Fine selection reads each candidate's benchmark curves from ``curves`` (a
    candidate without curves is judged by its validation score alone); two-phase also needs the phase-1 ``recall``
    function that shortlists candidates."""
    if name not in REPLAY_POLICY_NAMES:
        raise SelectionError(f"unknown policy {name!r}; expected one of {', '.join(REPLAY_POLICY_NAMES)}")
    if variant not in VARIANTS:
        raise SelectionError(f"unknown fine-selection variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    if name == "brute-force":
        return BruteForce()
    if name == "successive-halving":
        return SuccessiveHalving(StageSchedule(stage, 1.0 if growth is None else growth))
    fine = make_fine_selection(curves if curves is not None else {}, variant, threshold=threshold, stage=stage,
                               growth=growth)
    if name == "fine-selection":
        return fine
    if recall is None:
        raise SelectionError("the two-phase policy needs proxy scores for its recall: pass --proxy FILE")
    return TwoPhase(recall, fine)
