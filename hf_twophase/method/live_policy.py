"""The policy of a live selection, built from the performance matrix: trends indexed by the fraction of training.

Why a fraction: the benchmark curves were recorded at the matrix builder's evaluation points (say 6 per run), while a
live selection stops at its own stage ends (say step 40 of a 200-step budget). A live step is matched to the curve
point at the same fraction of the training budget, so "20% of the way" means the same thing on both sides.
Pure: no transformers import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from hf_twophase.errors import SelectionError
from hf_twophase.method.policies import SelectionPolicy
from hf_twophase.method.registry import make_policy
from hf_twophase.method.trends import benchmark_curves
from hf_twophase.records.curves import CurveCube
from hf_twophase.records.matrix import PerformanceMatrix


def fraction_curve_step(budget: int, curve_length: int):
    """Map a live step (1..budget) to a curve index (1..curve_length) at the same fraction of training."""
    if budget < 1 or curve_length < 1:
        raise SelectionError(f"budget and curve length must be >= 1, got {budget} and {curve_length}")

    def curve_step(step: int) -> int:
        return int(min(curve_length, max(1, round(step * curve_length / budget))))

    return curve_step


NO_CURVES = "no benchmark curves: pruning by validation score"


def has_benchmark_curves(matrix: PerformanceMatrix | None, candidates: Iterable[str]) -> bool:
    """Whether some candidate has a learning curve (more than one point) on some benchmark: a matrix of final scores
    only (the published ones) gives fine selection no trend to extrapolate."""
    if matrix is None:
        return False
    records = matrix.records[matrix.records["model"].isin(set(candidates))]
    return bool(len(records)) and int(records.groupby(["model", "dataset"])["step"].nunique().max()) > 1


def live_policy(
    name: str,
    *,
    budget: int,
    stage_steps: int,
    growth: float = 1.0,
    matrix: PerformanceMatrix | None = None,
    candidates: Iterable[str] = (),
    variant: str = "calibrated",
    threshold: float | None = None,
    exclude: str | None = None,
    curves_of: Callable[[str], str | None] | None = None,
) -> SelectionPolicy:
    """The policy a live selection runs, from the shared factory. Fine selection reads each candidate's curves from
    ``matrix`` (all benchmarks but ``exclude``); a candidate the matrix does not know is judged by its validation
    score alone. When no candidate has a curve, fine selection falls back to successive halving, and the policy's
    ``note`` says so. ``curves_of`` names the matrix model whose curves stand for a selection's candidate, when
    candidates are not models themselves (a hyper-parameter search's trials, each fine-tuning one of ``candidates``
    with its own settings)."""
    if name == "fine-selection" and matrix is None:
        raise SelectionError("fine selection needs a performance matrix for its convergence trends")
    if name != "fine-selection":
        return make_policy(name, stage=stage_steps, growth=growth, variant=variant, threshold=threshold)
    if not has_benchmark_curves(matrix, candidates):  # trends from one point would be noise: halve by val instead
        policy = make_policy("successive-halving", stage=stage_steps, growth=growth)
        policy.note = NO_CURVES
        return policy
    known = set(matrix.models)
    wanted = [c for c in candidates if c in known]
    cube = CurveCube(matrix.subset(models=wanted)) if wanted else None
    curves = {m: benchmark_curves(cube, m, exclude=exclude or "") for m in wanted} if cube else {}
    by_model = {m: c for m, c in curves.items() if c is not None}
    if curves_of is not None:
        def lookup(candidate: str):
            return by_model.get(curves_of(candidate))

    policy = make_policy(name, stage=stage_steps, growth=growth, variant=variant, threshold=threshold,
                         curves=by_model if curves_of is None else lookup)
    policy.curve_step = fraction_curve_step(budget, cube.max_step if cube else 1)
    return policy
