import numpy as np
import pytest

from hf_twophase import ClusteringConfig, cluster_models
from hf_twophase.method.similarity import pair_distance, pairwise_distances

BASE = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])


def test_eq1_by_hand():
    other = BASE + np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07])
    assert pair_distance(BASE, other, top_k=5) == pytest.approx(0.05)  # mean of 0.07..0.03
    assert pair_distance(BASE, other, top_k=1) == pytest.approx(0.07)
    gap = other.copy()
    gap[6] = np.nan  # the largest gap is not shared: it must not count
    assert pair_distance(BASE, gap, top_k=5) == pytest.approx(0.04)
    gap[5] = np.nan  # 5 shared benchmarks <= k: cannot be judged
    assert pair_distance(BASE, gap, top_k=5) == np.inf


def test_vectorised_matches_loop():
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=(37, 11))
    scores[rng.uniform(size=scores.shape) < 0.25] = np.nan
    fast = pairwise_distances(scores, top_k=3, block_elements=500)  # many small blocks
    for i in range(len(scores)):
        for j in range(len(scores)):
            expected = 0.0 if i == j else pair_distance(scores[i], scores[j], top_k=3)
            assert fast[i, j] == pytest.approx(expected, abs=1e-6) or (fast[i, j] == expected == np.inf)
    assert np.array_equal(fast, fast.T)


def _hand_repository():
    b = BASE
    far = np.array([0.2, 0.9, 0.1, 0.8, 0.3, 0.7, 0.95])
    models = ["a1", "a2", "a3", "b1", "b2", "c"]
    scores = np.array([b, b + 0.02, b - 0.03, far, far + 0.01, (b + far) / 2])
    return models, scores


def test_hierarchical_clusters_and_representatives():
    models, scores = _hand_repository()
    c = cluster_models(models, scores)
    assert c.clusters == [["a1", "a2", "a3"], ["b1", "b2"], ["c"]]
    assert c.representatives == ["a2", "b2", None]  # highest mean score; singletons have none
    assert c.non_singleton == [0, 1]
    assert 0.5 < c.silhouette <= 1.0
    assert c.to_dict()["representatives"] == ["a2", "b2"]


def test_threshold_controls_merging():
    models, scores = _hand_repository()
    assert len(cluster_models(models, scores, ClusteringConfig(threshold=0.0)).clusters) == 6
    assert len(cluster_models(models, scores, ClusteringConfig(threshold=10.0)).clusters) == 1


def test_pairs_sharing_too_few_benchmarks_never_merge():
    a = BASE.copy()
    b = BASE.copy()
    b[:2] = np.nan  # identical where shared, but only 5 shared benchmarks
    c = cluster_models(["a", "b"], np.array([a, b]), ClusteringConfig(threshold=10.0))
    assert c.clusters == [["a"], ["b"]]
    assert c.silhouette is None  # one label per model: undefined


def test_representative_tie_goes_to_first_name():
    c = cluster_models(["z", "y"], np.array([BASE, BASE]))
    assert c.clusters == [["y", "z"]] and c.representatives == ["y"]


def test_one_model_and_empty_repository():
    c = cluster_models(["only"], np.array([BASE]))
    assert c.clusters == [["only"]] and c.representatives == [None] and c.silhouette is None
    with pytest.raises(ValueError, match="empty repository"):
        cluster_models([], np.empty((0, 3)))


def test_kmeans_alternative():
    models, scores = _hand_repository()
    c = cluster_models(models, scores, ClusteringConfig(method="kmeans", n_clusters=2))
    assert len(c.clusters) == 2
    assert {"a1", "a2", "a3"} <= set(c.clusters[0]) or {"a1", "a2", "a3"} <= set(c.clusters[1])
    with pytest.raises(ValueError, match="unknown clustering method"):
        cluster_models(models, scores, ClusteringConfig(method="dbscan"))
