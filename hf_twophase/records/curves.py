"""Dense views of recorded learning curves, for the code that reads them step by step (replay, live trends).

A records table is long (one row per evaluation); replaying a policy asks "what was model m's val on dataset d at
step s" thousands of times, so the table is laid out once as arrays indexed by model, dataset and step.
"""

from __future__ import annotations

import numpy as np

from hf_twophase.records.matrix import PerformanceMatrix


class CurveCube:
    """Dense view of a matrix: val[model, dataset, step-1], cost[...] and final[model, dataset] (NaN = none)."""

    def __init__(self, matrix: PerformanceMatrix):
        rec = matrix.records
        self.models = matrix.models
        self.datasets = matrix.datasets
        self.max_step = int(rec["step"].max())
        mi = {m: i for i, m in enumerate(self.models)}
        di = {d: i for i, d in enumerate(self.datasets)}
        m_idx = rec["model"].map(mi).to_numpy()
        d_idx = rec["dataset"].map(di).to_numpy()
        s_idx = rec["step"].to_numpy() - 1
        shape = (len(self.models), len(self.datasets), self.max_step)
        self.val = np.full(shape, np.nan)
        self.cost = np.full(shape, np.nan)
        self.present = np.zeros(shape, dtype=bool)
        self.val[m_idx, d_idx, s_idx] = rec["val"].to_numpy(dtype=float)
        self.cost[m_idx, d_idx, s_idx] = rec["cost"].to_numpy(dtype=float)
        self.present[m_idx, d_idx, s_idx] = True
        self.final = matrix.final_scores().reindex(index=self.models, columns=self.datasets).to_numpy(dtype=float)
        self._mi, self._di = mi, di

    def models_on(self, dataset: str) -> list[str]:
        d = self._di[dataset]
        return [m for i, m in enumerate(self.models) if self.present[i, d].any()]

    def benchmark_arrays(self, model: str, exclude: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray] | None:
        """A model's (benchmarks, val[benchmark, step], final[benchmark]) on every dataset but `exclude`: the only
        history fine selection may use. None when the model has no other curve."""
        i = self._mi.get(model)
        if i is None:
            return None
        keep = [j for j, d in enumerate(self.datasets) if d != exclude and self.present[i, j].any()]
        if not keep:
            return None
        return tuple(self.datasets[j] for j in keep), self.val[i, keep], self.final[i, keep]

    def val_at(self, model: str, dataset: str, step: int) -> float:
        """The val a live run would report at `step`: the latest recorded point at or before it."""
        row = self.val[self._mi[model], self._di[dataset], :step]
        have = self.present[self._mi[model], self._di[dataset], :step]
        return float(row[have][-1]) if have.any() else float("nan")

    def cost_until(self, model: str, dataset: str, step: int) -> float:
        """Recorded cost of steps 1..step; a recorded step without a cost counts as one unit."""
        c = self.cost[self._mi[model], self._di[dataset], :step]
        have = self.present[self._mi[model], self._di[dataset], :step]
        return float(np.where(np.isnan(c), 1.0, c)[have].sum())

    def last_step(self, model: str, dataset: str) -> int:
        have = np.flatnonzero(self.present[self._mi[model], self._di[dataset]])
        return int(have[-1]) + 1 if have.size else 0

    def final_of(self, model: str, dataset: str) -> float:
        return float(self.final[self._mi[model], self._di[dataset]])
