import itertools

import numpy as np
import pytest

from hf_twophase.method.trends import BenchmarkCurves, GainTrendPredictor, PaperTrendPredictor, kmeans_1d


def _sse(values, labels):
    return sum(((values[labels == c] - values[labels == c].mean()) ** 2).sum() for c in np.unique(labels))


def test_kmeans_1d_is_optimal():
    rng = np.random.default_rng(1)
    for _ in range(20):
        x = rng.uniform(size=7)
        labels = kmeans_1d(x, 3)
        best = min(
            _sse(np.sort(x), np.repeat([0, 1, 2], [i, j - i, 7 - j]))
            for i, j in itertools.combinations(range(1, 7), 2)
        )
        assert _sse(x, labels) == pytest.approx(best)
    assert kmeans_1d(np.array([0.3]), 4).tolist() == [0]


def _curves(vals_at_1, finals):
    val = np.array(vals_at_1, dtype=float)[:, None]
    return BenchmarkCurves(tuple(f"b{i}" for i in range(len(finals))), val, np.array(finals, dtype=float))


def test_paper_predictor_matches_nearest_trend():
    curves = _curves([0.1, 0.12, 0.5, 0.52, 0.9, 0.91], [0.3, 0.35, 0.7, 0.75, 0.95, 0.97])
    p = PaperTrendPredictor(n_trends=3).predict(curves, 1, target_val=0.55)
    assert p.value == pytest.approx(0.725) and p.trend_val == pytest.approx(0.51)  # Eq. 5 then Eq. 6
    assert (p.low, p.high) == (pytest.approx(0.7), pytest.approx(0.75))
    assert PaperTrendPredictor().predict(curves, 2, 0.5) is None  # no curve point at step 2


def test_predictors_skip_missing_points_and_need_enough_benchmarks():
    curves = _curves([0.1, np.nan, 0.5], [0.3, 0.9, np.nan])
    assert PaperTrendPredictor(min_benchmarks=2).predict(curves, 1, 0.2) is None  # one usable benchmark
    assert PaperTrendPredictor(min_benchmarks=1).predict(curves, 1, 0.2).value == pytest.approx(0.3)


def test_gain_predictor_adds_the_local_gain_with_a_leave_one_out_interval():
    v, f = [0.1, 0.2, 0.6, 0.62], [0.5, 0.6, 0.65, 0.70]
    curves = _curves(v, f)
    p = GainTrendPredictor(neighbours=2, z=2.0).predict(curves, 1, target_val=0.6)
    assert p.value == pytest.approx(0.6 + np.median([0.05, 0.08]))

    def plain_predict(vs, fs, x):  # the same rule, written out
        order = sorted(range(len(vs)), key=lambda i: abs(vs[i] - x))[:2]
        return x + float(np.median([fs[i] - vs[i] for i in order]))

    residuals = [plain_predict(v[:b] + v[b + 1:], f[:b] + f[b + 1:], v[b]) - f[b] for b in range(4)]
    rmse = float(np.sqrt(np.mean(np.square(residuals))))
    assert p.lower == pytest.approx(p.value - 2 * rmse) and p.upper == pytest.approx(p.value + 2 * rmse)
    few = GainTrendPredictor(neighbours=2).predict(_curves(v[:2], f[:2]), 1, 0.6)
    assert few.lower == -np.inf and few.upper == np.inf  # too few benchmarks to know its error: never prunes
