"""hf-twophase: pick the best pre-trained Hub model for a new classification dataset, fast.

By default, phase 1 ranks the performance matrix's models by a prior robust to collapsed fine-tunes, proxy-scores
(LEEP) only the models the matrix does not know, and recalls the top K; phase 2 fine-tunes the recalled models in
stages and keeps the better half by validation score after each stage, fewer where the benchmarks' learning curves
show that the eventual best was already ranked that high (calibrated halving). The paper's own variants (Eq. 2-4
recall over cluster representatives, trend pruning) are ``variant="paper"``. See README.md and docs/method.md.
"""

from hf_twophase.errors import HFTwoPhaseError, RecordsError, SelectionError
from hf_twophase.method.clustering import Clustering, ClusteringConfig, cluster_models
from hf_twophase.method.phase1 import Phase1
from hf_twophase.method.policies import (
    BruteForce,
    Decision,
    FineSelection,
    StageSchedule,
    SuccessiveHalving,
    TwoPhase,
)
from hf_twophase.method.recall import RecallResult, coarse_recall
from hf_twophase.method.registry import make_fine_selection
from hf_twophase.method.scheduler import Answer, MemoryStorage, StageScheduler
from hf_twophase.method.trends import BenchmarkCurves, GainTrendPredictor, PaperTrendPredictor
from hf_twophase.records.matrix import PerformanceMatrix, read_proxy_scores
from hf_twophase.version import __version__

_LAZY = {  # torch-heavy pieces load on first use, so the CLI and the pure algorithms start fast
    "LEEPScorer": "hf_twophase.proxy", "LogMEScorer": "hf_twophase.proxy", "ProxyConfig": "hf_twophase.proxy",
    "ProxyResult": "hf_twophase.proxy", "RepoSelector": "hf_twophase.selector",
    "SelectorConfig": "hf_twophase.selector", "SelectionConfig": "hf_twophase.trainer.config",
    "SelectionCoordinator": "hf_twophase.trainer.coordinator", "FineSelectionCallback": "hf_twophase.trainer.callback",
    "Candidate": "hf_twophase.trainer.candidates", "CheckpointSearch": "hf_twophase.trainer.search",
    "DirectoryStorage": "hf_twophase.trainer.storage",
    "directory_scheduler": "hf_twophase.trainer.storage", "SelectionReport": "hf_twophase.trainer.report",
    "LocalHub": "hf_twophase.hub.server", "load_matrix": "hf_twophase.hub.client",
    "push_matrix": "hf_twophase.hub.client",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hf_twophase' has no attribute {name!r}")

__all__ = [
    "Answer",
    "BenchmarkCurves",
    "BruteForce",
    "Candidate",
    "CheckpointSearch",
    "Clustering",
    "ClusteringConfig",
    "Decision",
    "DirectoryStorage",
    "FineSelection",
    "FineSelectionCallback",
    "GainTrendPredictor",
    "HFTwoPhaseError",
    "LEEPScorer",
    "LocalHub",
    "LogMEScorer",
    "MemoryStorage",
    "PaperTrendPredictor",
    "PerformanceMatrix",
    "Phase1",
    "ProxyConfig",
    "ProxyResult",
    "RecallResult",
    "RecordsError",
    "RepoSelector",
    "SelectionConfig",
    "SelectionCoordinator",
    "SelectionError",
    "SelectionReport",
    "SelectorConfig",
    "StageSchedule",
    "StageScheduler",
    "SuccessiveHalving",
    "TwoPhase",
    "__version__",
    "cluster_models",
    "directory_scheduler",
    "load_matrix",
    "coarse_recall",
    "make_fine_selection",
    "push_matrix",
    "read_proxy_scores",
]
