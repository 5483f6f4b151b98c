"""The robust prior of recall and the robust recall itself, including inputs that break naive statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hf_twophase.errors import SelectionError
from hf_twophase.method.clustering import cluster_models
from hf_twophase.method.phase1 import Phase1
from hf_twophase.method.prior import (
    agreement_weights,
    benchmark_agreement,
    collapsed_cells,
    robust_prior,
    standardised_scores,
    weighted_prior,
)
from hf_twophase.method.recall import RecallConfig, proxy_budget, robust_recall, robust_shortlist
from hf_twophase.records.matrix import PerformanceMatrix

NAN = np.nan


def _repository(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(0.8 + 0.05 * rng.standard_normal((12, 5)), 0, 1)


def test_a_collapsed_fine_tune_is_masked_not_averaged_in():
    scores = _repository()
    scores[0] = scores.max(axis=0) + 0.01  # the best model everywhere ...
    scores[0, :2] = 0.5  # ... whose fine-tuning diverged on two benchmarks
    mask = collapsed_cells(scores)
    assert mask[0, :2].all() and mask.sum() == 2  # those two cells only, in their own columns
    prior = robust_prior(scores)
    assert int(np.argmax(prior)) == 0  # still the best model
    naive = scores.mean(axis=1)
    assert int(np.argmax(naive)) != 0  # where a plain mean loses it


def test_each_benchmark_counts_the_same_whatever_its_spread():
    # model a leads on a narrow benchmark, b on a wide one, by the same number of standard deviations
    scores = np.array([[0.91, 0.50], [0.90, 0.90], [0.89, 0.70], [0.90, 0.70]])
    z = standardised_scores(scores, fence=-np.inf)
    assert np.allclose(np.nanstd(z, axis=0), 1.0)
    prior = robust_prior(scores, fence=-np.inf)
    assert prior[1] > prior[0]  # b's lead on the wide benchmark does not swamp the narrow one


@pytest.mark.parametrize("scores", [
    np.array([[0.7], [0.8], [0.9]]),  # a single benchmark
    np.array([[0.7, 0.6, 0.5]]),  # a benchmark with one model (one model, three benchmarks)
    np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]),  # constant columns: zero spread
    np.array([[NAN, 0.5], [NAN, 0.6], [NAN, NAN]]),  # an empty column and a model with no score at all
    np.array([[0.9, 0.9], [0.9, 0.9], [0.9, 0.9], [0.1, 0.1]]),  # zero IQR with one outlier
    np.zeros((0, 3)),  # no model
])
def test_the_prior_is_always_defined(scores):
    prior = robust_prior(scores)
    assert prior.shape == (scores.shape[0],) and np.isfinite(prior).all()


def test_a_model_with_no_usable_cell_gets_the_lowest_prior():
    scores = np.array([[0.8, 0.8], [0.7, 0.7], [NAN, NAN], [0.75, 0.75]])
    prior = robust_prior(scores)
    assert prior[2] < prior[[0, 1, 3]].min()


def test_a_cell_beyond_the_fence_is_masked_and_none_without_a_fence():
    column = np.array([[0.80], [0.81], [0.79], [0.80], [0.82], [0.78], [0.40]])
    assert collapsed_cells(column)[-1, 0] and not collapsed_cells(column, fence=-1e9).any()


def test_shortlist_respects_the_proxy_budget_and_the_weight():
    scores = _repository(1)
    models = [f"m{i}" for i in range(len(scores))]
    clustering = cluster_models(models, scores)
    prior = robust_prior(scores)
    best = [models[i] for i in np.argsort(-prior)]
    assert robust_shortlist(clustering, prior, 3, RecallConfig(proxy_weight=1.0, proxy_fraction=0.25)) == best[:3]
    assert robust_shortlist(clustering, prior, 3, RecallConfig(proxy_weight=0.0)) == []  # prior only: no proxy
    assert robust_shortlist(clustering, prior, 3, RecallConfig(proxy_weight=0.0), calibrate=True) == best[:1]
    assert robust_shortlist(clustering, prior, 20, RecallConfig(proxy_weight=1.0)) == []  # repository <= K
    assert proxy_budget(155, 0.10) == 15 and proxy_budget(3, 0.10) == 1


def test_cold_models_are_read_against_the_scored_warm_ones():
    models = ["a", "b", "c", "d"]
    prior = np.array([2.0, 1.0, 0.0, -1.0])
    proxy = {"a": -0.1, "b": -0.2, "c": -0.3, "d": -0.4}  # the proxy agrees with the prior
    result = robust_recall(models, prior, proxy, 3, RecallConfig(proxy_weight=0.0), cold_proxy={"x": -0.15,
                                                                                              "y": -0.9})
    assert result.recalled == ["a", "x", "b"]  # x's proxy sits between a's and b's, and so does its recall score
    assert result.scores["y"] < result.scores["d"]
    assert result.prior["a"] > result.prior["b"] and "x" not in result.prior


def test_cold_only_repository_ranks_by_proxy():
    result = robust_recall([], np.array([]), {}, 2, RecallConfig(), cold_proxy={"x": -0.5, "y": -0.1, "z": -0.9})
    assert result.recalled == ["y", "x"]


@pytest.mark.parametrize("bad", [dict(variant="mine"), dict(shortlist="random"), dict(proxy_fraction=0.0),
                                 dict(proxy_fraction=1.5), dict(proxy_weight=-1.0), dict(proxy_weight=float("nan")),
                                 dict(target_temperature=0.0), dict(target_temperature=-0.5),
                                 dict(target_temperature=float("nan")), dict(target_temperature=float("inf"))])
def test_recall_config_refuses_bad_values(bad):
    with pytest.raises(SelectionError):
        RecallConfig(**bad)


def test_equal_benchmark_weights_give_the_robust_prior():
    scores = _repository(2)
    scores[3, 1] = NAN
    scores[5, 2] = 0.1  # a collapsed fine-tune, masked in both
    assert np.allclose(weighted_prior(scores, np.full(5, 0.2)), robust_prior(scores))
    assert np.allclose(agreement_weights(np.zeros(5), 0.1), 0.2)
    weights = agreement_weights(np.array([0.9, 0.1, -0.5]), 0.1)
    assert weights.sum() == pytest.approx(1.0) and weights[0] > 0.99


def test_agreement_reads_only_the_probes_and_needs_three_of_them():
    scores = _repository(3)
    probes = np.array([0, 4, 7, 9])
    proxy = scores[probes, 2] * 10 - 3  # the target ranks the probes as benchmark 2 does
    agreement = benchmark_agreement(scores, probes, proxy)
    assert agreement[2] == pytest.approx(1.0) and np.all(agreement[[0, 1, 3, 4]] < 1.0)
    assert not benchmark_agreement(scores, probes[:2], proxy[:2]).any()  # two points rank nothing


def _specialist_repository(seed: int = 0) -> tuple[PerformanceMatrix, list[str]]:
    """Twenty general models, plus two fine-tuned on benchmark 'own': best there, below the bulk elsewhere."""
    rng = np.random.default_rng(seed)
    general = 0.75 + 0.02 * rng.standard_normal(20)
    rows = []
    for name in ["own", "x1", "x2", "x3", "x4"]:
        for i, base in enumerate(general):
            rows.append((f"general-{i:02d}", name, base + 0.01 * rng.standard_normal()))
        for s in range(2):
            rows.append((f"specialist-{s}", name, (0.95 if name == "own" else 0.70) + 0.005 * s))
    records = [{"model": m, "dataset": d, "step": 1, "val": v, "test": v, "cost": 1.0} for m, d, v in rows]
    return PerformanceMatrix(pd.DataFrame(records)), ["specialist-0", "specialist-1"]


def test_target_aware_recall_finds_a_benchmarks_own_fine_tunes():
    """A user whose data is one of the benchmarks: the proxy on it ranks models as that benchmark does, so that
    benchmark's weight dominates and the models fine-tuned on it are recalled; the plain prior misses them."""
    matrix, specialists = _specialist_repository()
    final = matrix.final_scores()
    proxy = {m: float(final.loc[m, "own"]) for m in final.index}  # a proxy that reads the target well

    def recall(config: RecallConfig) -> list[str]:
        phase1 = Phase1.from_matrix(matrix, recall=config)
        needed = phase1.to_score(4)
        return phase1.recall({m: proxy[m] for m in needed}, k=4).recalled

    assert not set(specialists) & set(recall(RecallConfig(proxy_fraction=0.2)))
    aware = RecallConfig(proxy_fraction=0.2, target_temperature=0.1, shortlist="representatives")
    phase1 = Phase1.from_matrix(matrix, recall=aware)
    assert len(phase1.to_score(4)) <= 4  # the proxy budget: 20% of 22 models
    assert set(specialists) <= set(recall(aware))
    result = phase1.recall({m: proxy[m] for m in phase1.to_score(4)}, k=4)
    assert max(result.benchmark_weights, key=result.benchmark_weights.get) == "own"
