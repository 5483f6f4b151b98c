"""Proxy (transferability) scores of a checkpoint on a user's data: LEEP, and LogME, k-NN accuracy, H-score and GBC
on pooled features."""

from hf_twophase.inputs.columns import Columns, DatasetError, detect_columns, stratified_indices
from hf_twophase.proxy.feature_scores import FEATURE_SCORES, gbc, h_score, knn_accuracy
from hf_twophase.proxy.leep import LEEPAccumulator, leep
from hf_twophase.proxy.logme import logme
from hf_twophase.proxy.models import LoadedModel, ModelLoadError, load_model
from hf_twophase.proxy.scorer import FeatureScorer, LEEPScorer, LogMEScorer, ProxyConfig, ProxyResult, make_scorer

__all__ = [
    "FEATURE_SCORES", "Columns", "DatasetError", "FeatureScorer", "LEEPAccumulator", "LEEPScorer", "LoadedModel",
    "LogMEScorer", "ModelLoadError", "ProxyConfig", "ProxyResult", "detect_columns", "gbc", "h_score", "knn_accuracy",
    "leep", "load_model", "logme", "make_scorer", "stratified_indices",
]
