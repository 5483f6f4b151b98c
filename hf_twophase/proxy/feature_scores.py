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

And one that ranks a set of candidates rather than scoring one:

- **NCTI** (Wang et al., CVPR 2023): how far a checkpoint's features on the target are from the neural collapse that
  fine-tuning drives them to, from three terms computed in a shrinkage-LDA projection of the features (after PCA to
  64 dimensions): the nuclear norm of the projected features (rank, the SELI geometry), the mean posterior of the
  true class (a nearest-centre classifier), and the log of the summed per-class nuclear norms of the posteriors
  (within-class variability). Each term is min-max scaled over the candidates before they are added, so a model's
  NCTI depends on which others are scored with it: ``ncti_terms`` scores one model, ``ncti_combine`` ranks a set.
  The LDA shrinkage, exp(-the variance of the first 32 principal components), and the widths are the authors'
  choices, as their reference code (MIT) makes them; this is a reimplementation, not a copy.

Pure: numpy and scikit-learn. Every per-model function returns one float, higher is better.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

import numpy as np

from hf_twophase.proxy.logme import logme

KNN_K = 5
GBC_DIMENSIONS = 64  # the PCA width of the GBC paper's setting
NCTI_DIMENSIONS = 64  # the PCA width of the NCTI paper's setting
NCTI_SHRINKAGE_COMPONENTS = 32  # the LDA shrinkage reads the variance of this many leading components


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


@dataclass(frozen=True)
class NCTITerms:
    """One checkpoint's three NCTI terms on the target, before they are scaled against the other candidates'."""

    seli: float  # nuclear norm of the centred LDA projection: higher, nearer the collapsed geometry's full rank
    ncc: float  # mean posterior of the true class: higher, classes nearer their centres
    vc: float  # log of the summed per-class nuclear norms of the posteriors: higher, more within-class spread

    def to_dict(self) -> dict[str, float]:
        return {"seli": self.seli, "ncc": self.ncc, "vc": self.vc}


def ncti_terms(features: np.ndarray, labels: np.ndarray, dimensions: int = NCTI_DIMENSIONS) -> NCTITerms:
    """The NCTI terms of one checkpoint's features on the target's labels (see the module's docstring)."""
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    features, labels = _check(features, labels)
    width = max(1, min(dimensions, features.shape[1], len(features) - 1))
    pca = PCA(n_components=width, random_state=0)
    projected = pca.fit_transform(features)
    shrinkage = float(np.exp(-pca.explained_variance_[:NCTI_SHRINKAGE_COMPONENTS].sum()))
    if shrinkage > 1e-10:
        lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=min(shrinkage, 1.0))
    else:  # the features spread widely: no shrinkage needed, and the SVD solver is the stable one
        lda = LinearDiscriminantAnalysis(solver="svd")
    low = lda.fit_transform(projected, labels)
    low = low - low.mean(axis=0, keepdims=True)
    posterior = lda.predict_proba(projected)
    truth = np.searchsorted(lda.classes_, labels)
    within = sum(np.linalg.norm(posterior[labels == c], ord="nuc") for c in lda.classes_)
    return NCTITerms(seli=float(np.linalg.norm(low, ord="nuc")),
                     ncc=float(posterior[np.arange(len(labels)), truth].mean()),
                     vc=float(np.log(max(within, 1e-300))))


def ncti_combine(terms: Mapping[str, NCTITerms | Mapping[str, float]]) -> dict[str, float]:
    """NCTI of each candidate: its SELI and NCC terms, min-max scaled over the candidates, minus its scaled VC term.

    A term that does not vary over the candidates (one candidate alone, or a tie) adds nothing to anyone."""
    def scaled(values: dict[str, float]) -> dict[str, float]:
        low, high = min(values.values()), max(values.values())
        return {m: 0.0 if high <= low else (v - low) / (high - low) for m, v in values.items()}

    if not terms:
        return {}
    terms = {m: t if isinstance(t, NCTITerms) else NCTITerms(**t) for m, t in terms.items()}
    seli = scaled({m: t.seli for m, t in terms.items()})
    ncc = scaled({m: t.ncc for m, t in terms.items()})
    vc = scaled({m: t.vc for m, t in terms.items()})
    return {m: seli[m] + ncc[m] - vc[m] for m in terms}


# scores of pooled features on the target's labels, higher is better (the names: ``hf_twophase.proxy_names``)
FEATURE_SCORES = {"logme": logme, "knn": knn_accuracy, "hscore": h_score, "gbc": gbc}
@dataclass(frozen=True)
class SetScore:
    """A score that ranks a set of candidates: ``terms`` per model, then ``combine`` over the set."""

    terms: Callable[[np.ndarray, np.ndarray], NCTITerms]
    combine: Callable[[Mapping[str, NCTITerms | Mapping[str, float]]], dict[str, float]]
    term_names: tuple[str, ...]


SET_SCORES = {"ncti": SetScore(ncti_terms, ncti_combine, tuple(f.name for f in fields(NCTITerms)))}
