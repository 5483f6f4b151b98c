"""Eq. 1 of the paper: how alike two models are, judged by where their benchmark scores differ most.

sim(m1, m2) = 1 - mean of the k largest |score(d|m1) - score(d|m2)| over benchmarks d.

Averaging only the largest gaps makes two models similar only if they agree everywhere, not on
average. Benchmarks where either model has no score are left out; a pair that shares k or fewer
benchmarks cannot be judged and is infinitely far apart (it never merges into one cluster).
"""

from __future__ import annotations

import numpy as np

DEFAULT_TOP_K = 5


def pair_distance(a: np.ndarray, b: np.ndarray, top_k: int = DEFAULT_TOP_K) -> float:
    """Eq. 1 distance (1 - sim) between two score vectors with NaN for missing cells."""
    shared = ~(np.isnan(a) | np.isnan(b))
    if shared.sum() <= top_k:
        return float("inf")
    gaps = np.sort(np.abs(a[shared] - b[shared]))[::-1]
    return float(gaps[:top_k].mean())


def pairwise_distances(
    scores: np.ndarray, top_k: int = DEFAULT_TOP_K, *, block_elements: int = 8_000_000
) -> np.ndarray:
    """Square matrix of Eq. 1 distances between the rows of `scores` (models x benchmarks, NaN = missing).

    Vectorised in row blocks over the upper triangle so that 10,000 models x 50 benchmarks fits in
    memory and seconds; `block_elements` bounds the size of one block of gaps.
    """
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 2:
        raise ValueError(f"expected a 2-D models x benchmarks array, got shape {scores.shape}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    n, d = scores.shape
    out = np.full((n, n), np.inf, dtype=np.float64)
    if n == 0:
        return out
    np.fill_diagonal(out, 0.0)
    if d <= top_k:
        return out
    valid = ~np.isnan(scores)
    valid_f = valid.astype(np.float32)
    has_missing = not valid.all()
    block = max(1, block_elements // max(1, n * d))
    buffer = np.empty((block, n, d), dtype=np.float32)  # reused: allocation dominates otherwise
    for start in range(0, n, block):
        stop = min(n, start + block)
        gaps = buffer[: stop - start, : n - start]
        np.subtract(scores[start:stop, None, :], scores[None, start:, :], out=gaps)
        np.abs(gaps, out=gaps)
        if has_missing:
            # a gap involving a missing cell is NaN; fmax turns it into -1, below every real gap, so top-k never
            # picks it (and it is the fastest NaN replacement numpy has)
            np.fmax(gaps, -1.0, out=gaps)
        top = np.partition(gaps, d - top_k, axis=-1)[..., d - top_k:]
        dist = top.mean(axis=-1, dtype=np.float64)
        if has_missing:
            shared = valid_f[start:stop] @ valid_f[start:].T
            dist[shared <= top_k] = np.inf
        for offset in range(stop - start):
            i = start + offset
            out[i, i + 1:] = dist[offset, offset + 1:]
    return np.minimum(out, out.T)


def similarity_from_distance(distance: np.ndarray | float) -> np.ndarray | float:
    """sim = 1 - distance, floored at 0 so that incomparable pairs (inf) and very different ones weigh nothing."""
    return np.maximum(0.0, 1.0 - np.asarray(distance, dtype=float))
