"""Phase 1, step 2: coarse recall, in two variants.

- ``paper`` (Eq. 2-4): only cluster representatives are proxy-scored. A model in a non-singleton cluster inherits
  its representative's proxy score, weighted by its own mean benchmark score (Eq. 3); a singleton borrows from every
  representative, weighted by how similar it is to each (Eq. 4). Proxy scores live on different scales (LEEP <= 0,
  LogME any real), so a normaliser maps them to [0, 1] before they multiply accuracies.
- ``robust`` (the default): the robust prior of ``prior.py`` ranks the repository, and the proxy re-ranks a
  shortlist of at most ``proxy_fraction`` of it: standardised prior + ``proxy_weight`` x standardised proxy. On
  recorded benchmarks the prior was the weak part of Eq. 3-4 and the proxy mostly reordered a near-tied top group, so
  the proxy is a correction of the prior here, not a multiplier of it. Its constants were chosen by k-fold over
  datasets (``benchmarks/recall_benchmark.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hf_twophase.errors import SelectionError
from hf_twophase.method.clustering import Clustering, mean_scores
from hf_twophase.method.prior import zscore
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


RECALL_VARIANTS = ("robust", "paper")
DEFAULT_K = 10  # the paper's K: how many models phase 1 recalls
# Cold models (in no matrix) proxy-scored by default. Most of the Hub's most downloaded models are in no matrix, so
# they must be able to compete; each costs one proxy pass (a forward pass over the proxy's samples, no training).
# Ten is 10% of the default listing of 100 models: the proxy budget recall is held to.
DEFAULT_COLD_BUDGET = 10
SHORTLIST_RULES = ("prior", "representatives")


@dataclass
class RecallConfig:
    """How phase 1 ranks the repository. The defaults of ``robust`` were chosen by 3-fold cross-validation over the
    datasets of a recorded matrix (docs/benchmarks.md), never on the dataset they were then measured on."""

    variant: str = field(default="robust", metadata={"help": f"One of {', '.join(RECALL_VARIANTS)}; 'paper' is "
                                                                "Eq. 2-4 exactly."})
    proxy_fraction: float = field(
        default=0.10, metadata={"help": "robust: proxy-score at most this fraction of the repository (at least one)."})
    proxy_weight: float = field(
        default=0.0, metadata={"help": "robust: weight of the standardised proxy against the standardised prior. 0 "
                                       "(prior-only recall of the models in the matrix) was chosen on every fold; "
                                       "the proxy then only ranks cold models."})
    shortlist: str = field(
        default="prior", metadata={"help": "robust: which models are proxy-scored: 'prior' (the best priors) or "
                                           "'representatives' (cluster representatives first, then the best priors)."})
    target_temperature: float | None = field(
        default=None, metadata={"help": "robust: weight the benchmarks by how much they resemble the target. The "
                                        "shortlist is proxy-scored on the target, and each benchmark weighs "
                                        "softmax(agreement / T), agreement being Spearman's rho between its scores "
                                        "and the proxy's over the shortlist. None: every benchmark alike (chosen "
                                        "on every fold, docs/benchmarks.md)."})

    def __post_init__(self) -> None:
        if self.variant not in RECALL_VARIANTS:
            raise SelectionError(f"unknown recall variant {self.variant!r}; expected one of "
                                 f"{', '.join(RECALL_VARIANTS)}")
        if self.shortlist not in SHORTLIST_RULES:
            raise SelectionError(f"unknown shortlist rule {self.shortlist!r}; expected one of "
                                 f"{', '.join(SHORTLIST_RULES)}")
        if not 0.0 < self.proxy_fraction <= 1.0 or not math.isfinite(self.proxy_fraction):
            raise SelectionError(f"proxy_fraction must be in (0, 1], got {self.proxy_fraction}")
        if self.proxy_weight < 0 or not math.isfinite(self.proxy_weight):
            raise SelectionError(f"proxy_weight must be a finite number >= 0, got {self.proxy_weight}")
        if self.target_temperature is not None and not (
                math.isfinite(self.target_temperature) and self.target_temperature > 0):
            raise SelectionError(f"target_temperature must be a finite number > 0 (or None), got "
                                 f"{self.target_temperature}")

    @property
    def scores_shortlist(self) -> bool:
        """Whether the robust variant proxy-scores its shortlist for the models in the matrix."""
        return self.proxy_weight > 0 or self.target_temperature is not None


def proxy_budget(n_models: int, fraction: float) -> int:
    """How many models the robust variant may proxy-score."""
    return max(1, math.floor(fraction * n_models + 1e-9))


@dataclass
class RecallResult:
    """Which models were recalled, with the bookkeeping that makes the proxy cost visible."""

    recalled: list[str]
    scored: list[str]
    scores: dict[str, float]
    proxy: dict[str, float] = field(default_factory=dict)
    note: str = ""
    prior: dict[str, float] = field(default_factory=dict)  # robust: each model's standardised prior
    benchmark_weights: dict[str, float] = field(default_factory=dict)  # target-aware: each benchmark's weight

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


def robust_shortlist(clustering: Clustering, prior: np.ndarray, k: int, config: RecallConfig, *,
                     calibrate: bool = False) -> list[str]:
    """The models the robust variant proxy-scores, at most the proxy budget: none when the repository is no larger
    than K (all recalled) or neither the proxy weight nor target-aware weights ask for scores, unless cold models will
    be ranked (``calibrate``): their proxy scores are read against those of the shortlist."""
    models = clustering.models
    if not calibrate and (len(models) <= k or not config.scores_shortlist):
        return []
    budget = min(len(models), proxy_budget(len(models), config.proxy_fraction))
    order = [models[i] for i in sorted(range(len(models)), key=lambda i: (-prior[i], models[i]))]
    if config.shortlist == "prior":
        return order[:budget]
    rank = {m: i for i, m in enumerate(order)}
    reps = sorted((clustering.representatives[c] for c in clustering.non_singleton), key=lambda m: rank[m])
    return list(dict.fromkeys([*reps, *order]))[:budget]


def robust_recall(models: Sequence[str], prior: np.ndarray, proxy: Mapping[str, float], k: int,
                  config: RecallConfig, cold_proxy: Mapping[str, float] | None = None) -> RecallResult:
    """Rank by standardised prior, re-ranked by the proxy where it was computed; cold models (no prior) get the
    prior their proxy score predicts among the scored warm models, so they compete on the same scale."""
    if k < 1:
        raise SelectionError(f"k must be >= 1, got {k}")
    models = list(models)
    prior_z = dict(zip(models, zscore(prior), strict=True))
    scored = [m for m in models if m in proxy and np.isfinite(proxy[m])]
    cold = {m: float(v) for m, v in (cold_proxy or {}).items() if np.isfinite(v)}
    combined = dict(prior_z)
    if scored or cold:
        warm_raw = np.array([proxy[m] for m in scored], dtype=float)
        basis = warm_raw if len(scored) >= 2 and np.std(warm_raw) > 1e-12 else np.array(
            [*warm_raw, *cold.values()], dtype=float)
        mean, std = float(np.mean(basis)), float(np.std(basis))
        std = std if std > 1e-12 else 1.0

        def z(value: float) -> float:
            return (value - mean) / std

        for m in scored:
            combined[m] = prior_z[m] + config.proxy_weight * z(proxy[m])
        if cold:
            xs = np.array([z(proxy[m]) for m in scored])
            ys = np.array([prior_z[m] for m in scored])
            # too few warm scores to fit on: the proxy stands for the prior, around the scored models' median
            slope, intercept = 1.0, float(np.median(ys)) if len(ys) else 0.0
            if len(scored) >= 3 and np.std(xs) > 1e-12:
                slope, intercept = np.polyfit(xs, ys, 1)
                slope = max(float(slope), 0.0)  # a proxy that anti-predicts the prior says nothing about cold ones
                intercept = float(np.mean(ys) - slope * np.mean(xs))
            for m, value in cold.items():
                combined[m] = intercept + slope * z(value) + config.proxy_weight * z(value)
    raw = {**{m: float(proxy[m]) for m in scored}, **cold}
    order = sorted(combined, key=lambda m: (-combined[m], -raw.get(m, -np.inf), m))  # ties: the better proxy first
    note = (f"robust prior; proxy on {len(scored)} shortlisted model(s) of {len(models)}"
            + (f" and {len(cold)} cold model(s) ranked by the prior their proxy predicts" if cold else "")
            if scored or cold else f"robust prior only ({len(models)} model(s), none proxy-scored)")
    return RecallResult(recalled=order[:k], scored=scored, scores={m: float(combined[m]) for m in order},
                        proxy=raw, note=note,
                        prior={m: float(v) for m, v in prior_z.items()})
