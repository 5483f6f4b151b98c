"""One place that turns a policy name into a policy, for every entry point: replay, live selection, the coordinator
and the command line. A benchmark that replays "fine-selection" therefore measures the very object a live run uses,
and the same budget gets the same stage schedule from Python and from the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from hf_twophase.errors import SelectionError
from hf_twophase.method.policies import (
    BruteForce,
    SelectionPolicy,
    StageSchedule,
    SuccessiveHalving,
    TwoPhase,
    make_fine_selection,
)
from hf_twophase.method.trends import BenchmarkCurves

POLICY_NAMES = ("fine-selection", "successive-halving", "brute-force")  # the policies a live selection runs
REPLAY_POLICY_NAMES = (*POLICY_NAMES, "two-phase")  # replay also simulates phase 1 before fine selection
VARIANTS = ("calibrated", "improved", "paper")  # the first is the default (chosen by cross-validation)
DEFAULT_VARIANT = VARIANTS[0]
STAGES_PER_BUDGET = 4  # a budget is cut into four stages unless told otherwise (the main job's schedule)


def default_stage(budget: int) -> int:
    """Steps in the first stage when the user gives none."""
    if budget < 1:
        raise SelectionError(f"the budget must be at least 1 step, got {budget}")
    return max(1, budget // STAGES_PER_BUDGET)


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
