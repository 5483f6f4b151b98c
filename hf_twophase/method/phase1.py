"""Phase 1 over a performance matrix: leave the target out, cluster, find who to score, recall.

The glue between the records (`PerformanceMatrix`) and the pure algorithms, shared by the CLI, the
replay simulator and the Hub selector so that all three recall exactly the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from hf_twophase.errors import SelectionError
from hf_twophase.method.clustering import Clustering, ClusteringConfig, cluster_models
from hf_twophase.method.prior import agreement_weights, benchmark_agreement, robust_prior, weighted_prior
from hf_twophase.method.recall import (
    Normaliser,
    RecallConfig,
    RecallResult,
    coarse_recall,
    minmax_normaliser,
    models_to_score,
    robust_recall,
    robust_shortlist,
)
from hf_twophase.records.matrix import PerformanceMatrix


@dataclass
class Phase1:
    """A clustered repository, ready to recall for a target once its representatives are scored."""

    clustering: Clustering
    scores: np.ndarray
    benchmarks: list[str]
    recall_config: RecallConfig = field(default_factory=RecallConfig)

    @cached_property
    def prior(self) -> np.ndarray:
        """The robust prior of every model, in ``clustering.models`` order."""
        return robust_prior(self.scores)

    @classmethod
    def from_matrix(
        cls,
        matrix: PerformanceMatrix,
        *,
        target: str | None = None,
        candidates: Iterable[str] | None = None,
        config: ClusteringConfig | None = None,
        recall: RecallConfig | None = None,
    ) -> Phase1:
        """Cluster the candidates on every benchmark except `target` (strict leave-one-out)."""
        table: pd.DataFrame = matrix.final_scores()
        if target is not None:
            table = table.drop(columns=[target], errors="ignore")
        table = table.dropna(how="all")  # a model known only on the target cannot be clustered
        if candidates is not None:
            wanted = list(dict.fromkeys(candidates))
            table = table.reindex([m for m in wanted if m in table.index])
        if table.empty:
            raise SelectionError(
                "no candidate model has a final score on any benchmark"
                + (f" other than the target '{target}'" if target else "")
            )
        models = table.index.tolist()
        scores = table.to_numpy(dtype=float)
        return cls(clustering=cluster_models(models, scores, config), scores=scores, benchmarks=table.columns.tolist(),
                   recall_config=recall or RecallConfig())

    def to_score(self, k: int, *, calibrate: bool = False) -> list[str]:
        """The models whose proxy score the recall needs, in the order they should be scored; ``calibrate``: cold
        models will be ranked too, and the robust variant needs a shortlist to read their scores against."""
        if self.recall_config.variant == "paper":
            return models_to_score(self.clustering, k)
        return robust_shortlist(self.clustering, self.prior, k, self.recall_config, calibrate=calibrate)

    def recall(
        self, proxy: Mapping[str, float] | Callable[[str], float], k: int = 10, normaliser: Normaliser | None = None,
        cold_proxy: Mapping[str, float] | None = None,
    ) -> RecallResult:
        """Recall the top-k. `proxy` is a mapping of raw proxy scores, or a function that scores one model
        (called only for the models that need a score). ``cold_proxy`` (robust variant) are proxy scores of models
        outside the matrix, ranked with the rest."""
        needed = self.to_score(k, calibrate=bool(cold_proxy))
        if callable(proxy):
            proxy = {m: float(proxy(m)) for m in needed}
        if self.recall_config.variant == "paper":
            return coarse_recall(self.clustering, self.scores, proxy, k=k, normaliser=normaliser or minmax_normaliser)
        scored = {m: proxy[m] for m in needed if m in proxy}
        weights = self.benchmark_weights(scored)
        prior = self.prior if weights is None else weighted_prior(self.scores, weights)
        result = robust_recall(self.clustering.models, prior, scored, k, self.recall_config, cold_proxy=cold_proxy)
        if weights is not None:
            result.benchmark_weights = dict(zip(self.benchmarks, weights.tolist(), strict=True))
            result.note += "; benchmarks weighted by their agreement with the proxy on the target"
        return result

    def benchmark_weights(self, proxy: Mapping[str, float]) -> np.ndarray | None:
        """Target-aware recall: each benchmark's weight from how its scores of the proxy-scored models agree with
        their proxy scores on the target. None when the setting is off or fewer than three models were scored (an
        agreement needs a ranking)."""
        temperature = self.recall_config.target_temperature
        index = {m: i for i, m in enumerate(self.clustering.models)}
        probes = [m for m in proxy if m in index and np.isfinite(proxy[m])]
        if temperature is None or len(probes) < 3:
            return None
        agreement = benchmark_agreement(self.scores, np.array([index[m] for m in probes]),
                                        np.array([proxy[m] for m in probes]))
        return agreement_weights(agreement, temperature)


def proxy_lookup(table: pd.DataFrame, target: str, method: str | None = None) -> tuple[dict[str, float], str]:
    """Raw proxy scores of every model on `target` from a proxy table, and the method they come from."""
    rows = table[table["dataset"] == target]
    methods = sorted(rows["method"].unique().tolist())
    if method is None:
        if len(methods) > 1:
            raise SelectionError(f"the proxy file holds several methods for '{target}' ({', '.join(methods)}); "
                                 "choose one with --proxy-method")
        method = methods[0] if methods else ""
    rows = rows[rows["method"] == method]
    return dict(zip(rows["model"], rows["score"].astype(float), strict=False)), method
