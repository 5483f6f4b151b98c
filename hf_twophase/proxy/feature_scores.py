"""Transferability scores computed from a checkpoint's pooled features on the target and the target's labels.

Beside LogME (`logme.py`), three that need no head and look at how the target's classes sit in feature space:

- **k-NN accuracy**: leave-one-out accuracy of a k-nearest-neighbour vote on L2-normalised features. Simple, and in
  a recent 23-metric comparison of transferability scores the most reliable. k = 5 is the customary choice, not a
  value fitted to any data.
- **H-score** (Bao et al., 2019): tr(cov(f)^-1 cov(E[f | y])), how much of the features' variance the class means
  explain. The feature covariance is shrunk with Ledoit-Wolf (Ibrahim et al., 2022), without which the inverse is
  noise when samples are few next to the feature dimension.
- **GBC** (Pandy et al., 2022): minus the summed Bhattacharyya coefficients between per-class diagonal Gaussians in a
  PCA projection of the features: how little the classes overlap.

NCTI (Wang et al., 2023) is not here: its three terms and their normalisation across the candidate set could not be
checked against the paper on this project's machines, and a guessed reimplementation would not be NCTI.

Pure: numpy and scikit-learn. Every function returns one float, higher is better.
"""

from __future__ import annotations

import numpy as np

from hf_twophase.proxy.logme import logme

KNN_K = 5
GBC_DIMENSIONS = 64  # the PCA width of the GBC paper's setting


def _check(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"expected features (N, D) and N labels, got {features.shape} and {labels.shape}")
    if len(np.unique(labels)) < 2:
        raise ValueError("a transferability score needs at least two classes among the labels")
    if not np.isfinite(features).all():
        raise ValueError("the features hold non-finite values")
    return features, labels


def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int = KNN_K) -> float:
    """Leave-one-out k-NN accuracy (cosine: neighbours on L2-normalised features; ties go to the nearer class)."""
    from sklearn.neighbors import NearestNeighbors

    features, labels = _check(features, labels)
    k = max(1, min(k, len(features) - 1))
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    _, neighbours = NearestNeighbors(n_neighbors=k + 1).fit(unit).kneighbors(unit)
    neighbours = neighbours[:, 1:]  # the nearest is the sample itself
    classes, codes = np.unique(labels, return_inverse=True)
    votes = np.zeros((len(labels), len(classes)))
    for rank in range(k):  # a closer neighbour breaks a tie: weights 1, 1 - 1e-6, ...
        np.add.at(votes, (np.arange(len(labels)), codes[neighbours[:, rank]]), 1.0 - rank * 1e-6)
    return float(np.mean(votes.argmax(axis=1) == codes))


def h_score(features: np.ndarray, labels: np.ndarray) -> float:
    """Shrinkage H-score: tr(cov(f)^-1 cov(E[f | y])) with a Ledoit-Wolf estimate of cov(f)."""
    from sklearn.covariance import LedoitWolf

    features, labels = _check(features, labels)
    centred = features - features.mean(axis=0)
    covariance = LedoitWolf().fit(centred).covariance_
    class_means = np.zeros_like(centred)
    for c in np.unique(labels):
        members = labels == c
        class_means[members] = centred[members].mean(axis=0)
    between = class_means.T @ class_means / len(centred)
    return float(np.trace(np.linalg.solve(covariance, between)))


def gbc(features: np.ndarray, labels: np.ndarray, dimensions: int = GBC_DIMENSIONS) -> float:
    """Gaussian Bhattacharyya coefficient: -sum over ordered class pairs of exp(-D_B), each class a Gaussian with
    diagonal covariance in a PCA projection of the features."""
    from sklearn.decomposition import PCA

    features, labels = _check(features, labels)
    width = max(1, min(dimensions, features.shape[1], len(features) - 1))
    projected = PCA(n_components=width, random_state=0).fit_transform(features)
    classes = np.unique(labels)
    means = np.stack([projected[labels == c].mean(axis=0) for c in classes])
    variances = np.stack([projected[labels == c].var(axis=0) for c in classes]) + 1e-6
    total = 0.0
    for i in range(len(classes)):
        for j in range(len(classes)):
            if i == j:
                continue
            pooled = (variances[i] + variances[j]) / 2
            distance = (0.125 * np.sum((means[i] - means[j]) ** 2 / pooled)
                        + 0.5 * np.sum(np.log(pooled) - 0.5 * (np.log(variances[i]) + np.log(variances[j]))))
            total += float(np.exp(-distance))
    return -total


# scores of pooled features on the target's labels, higher is better (the names: ``hf_twophase.proxy_names``)
FEATURE_SCORES = {"logme": logme, "knn": knn_accuracy, "hscore": h_score, "gbc": gbc}
