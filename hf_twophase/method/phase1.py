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
from hf_twophase.method.prior import robust_prior
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
        return robust_recall(self.clustering.models, self.prior, {m: proxy[m] for m in needed if m in proxy}, k,
                             self.recall_config, cold_proxy=cold_proxy)


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
