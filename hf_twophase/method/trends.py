"""Phase 2's crystal ball: predict a candidate's final score on the target from its own benchmark curves.

A candidate fine-tuned on many benchmarks leaves a record of how its validation score at step t
relates to where it finally ends. Benchmarks on which it stood at a similar validation score at
step t tell how it is likely to finish on the target (the paper's "convergence trends").

Two predictors share one interface:
- `PaperTrendPredictor` (Eq. 5-6): group benchmarks by val at t into at most 4 trends, match the
  nearest trend, predict its mean final score.
- `GainTrendPredictor`: predict the target's own val at t plus the gain (final - val at t) the
  candidate made on the benchmarks nearest in val at t. It anchors on what the target shows and
  borrows only the shape of the curve, which transfers across datasets of different difficulty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from hf_twophase.records.curves import CurveCube


@dataclass(frozen=True)
class BenchmarkCurves:
    """One candidate's history on the benchmarks: `val[b, t-1]` is its val at step t (NaN = no point)."""

    benchmarks: tuple[str, ...]
    val: np.ndarray
    final: np.ndarray

    def at_step(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(val at `step`, final score) over the benchmarks that have both; others are skipped."""
        if step < 1 or step > self.val.shape[1]:
            return np.empty(0), np.empty(0)
        v = self.val[:, step - 1]
        ok = ~(np.isnan(v) | np.isnan(self.final))
        return v[ok], self.final[ok]


def benchmark_curves(cube: CurveCube, model: str, exclude: str) -> BenchmarkCurves | None:
    """A model's curves on every dataset but `exclude`: the only history fine selection may use."""
    arrays = cube.benchmark_arrays(model, exclude)
    return None if arrays is None else BenchmarkCurves(benchmarks=arrays[0], val=arrays[1], final=arrays[2])


@dataclass(frozen=True)
class Prediction:
    """A predicted final score, with what it was based on (for the decision record)."""

    value: float
    n_benchmarks: int
    trend_val: float
    detail: str = ""
    low: float | None = None
    high: float | None = None

    @property
    def lower(self) -> float:
        """Pessimistic end of the prediction (the point value when the predictor gives no range)."""
        return self.value if self.low is None else self.low

    @property
    def upper(self) -> float:
        """Optimistic end of the prediction."""
        return self.value if self.high is None else self.high


class TrendPredictor(Protocol):
    """Anything that predicts a final score from benchmark curves, a step and the target's val at that step."""

    name: str

    def predict(self, curves: BenchmarkCurves, step: int, target_val: float) -> Prediction | None: ...


def kmeans_1d(values: np.ndarray, k: int) -> np.ndarray:
    """Exact 1-D k-means (optimal contiguous split of the sorted values by dynamic programming).

    The reference code runs a randomised k-means on a handful of numbers thousands of times per replay;
    in one dimension the optimum is cheap to compute exactly, so results are deterministic and no seed
    matters. Returns a label per value, labels ordered by value.
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    k = max(1, min(k, n))
    order = np.argsort(values, kind="stable")
    x = values[order]
    s1 = np.concatenate([[0.0], np.cumsum(x)])
    s2 = np.concatenate([[0.0], np.cumsum(x * x)])

    def sse(i: np.ndarray, j: int) -> np.ndarray:  # cost of x[i:j] for an array of starts i
        cnt = j - i
        mean_sum = s1[j] - s1[i]
        return (s2[j] - s2[i]) - mean_sum * mean_sum / np.maximum(cnt, 1)

    cost = np.full((k + 1, n + 1), np.inf)
    arg = np.zeros((k + 1, n + 1), dtype=int)
    cost[0, 0] = 0.0
    for c in range(1, k + 1):
        for j in range(c, n + 1):
            starts = np.arange(c - 1, j)
            total = cost[c - 1, starts] + sse(starts, j)
            best = int(np.argmin(total))
            cost[c, j] = total[best]
            arg[c, j] = starts[best]
    labels_sorted = np.empty(n, dtype=int)
    j = n
    for c in range(k, 0, -1):
        i = arg[c, j]
        labels_sorted[i:j] = c - 1
        j = i
    labels = np.empty(n, dtype=int)
    labels[order] = labels_sorted
    return labels


@dataclass
class PaperTrendPredictor:
    """Eq. 5-6 of the paper: K trends from 1-D k-means over the benchmarks' val at step t."""

    n_trends: int = field(default=4, metadata={"help": "K of the 1-D k-means over benchmark val scores (paper: 4)."})
    min_benchmarks: int = field(
        default=2, metadata={"help": "Fewer benchmarks with a point at t than this: no prediction."}
    )
    name: str = "paper"

    def predict(self, curves: BenchmarkCurves, step: int, target_val: float) -> Prediction | None:
        v, f = curves.at_step(step)
        if len(v) < self.min_benchmarks:
            return None
        labels = kmeans_1d(v, self.n_trends)
        means = np.array([(v[labels == c].mean(), f[labels == c].mean()) for c in range(labels.max() + 1)])
        best = int(np.argmin(np.abs(means[:, 0] - target_val)))  # Eq. 5
        members = f[labels == best]
        return Prediction(value=float(means[best, 1]), n_benchmarks=len(v), trend_val=float(means[best, 0]),
                          detail=f"trend {best + 1}/{len(means)}", low=float(members.min()),
                          high=float(members.max()))  # Eq. 6


@dataclass
class GainTrendPredictor:
    """Target val at t plus the gain the candidate made from step t to the end on benchmarks alike at t.

    The gain is the median over the `neighbours` benchmarks nearest in val at t (the local trend), so a
    candidate that kept climbing on comparable benchmarks is predicted to keep climbing here.

    The prediction carries an interval of `z` times the predictor's own error on this candidate at this
    step, measured by predicting each of its benchmarks from the others (leave one benchmark out). Early
    in training, when curves say little, the interval is wide and nothing is pruned on trends; later it
    narrows. z = 2 is the usual two-sided 95% reading, not a value fitted to any data.
    """

    neighbours: int = field(default=5, metadata={"help": "How many benchmarks nearest in val at t form the trend."})
    min_benchmarks: int = field(
        default=2, metadata={"help": "Fewer benchmarks with a point at t than this: no prediction."}
    )
    z: float = field(default=2.0, metadata={"help": "Interval half-width in units of the leave-one-out error."})
    name: str = "gain"

    def _point(self, v: np.ndarray, f: np.ndarray, target_val: float) -> tuple[float, np.ndarray]:
        nearest = np.argsort(np.abs(v - target_val), kind="stable")[: self.neighbours]
        return float(np.median(f[nearest] - v[nearest])), nearest  # a median: one diverged run must not swing it

    def error(self, curves: BenchmarkCurves, step: int) -> float:
        """Root-mean-square error of this predictor on the candidate's own benchmarks at `step`."""
        v, f = curves.at_step(step)
        if len(v) < max(3, self.min_benchmarks + 1):
            return float("inf")
        residuals = []
        for b in range(len(v)):
            others = np.arange(len(v)) != b
            gain, _ = self._point(v[others], f[others], v[b])
            residuals.append(v[b] + gain - f[b])
        return float(np.sqrt(np.mean(np.square(residuals))))

    def predict(self, curves: BenchmarkCurves, step: int, target_val: float) -> Prediction | None:
        v, f = curves.at_step(step)
        if len(v) < self.min_benchmarks:
            return None
        gain, nearest = self._point(v, f, target_val)
        value = float(target_val + gain)
        half = self.z * self.error(curves, step)
        return Prediction(value=value, n_benchmarks=len(v), trend_val=float(v[nearest].mean()),
                          detail=f"gain {gain:+.4f} over {len(nearest)} nearest benchmarks, +/- {half:.4f}",
                          low=value - half, high=value + half)
