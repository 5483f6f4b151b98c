"""Proxy (transferability) scores of a checkpoint on a user's data: LEEP and LogME."""

from .data import Columns, DatasetError, detect_columns, stratified_indices
from .leep import LEEPAccumulator, leep
from .logme import logme
from .models import LoadedModel, ModelLoadError, load_model
from .scorer import LEEPScorer, LogMEScorer, ProxyConfig, ProxyResult

__all__ = [
    "Columns", "DatasetError", "LEEPAccumulator", "LEEPScorer", "LoadedModel", "LogMEScorer", "ModelLoadError",
    "ProxyConfig", "ProxyResult", "detect_columns", "leep", "load_model", "logme", "stratified_indices",
]
