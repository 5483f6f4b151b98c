"""Phase 1, step 1: group models that behave alike on the benchmarks, and pick one representative each.

Only representatives are proxy-scored on the user's data, so clustering is what makes coarse
recall cheap. scipy does the hierarchical clustering and scikit-learn the k-means and the
silhouette; this module adds only the method's own parts (Eq. 1 distances, the "never merge
incomparable pairs" rule and the choice of representatives).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from hf_twophase.method.similarity import DEFAULT_TOP_K, pairwise_distances

DEFAULT_THRESHOLD = 0.09
ClusterMethod = Literal["hierarchical", "kmeans"]


@dataclass
class ClusteringConfig:
    """How models are grouped before coarse recall."""

    method: ClusterMethod = field(
        default="hierarchical",
        metadata={"help": "'hierarchical' (average linkage on Eq. 1 distances, the paper's choice) or 'kmeans'."},
    )
    top_k: int = field(
        default=DEFAULT_TOP_K,
        metadata={"help": "k of Eq. 1: how many of the largest gaps are averaged (capped at benchmarks - 1, so a "
                          "small matrix can still cluster)."},
    )
    threshold: float = field(
        default=DEFAULT_THRESHOLD,
        metadata={"help": "Hierarchical only: clusters merge while their average Eq. 1 distance is <= this."},
    )
    n_clusters: int | None = field(
        default=None,
        metadata={"help": "K-means only: number of clusters (default: round(sqrt(n_models / 2)))."},
    )
    seed: int = field(default=0, metadata={"help": "K-means only: random seed."})


@dataclass
class Clustering:
    """The outcome: cluster labels, members, representatives and quality."""

    models: list[str]
    labels: np.ndarray
    clusters: list[list[str]]
    representatives: list[str | None]
    silhouette: float | None
    distances: np.ndarray = field(repr=False)

    @property
    def non_singleton(self) -> list[int]:
        """Indices of clusters with at least two members: the only ones whose representative is scored."""
        return [i for i, members in enumerate(self.clusters) if len(members) > 1]

    def to_dict(self) -> dict:
        return {
            "clusters": self.clusters,
            "representatives": [r for r in self.representatives if r is not None],
            "silhouette": self.silhouette,
        }


def mean_scores(scores: np.ndarray) -> np.ndarray:
    """acc(m) of the paper: a model's mean benchmark score over the benchmarks it has (NaN when none)."""
    scores = np.asarray(scores, dtype=float)
    counts = (~np.isnan(scores)).sum(axis=1)
    sums = np.nansum(scores, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _finite_for_linkage(distances: np.ndarray, threshold: float) -> np.ndarray:
    """scipy wants finite distances: an incomparable pair gets a value so large that no average containing
    it reaches the threshold, whatever the cluster sizes (n^2 + 1 times past both the threshold and the
    largest real distance)."""
    finite = distances[np.isfinite(distances)]
    largest = max(float(finite.max()) if finite.size else 0.0, threshold)
    n = distances.shape[0]
    big = (largest + 1.0) * (n * n + 1.0)
    return np.where(np.isfinite(distances), distances, big)


def _silhouette(distances: np.ndarray, labels: np.ndarray) -> float | None:
    """Silhouette on the Eq. 1 distances; incomparable pairs count as the largest real distance seen."""
    from sklearn.metrics import silhouette_score

    n_labels = len(np.unique(labels))
    if n_labels < 2 or n_labels > len(labels) - 1:
        return None
    finite = distances[np.isfinite(distances)]
    cap = float(finite.max()) if finite.size else 1.0
    capped = np.where(np.isfinite(distances), distances, cap)
    return float(silhouette_score(capped, labels, metric="precomputed"))


def _relabel(raw: np.ndarray, order_key: np.ndarray) -> np.ndarray:
    """Number clusters 0..C-1, largest first, ties by their first model, so output is deterministic."""
    uniq = np.unique(raw)
    info = sorted(uniq, key=lambda c: (-(raw == c).sum(), order_key[raw == c].min()))
    mapping = {c: i for i, c in enumerate(info)}
    return np.array([mapping[c] for c in raw], dtype=int)


def cluster_models(
    models: list[str], scores: np.ndarray, config: ClusteringConfig | None = None
) -> Clustering:
    """Cluster models (rows of `scores`, benchmarks as columns, NaN = not run) by Eq. 1 similarity.

    The representative of a cluster is its member with the highest mean benchmark score (ties: the
    first by name), as in the paper.
    """
    config = config or ClusteringConfig()
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[0] != len(models):
        raise ValueError(f"expected a {len(models)} x benchmarks score array, got shape {scores.shape}")
    if len(models) == 0:
        raise ValueError("cannot cluster an empty repository: no models")
    n = len(models)
    # Eq. 1 needs more shared benchmarks than k; a matrix of 3 benchmarks would otherwise never cluster and phase 1
    # would score every model. The paper's k=5 is kept wherever there are more than 5 benchmarks.
    top_k = max(1, min(config.top_k, scores.shape[1] - 1))
    distances = pairwise_distances(scores, top_k)
    if n == 1:
        raw = np.zeros(1, dtype=int)
    elif config.method == "hierarchical":
        condensed = squareform(_finite_for_linkage(distances, config.threshold), checks=False)
        tree = linkage(condensed, method="average")
        raw = fcluster(tree, t=config.threshold, criterion="distance")
    elif config.method == "kmeans":
        raw = _kmeans_labels(scores, config)
    else:
        raise ValueError(f"unknown clustering method {config.method!r}; expected 'hierarchical' or 'kmeans'")
    name_rank = np.argsort(np.argsort(np.array(models, dtype=object)))
    labels = _relabel(np.asarray(raw), name_rank)
    acc = mean_scores(scores)
    clusters: list[list[str]] = []
    representatives: list[str | None] = []
    for c in range(labels.max() + 1):
        idx = np.flatnonzero(labels == c)
        idx = idx[np.argsort(np.array([models[i] for i in idx], dtype=object), kind="stable")]
        clusters.append([models[i] for i in idx])
        if len(idx) > 1:
            member_acc = np.nan_to_num(acc[idx], nan=-np.inf)
            representatives.append(models[idx[int(np.argmax(member_acc))]])
        else:
            representatives.append(None)
    return Clustering(
        models=list(models), labels=labels, clusters=clusters, representatives=representatives,
        silhouette=_silhouette(distances, labels), distances=distances,
    )


def _kmeans_labels(scores: np.ndarray, config: ClusteringConfig) -> np.ndarray:
    """The paper's weaker alternative: k-means on score vectors, missing cells filled with the benchmark mean."""
    from sklearn.cluster import KMeans

    n = scores.shape[0]
    k = config.n_clusters or max(1, round(np.sqrt(n / 2)))
    k = min(k, n)
    col_mean = np.nanmean(np.where(np.isnan(scores).all(axis=0), 0.0, scores), axis=0)
    filled = np.where(np.isnan(scores), col_mean, scores)
    return KMeans(n_clusters=k, n_init=10, random_state=config.seed).fit_predict(filled)
