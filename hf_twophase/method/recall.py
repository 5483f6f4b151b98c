"""Phase 1, step 2: coarse recall (Eq. 2-4) from the proxy scores of cluster representatives only.

A model in a non-singleton cluster inherits its representative's proxy score, weighted by its own
mean benchmark score (Eq. 3). A singleton borrows from every representative, weighted by how
similar it is to each (Eq. 4). Proxy scores live on different scales (LEEP <= 0, LogME any real),
so a normaliser maps them to [0, 1] before they multiply accuracies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hf_twophase.errors import SelectionError
from hf_twophase.method.clustering import Clustering, mean_scores
from hf_twophase.method.similarity import similarity_from_distance

Normaliser = Callable[[np.ndarray], np.ndarray]


def exp_normaliser(scores: np.ndarray) -> np.ndarray:
    """For LEEP: exp(LEEP) is the geometric-mean likelihood of the target labels, already in [0, 1]."""
    return np.exp(np.minimum(np.asarray(scores, dtype=float), 0.0))


def minmax_normaliser(scores: np.ndarray) -> np.ndarray:
    """For scores on an arbitrary scale (LogME, NCE): rescale the scored set to [0, 1]. One score maps to 1."""
    scores = np.asarray(scores, dtype=float)
    lo, hi = np.min(scores), np.max(scores)
    if hi - lo <= 1e-12:
        return np.ones_like(scores)
    return (scores - lo) / (hi - lo)


def rank_normaliser(scores: np.ndarray) -> np.ndarray:
    """Scale-free: the fraction of scored models a score beats (ties share), in (0, 1]."""
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=float)
    return rankdata(scores, method="average") / len(scores)


NORMALISERS: dict[str, Normaliser] = {"exp": exp_normaliser, "minmax": minmax_normaliser, "rank": rank_normaliser}


def normaliser_for(name: str, method: str | None = None) -> Normaliser:
    """'auto' picks exp for LEEP (the reference code's choice) and min-max for everything else."""
    if name == "auto":
        name = "exp" if (method or "").lower() == "leep" else "minmax"
    if name not in NORMALISERS:
        raise SelectionError(f"unknown normaliser {name!r}; expected one of auto, {', '.join(NORMALISERS)}")
    return NORMALISERS[name]


@dataclass
class RecallResult:
    """Which models were recalled, with the bookkeeping that makes the proxy cost visible."""

    recalled: list[str]
    scored: list[str]
    scores: dict[str, float]
    proxy: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict:
        return {"recalled": self.recalled, "scored": self.scored}


def models_to_score(clustering: Clustering, k: int) -> list[str]:
    """The models whose proxy score phase 1 needs: the representatives of non-singleton clusters.

    When clustering found no group at all, Eq. 4 has nothing to borrow from; every model then stands for
    itself (the method degrades to scoring the whole repository, which the result reports). A repository
    no larger than K needs no scoring.
    """
    if len(clustering.models) <= k:
        return []
    reps = [clustering.representatives[c] for c in clustering.non_singleton]
    if reps:
        return [r for r in reps if r is not None]
    return list(clustering.models)


def coarse_recall(
    clustering: Clustering,
    scores: np.ndarray,
    proxy: Mapping[str, float],
    k: int = 10,
    normaliser: Normaliser = minmax_normaliser,
) -> RecallResult:
    """Eq. 2-4: rank every model of the clustering and keep the top `k`.

    `scores` is the models x benchmarks matrix used for clustering (rows in `clustering.models` order);
    `proxy` holds raw proxy scores for (at least) the models of `models_to_score`.
    """
    if k < 1:
        raise SelectionError(f"k must be >= 1, got {k}")
    models = clustering.models
    acc = np.nan_to_num(mean_scores(scores), nan=0.0)
    needed = models_to_score(clustering, k)
    if not needed:
        order = sorted(range(len(models)), key=lambda i: (-acc[i], models[i]))
        return RecallResult(
            recalled=[models[i] for i in order], scored=[], scores={models[i]: float(acc[i]) for i in order},
            note=f"repository of {len(models)} model(s) <= k={k}: every model recalled, none scored",
        )
    missing = [m for m in needed if m not in proxy or not np.isfinite(proxy[m])]
    if missing:
        raise SelectionError(
            f"no proxy score for {len(missing)} representative(s): {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}; every scored model needs a finite proxy score"
        )
    raw = np.array([proxy[m] for m in needed], dtype=float)
    norm = dict(zip(needed, normaliser(raw), strict=False))
    index = {m: i for i, m in enumerate(models)}
    recall = np.zeros(len(models))
    non_singleton = clustering.non_singleton
    if non_singleton:
        reps = [clustering.representatives[c] for c in non_singleton]
        rep_idx = np.array([index[r] for r in reps])
        rep_norm = np.array([norm[r] for r in reps])
        sim = similarity_from_distance(clustering.distances[:, rep_idx])
        for i in range(len(models)):
            c = clustering.labels[i]
            if c in non_singleton:
                recall[i] = acc[i] * norm[clustering.representatives[c]]  # Eq. 3
            else:
                recall[i] = acc[i] * float(np.mean(sim[i] * rep_norm))  # Eq. 4
        note = f"{len(reps)} representative(s) of {len(non_singleton)} non-singleton cluster(s) scored"
    else:
        for i, m in enumerate(models):
            recall[i] = acc[i] * norm[m]
        note = "no non-singleton cluster: every model scored directly"
    order = sorted(range(len(models)), key=lambda i: (-recall[i], -acc[i], models[i]))
    top = [models[i] for i in order[:k]]
    return RecallResult(
        recalled=top, scored=list(needed), scores={models[i]: float(recall[i]) for i in order},
        proxy={m: float(proxy[m]) for m in needed}, note=note,
    )


def rank_cold(warm_scores: np.ndarray, representative_proxy: Sequence[float], cold_proxy: dict[str, float],
              normaliser: Normaliser) -> dict[str, float]:
    """Recall scores of cold models (no benchmark row): their proxy, normalised together with the representatives'
    so both sit on one scale, times the median warm model's mean benchmark score as the prior they lack."""
    accs = mean_scores(warm_scores) if len(warm_scores) else np.array([])
    prior = float(np.nanmedian(accs)) if len(accs) and np.isfinite(accs).any() else 1.0
    names = list(cold_proxy)
    raw = np.array([*representative_proxy, *(cold_proxy[m] for m in names)], dtype=float)
    normed = normaliser(raw)[len(representative_proxy):]
    return {model: prior * float(value) for model, value in zip(names, normed, strict=True)}
