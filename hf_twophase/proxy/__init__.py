"""Proxy (transferability) scores of a checkpoint on a user's data: LEEP and LogME."""

from hf_twophase.inputs.columns import Columns, DatasetError, detect_columns, stratified_indices
from hf_twophase.proxy.leep import LEEPAccumulator, leep
from hf_twophase.proxy.logme import logme
from hf_twophase.proxy.models import LoadedModel, ModelLoadError, load_model
from hf_twophase.proxy.scorer import LEEPScorer, LogMEScorer, ProxyConfig, ProxyResult

__all__ = [
    "Columns", "DatasetError", "LEEPAccumulator", "LEEPScorer", "LoadedModel", "LogMEScorer", "ModelLoadError",
    "ProxyConfig", "ProxyResult", "detect_columns", "leep", "load_model", "logme", "stratified_indices",
]
