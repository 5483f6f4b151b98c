"""Phase 2 on predicted final scores: fit learning-curve families to what a candidate has shown so far, combine them
with its curves on the benchmarks, and prune whoever cannot catch up.

Why: halving keeps half at every cut however clear the race already is, and its cut to a single candidate is
final however close the two finalists are. Where predicted final scores are well apart it can cut deeper; where the
finalists' predictions overlap, the last cut can wait. (Ranking by the predictions themselves, to keep slow starters,
lost more on recorded curves than ranking by the current score, so halving's order stays.) Two sources, each with
its own error:

- the candidate's own points on the target: an ensemble of parametric curve families (a saturating power law, an
  exponential approach, a log-linear trend) fitted with scipy and extrapolated to the budget; the spread of the
  families and the fit's residuals are its error (in the style of DPL's ensembles);
- the matrix prior: the gain the candidate made from the same fraction of training to the end on its benchmarks
  (`GainTrendPredictor`), with its leave-one-benchmark-out error.

They are averaged by inverse variance. Halving by validation score stays the rule; the predictions only cut deeper
(a candidate whose optimistic bound is below another's pessimistic bound goes, even from the better half) and hold
the one cut that cannot be undone, to a single candidate, while the runner-up may still finish first. Its settings
were chosen by cross-validation over datasets (``benchmarks/curve_model_cv.py``). Pure: numpy and scipy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hf_twophase.method.policies import Decision, Progress, SelectionPolicy, StageSchedule, _by_val, _val
from hf_twophase.method.trends import BenchmarkCurves, GainTrendPredictor

LAST_CUT_RULES = ("halve", "wait-if-close", "wait-unless-apart")
MIN_POINTS = 3  # a three-parameter family needs three points before its extrapolation says anything


def _pow3(t, c, a, alpha):
    return c - a * np.power(t, -alpha)


def _exp3(t, c, a, rate):
    return c - a * np.exp(-rate * t)


def _log2(t, a, b):
    return a + b * np.log(t)


# name -> (function, initial guess from (t, y), bounds); the guesses put each family near the data it sees
FAMILIES: dict[str, tuple[Callable, Callable, tuple]] = {
    "pow3": (_pow3, lambda t, y: (y[-1] + 0.05, max(y[-1] - y[0], 1e-3) * 2, 0.5),
             ([-np.inf, -np.inf, 1e-3], [np.inf, np.inf, 5.0])),
    "exp3": (_exp3, lambda t, y: (y[-1] + 0.05, max(y[-1] - y[0], 1e-3) * 2, 1.0 / max(t[-1], 1.0)),
             ([-np.inf, -np.inf, 1e-6], [np.inf, np.inf, 10.0])),
    "log2": (_log2, lambda t, y: (y[0], (y[-1] - y[0]) / max(np.log(t[-1] / t[0]), 1e-9)), (-np.inf, np.inf)),
}


@dataclass(frozen=True)
class FinalEstimate:
    """A predicted final score and its standard error, with the sources it came from (for the decision record)."""

    value: float
    error: float
    sources: str


def fit_curve_ensemble(steps: Sequence[float], values: Sequence[float], budget: float,
                       families: Sequence[str] = tuple(FAMILIES)) -> FinalEstimate | None:
    """Each family fitted to the points and evaluated at ``budget``; the estimate is their mean, its error the spread
    of the families and the worst fit's residual. None with fewer than ``MIN_POINTS`` points or no family fitting."""
    from scipy.optimize import curve_fit

    t = np.asarray(steps, dtype=float)
    y = np.asarray(values, dtype=float)
    keep = np.isfinite(t) & np.isfinite(y) & (t > 0)
    t, y = t[keep], y[keep]
    if len(t) < MIN_POINTS:
        return None
    span = max(float(np.ptp(y)), 1e-3)
    finals, residuals = [], []
    for name in families:
        function, guess, bounds = FAMILIES[name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                params, _ = curve_fit(function, t, y, p0=guess(t, y), bounds=bounds, maxfev=2000)
            except (RuntimeError, ValueError):
                continue
        final = float(function(budget, *params))
        # an extrapolation further from the last point than the whole observed climb, times the remaining
        # length of training, is a fit that ran away
        reach = span * max(1.0, budget / t[-1])
        if not math.isfinite(final) or abs(final - y[-1]) > reach:
            continue
        finals.append(final)
        residuals.append(float(np.sqrt(np.mean(np.square(function(t, *params) - y)))))
    if not finals:
        return None
    spread = float(np.std(finals)) if len(finals) > 1 else span
    return FinalEstimate(float(np.mean(finals)), max(spread, max(residuals), 1e-6), f"{len(finals)} curve fit(s)")


def combine(estimates: Sequence[FinalEstimate]) -> FinalEstimate | None:
    """Inverse-variance mean of independent estimates."""
    if not estimates:
        return None
    weights = np.array([1.0 / e.error ** 2 for e in estimates])
    value = float(np.dot(weights, [e.value for e in estimates]) / weights.sum())
    return FinalEstimate(value, float(1.0 / math.sqrt(weights.sum())), " + ".join(e.sources for e in estimates))


@dataclass
class CurveModelConfig:
    """How the curve-model policy predicts and prunes. The defaults are the setting the cross-validation protocol of
    ``benchmarks/curve_model_cv.py`` chooses on every recorded target (one setting for every stage length)."""

    sources: str = field(default="both", metadata={"help": "'own' (fits to the target's points), 'prior' (the "
                                                           "matrix's benchmark curves) or 'both'."})
    z: float = field(default=1.0, metadata={"help": "Bounds at this many standard errors around each prediction."})
    last_cut: str = field(default="wait-unless-apart", metadata={
        "help": "The cut to a single candidate, which cannot be undone: 'halve' (as any other cut), 'wait-if-close' "
                "(the runner-up stays while both have predictions and its optimistic one reaches the leader's "
                "pessimistic one) or 'wait-unless-apart' (the runner-up stays unless both have predictions and "
                "they are apart)."})

    def __post_init__(self) -> None:
        if self.sources not in ("own", "prior", "both"):
            raise ValueError(f"sources must be 'own', 'prior' or 'both', got {self.sources!r}")
        if self.last_cut not in LAST_CUT_RULES:
            raise ValueError(f"last_cut must be one of {', '.join(LAST_CUT_RULES)}, got {self.last_cut!r}")
        if not (math.isfinite(self.z) and self.z > 0):
            raise ValueError(f"z must be a finite number > 0, got {self.z}")


class CurveModelHalving(SelectionPolicy):
    """Halving by validation score that cuts deeper where the predicted final scores are well apart, and holds the
    cut to a single candidate while the finalists' predictions are close."""

    name = "fine-selection"
    uses_progress = True

    def __init__(self, curves: Mapping[str, BenchmarkCurves] | Callable[[str], BenchmarkCurves | None] | None = None,
                 *, schedule: StageSchedule | None = None, config: CurveModelConfig | None = None):
        super().__init__(schedule)
        self._curves = curves or {}
        self.config = config or CurveModelConfig()
        self._prior = GainTrendPredictor(z=1.0)  # its interval is then one leave-one-out error: a standard error

    def describe(self) -> dict:
        return {**super().describe(), "variant": "curve-model", "sources": self.config.sources, "z": self.config.z,
                "last_cut": self.config.last_cut}

    def curves_of(self, candidate: str) -> BenchmarkCurves | None:
        return self._curves(candidate) if callable(self._curves) else self._curves.get(candidate)

    def estimate(self, candidate: str, step: int, val: float, progress: Progress | None) -> FinalEstimate | None:
        """The candidate's predicted final score. Without ``progress`` there are no points to fit, and the step
        indexes the benchmark curves directly; with it, the same fraction of training is read from them."""
        parts = []
        if self.config.sources in ("own", "both") and progress is not None:
            points = progress.points.get(candidate, ())
            own = fit_curve_ensemble([s for s, _ in points], [v for _, v in points], progress.budget)
            if own is not None:
                parts.append(own)
        curves = self.curves_of(candidate) if self.config.sources in ("prior", "both") else None
        if curves is not None:
            length = curves.val.shape[1]
            at = step if progress is None else round(step / progress.budget * length)
            at = min(length, max(1, at))
            prediction = self._prior.predict(curves, at, val)
            if prediction is not None and math.isfinite(prediction.upper - prediction.value):
                parts.append(FinalEstimate(prediction.value, max(prediction.upper - prediction.value, 1e-6),
                                           f"gain on {prediction.n_benchmarks} benchmarks"))
        return combine(parts)

    def waited_since(self, step: int, alive: Sequence[str], progress: Progress | None) -> int | None:
        """The first stage end at which the cut to one candidate waited, when those waits are why two are still
        alive at ``step`` (halving would have left one). Read from the reports so far: the policy keeps no state of
        its own, so a resumed run or another rank reads the same."""
        if progress is None or len(alive) != 2 or self.config.last_cut == "halve":
            return None
        entered: dict[int, int] = {}  # how many candidates reported at each earlier stage end
        for points in progress.points.values():
            for at in {at for at, _ in points if at < step}:
                entered[at] = entered.get(at, 0) + 1
        first = None
        for at in sorted(entered, reverse=True):  # back from the latest stage end, while each one waited
            if max(1, entered[at] // 2) != 1 or (first is not None and entered[first] != 2):
                break
            first = at
        return first

    def prune(self, step, alive, vals, final=False, progress: Progress | None = None):
        waited = self.waited_since(step, alive, progress)
        kept_note = (f"kept as runner-up since step {waited}: the cut to one candidate waited while the predictions "
                     "were not apart" if waited is not None else "")
        if final:  # the best val wins; a runner-up the last cut waited for says so
            if not kept_note:
                return []
            loser = _by_val(alive, vals)[0]
            return [Decision(loser, step, "pruned", "lower-at-budget", val=_val(vals, loser), note=kept_note)]
        keep = max(1, len(alive) // 2)
        estimates = {c: self.estimate(c, step, _val(vals, c), progress) for c in alive}
        z = self.config.z
        lower = {c: e.value - z * e.error for c, e in estimates.items() if e is not None}
        # a candidate with no estimate stays in the running on its val, as in halving
        best_lower = max(lower.values(), default=-math.inf)
        contenders = [c for c in alive if estimates[c] is None or estimates[c].value + z * estimates[c].error
                      >= best_lower]
        order = _by_val(alive, vals)  # ranking by the predictions themselves lost more often on recorded curves
        if len(contenders) < keep:  # the predictions are apart: keep only who can still reach the best
            kept = set(contenders)
            note = "its optimistic prediction is below another candidate's pessimistic one"
        else:
            kept = set(order[-keep:])
            note = f"not in the best {keep} of {len(alive)} by val"
        if self.config.last_cut != "halve" and len(kept) == 1 and len(alive) > 1:
            leader = next(iter(kept))
            runner = [c for c in order if c != leader][-1]
            lead, chase = estimates[leader], estimates[runner]
            if lead is None or chase is None:
                close = self.config.last_cut == "wait-unless-apart"
            else:
                close = chase.value + z * chase.error >= lead.value - z * lead.error
            if close:
                kept.add(runner)
                note += (f"; {runner} kept as runner-up: the cut to one candidate waits until the predictions are "
                         "apart")
        out = []
        for c in order:
            if c in kept:
                continue
            e = estimates[c]
            out.append(Decision(c, step, "pruned", "halved", val=_val(vals, c),
                                predicted=None if e is None else e.value,
                                note=note + ("" if e is None else f" ({e.sources}, +/- {e.error:.4f})")
                                + (f"; {kept_note}" if kept_note else "")))
        return out
