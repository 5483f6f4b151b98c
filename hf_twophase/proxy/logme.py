"""LogME (You et al., ICML 2021): the evidence of a Bayesian linear model from features to labels.

A transferability score that needs no source head, only features: for each target class, the
one-vs-rest indicator is regressed on the features with a Gaussian prior (precision alpha) and
Gaussian noise (precision beta); alpha and beta are set by evidence maximisation (MacKay's fixed
point), and the log evidence per sample is averaged over classes. Higher is better. One SVD of the
features serves every class and every iteration.
"""

from __future__ import annotations

import numpy as np


def logme(features: np.ndarray, labels: np.ndarray, *, max_iter: int = 100, tol: float = 1e-5) -> float:
    """LogME of `features` (n x D) for integer `labels` (n); classes absent from `labels` are skipped."""
    f = np.asarray(features, dtype=np.float64)
    y_all = np.asarray(labels)
    if f.ndim != 2 or len(f) != len(y_all):
        raise ValueError(f"expected features n x D and n labels, got {f.shape} and {y_all.shape}")
    n, dim = f.shape
    if n < 2:
        raise ValueError("LogME needs at least 2 samples")
    if not np.isfinite(f).all():
        raise ValueError("the features hold non-finite values")
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s * s
    rank = len(s)
    evidences = []
    for k in np.unique(y_all):
        y = (y_all == k).astype(np.float64)
        z = u.T @ y
        outside = max(float(y @ y - z @ z), 0.0)  # part of y no feature direction can explain
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            t = alpha + beta * sigma
            gamma = float((beta * sigma / t).sum())
            coef = beta * s * z / t  # m = V coef
            m2 = float(coef @ coef)
            res2 = float(((z - s * coef) ** 2).sum()) + outside
            new_alpha = gamma / max(m2, 1e-12)
            new_beta = (n - gamma) / max(res2, 1e-12)
            done = abs(new_alpha / alpha - 1) < tol and abs(new_beta / beta - 1) < tol
            alpha, beta = new_alpha, new_beta
            if done:
                break
        t = alpha + beta * sigma
        coef = beta * s * z / t
        m2 = float(coef @ coef)
        res2 = float(((z - s * coef) ** 2).sum()) + outside
        log_det = float(np.log(t).sum()) + (dim - rank) * np.log(alpha)
        evidence = (n / 2 * np.log(beta) + dim / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
                    - beta / 2 * res2 - alpha / 2 * m2 - log_det / 2)
        evidences.append(evidence / n)
    return float(np.mean(evidences))
