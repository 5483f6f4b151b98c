"""Synthetic performance matrices: a records file anyone can generate offline, for demos, tests and scale runs.

Models come in families that share a skill profile over benchmarks (so clustering has something to
find); each learning curve rises towards its final score at a model-specific speed, with noise. The
numbers are made up and say nothing about real models: use them to exercise the code, never to
report how well the method selects.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def synthetic_records(
    n_models: int = 40,
    n_benchmarks: int = 12,
    *,
    n_families: int = 6,
    steps: int = 5,
    missing: float = 0.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Records (`model, dataset, step, val, test, cost`) for `n_models` x `n_benchmarks` synthetic curves."""
    rng = np.random.default_rng(seed)
    family = rng.integers(0, n_families, size=n_models)
    difficulty = rng.uniform(0.4, 0.95, size=n_benchmarks)
    profile = rng.normal(0.0, 0.06, size=(n_families, n_benchmarks))
    final = difficulty[None, :] + profile[family] + rng.normal(0.0, 0.01, size=(n_models, n_benchmarks))
    final = np.clip(final, 0.01, 0.999)
    speed = rng.uniform(0.3, 1.5, size=n_models)
    cost_per_step = rng.uniform(10.0, 60.0, size=n_models)
    rows = []
    for m in range(n_models):
        for d in range(n_benchmarks):
            if missing and rng.random() < missing:
                continue
            for s in range(1, steps + 1):
                frac = 1.0 - np.exp(-speed[m] * s)
                val = final[m, d] * (0.5 + 0.5 * frac / (1.0 - np.exp(-speed[m] * steps)))
                val = float(np.clip(val + rng.normal(0.0, 0.005), 0.0, 1.0)) if s < steps else float(final[m, d])
                rows.append((f"family{family[m]}/model-{m:05d}", f"bench-{d:02d}", s, round(val, 5),
                             round(float(final[m, d]), 5) if s == steps else np.nan,
                             round(float(cost_per_step[m] * rng.uniform(0.95, 1.05)), 3)))
    return pd.DataFrame(rows, columns=["model", "dataset", "step", "val", "test", "cost"])


def synthetic_proxy(
    records: pd.DataFrame, *, method: str = "leep", noise: float = 0.05, seed: int = 0
) -> pd.DataFrame:
    """Proxy scores that track each pair's final score with noise (LEEP-like: <= 0)."""
    rng = np.random.default_rng(seed)
    last = records.dropna(subset=["test"]).groupby(["model", "dataset"], sort=True)["test"].last().reset_index()
    score = np.log(np.clip(last["test"].to_numpy() + rng.normal(0.0, noise, len(last)), 1e-3, 1.0))
    return pd.DataFrame({"model": last["model"], "dataset": last["dataset"], "method": method,
                         "score": np.round(score, 6), "cost": 1.0})
