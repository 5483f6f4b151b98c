"""The prior of coarse recall: how good a model is on the benchmarks, robust to collapsed fine-tunes and to benchmarks
of different spreads.

Why not the paper's plain mean accuracy (the ``acc(m)`` of Eq. 3-4): a strong model whose fine-tuning diverged on a
few benchmarks (chance-level scores) gets a low mean and falls out of reach, though it is the best model elsewhere;
and a raw mean is dominated by the benchmarks whose scores spread the widest. So a cell far below its benchmark's
bulk is masked as a collapsed run, and each benchmark is standardised before the mean. Pure numpy.
"""

from __future__ import annotations

import numpy as np

# A cell whose robust z-score within its benchmark, (score - median) / (IQR / 1.349), is below this is a collapsed
# fine-tune and counts as missing. -3 is the usual outlier fence for a normal bulk; recall results on the recorded
# benchmarks did not move for fences from -2 to -6.
COLLAPSE_Z = -3.0
_IQR_TO_SIGMA = 1.349  # the IQR of a standard normal distribution
_TINY = 1e-12


def _robust_scale(column: np.ndarray) -> float:
    """IQR-based spread of the finite values; the MAD, then the standard deviation, when the IQR is zero."""
    q1, q3 = np.percentile(column, [25, 75])
    scale = (q3 - q1) / _IQR_TO_SIGMA
    if scale <= _TINY:
        scale = 1.4826 * float(np.median(np.abs(column - np.median(column))))
    if scale <= _TINY:
        scale = float(np.std(column))
    return scale


def collapsed_cells(scores: np.ndarray, fence: float = COLLAPSE_Z) -> np.ndarray:
    """Boolean mask (models x benchmarks) of the cells that are collapsed fine-tunes. Missing cells are never
    collapsed; a benchmark with no spread at all has none."""
    scores = np.asarray(scores, dtype=float)
    mask = np.zeros(scores.shape, dtype=bool)
    for j in range(scores.shape[1] if scores.ndim == 2 else 0):
        column = scores[:, j]
        finite = np.isfinite(column)
        if finite.sum() < 3:  # too few runs to call one of them an outlier
            continue
        scale = _robust_scale(column[finite])
        if scale <= _TINY:
            continue
        z = (column[finite] - np.median(column[finite])) / scale
        mask[np.flatnonzero(finite)[z < fence], j] = True
    return mask


def standardised_scores(scores: np.ndarray, fence: float = COLLAPSE_Z) -> np.ndarray:
    """Each benchmark's unmasked cells as z-scores (mean 0, standard deviation 1 over that benchmark); masked and
    missing cells are NaN. A benchmark with zero spread contributes 0 to everyone it scored."""
    scores = np.asarray(scores, dtype=float)
    kept = np.where(collapsed_cells(scores, fence), np.nan, scores)
    z = np.full(kept.shape, np.nan)
    for j in range(kept.shape[1] if kept.ndim == 2 else 0):
        column = kept[:, j]
        finite = np.isfinite(column)
        if not finite.any():
            continue
        std = float(np.std(column[finite]))
        z[finite, j] = 0.0 if std <= _TINY else (column[finite] - np.mean(column[finite])) / std
    return z


def robust_prior(scores: np.ndarray, fence: float = COLLAPSE_Z) -> np.ndarray:
    """One finite prior per model: the mean of its standardised, unmasked benchmark scores. A model with no unmasked
    cell gets the lowest prior (one below the lowest defined one)."""
    z = standardised_scores(scores, fence)
    counts = np.isfinite(z).sum(axis=1) if z.ndim == 2 else np.zeros(len(z))
    prior = np.full(len(z), np.nan)
    has = counts > 0
    prior[has] = np.nansum(z[has], axis=1) / counts[has]
    floor = (float(np.min(prior[has])) if has.any() else 0.0) - 1.0
    prior[~has] = floor
    return prior


def zscore(values: np.ndarray) -> np.ndarray:
    """Standardise a vector; a constant (or one-element) vector maps to zeros."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return values
    std = float(np.std(values))
    return np.zeros_like(values) if std <= _TINY else (values - float(np.mean(values))) / std


def benchmark_agreement(scores: np.ndarray, probes: np.ndarray, probe_proxy: np.ndarray,
                        fence: float = COLLAPSE_Z) -> np.ndarray:
    """How well each benchmark's column ranks the probed models as the target's proxy scores do: Spearman's rho over
    the probes it scored (0 where fewer than three did, or either side is constant). The probes are rows of
    ``scores``; ``probe_proxy`` their proxy scores on the target."""
    from scipy.stats import spearmanr

    z = standardised_scores(scores, fence)
    probes = np.asarray(probes, dtype=int)
    proxy = np.asarray(probe_proxy, dtype=float)
    agreement = np.zeros(z.shape[1])
    for j in range(z.shape[1]):
        column = z[probes, j]
        seen = np.isfinite(column) & np.isfinite(proxy)
        if seen.sum() < 3 or np.ptp(column[seen]) <= _TINY or np.ptp(proxy[seen]) <= _TINY:
            continue
        agreement[j] = float(spearmanr(column[seen], proxy[seen])[0])
    return agreement


def agreement_weights(agreement: np.ndarray, temperature: float) -> np.ndarray:
    """Benchmark weights summing to one: a softmax of the agreements at ``temperature``. A low temperature trusts the
    best-agreeing benchmarks; a high one tends to the plain average."""
    agreement = np.asarray(agreement, dtype=float)
    if agreement.size == 0:
        return agreement
    logits = (agreement - agreement.max()) / temperature
    weights = np.exp(logits)
    return weights / weights.sum()


def weighted_prior(scores: np.ndarray, weights: np.ndarray, fence: float = COLLAPSE_Z) -> np.ndarray:
    """The robust prior with each benchmark weighted: the weighted mean of a model's standardised, unmasked cells
    (weights renormalised over the cells it has). Equal weights give ``robust_prior``."""
    z = standardised_scores(scores, fence)
    weights = np.asarray(weights, dtype=float)
    present = np.isfinite(z)
    mass = present @ weights if z.ndim == 2 else np.zeros(len(z))
    prior = np.full(len(z), np.nan)
    has = mass > _TINY
    prior[has] = np.where(present, z, 0.0)[has] @ weights / mass[has]
    floor = (float(np.min(prior[has])) if has.any() else 0.0) - 1.0
    prior[~has] = floor
    return prior
