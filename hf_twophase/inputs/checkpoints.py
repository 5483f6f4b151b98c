"""What a checkpoint on disk is, and what to tell the user when it will not load.

The proxy scorer and the Trainer candidates load the same checkpoints; they must recognise them, and explain a
refusal caused by our safety defaults (no custom code, no pickled weights), in the same words.
"""

from __future__ import annotations

import json
from pathlib import Path

from hf_twophase.errors import HFTwoPhaseError

TIMM_SAFE_WEIGHTS = "model.safetensors"


class PickledWeightsError(HFTwoPhaseError, ValueError):
    """A checkpoint offers only pickled weights and the caller did not allow pickles."""


def is_timm_dir(path: Path) -> bool:
    """A timm folder (``config.json`` with an ``architecture`` and no transformers ``model_type``)."""
    cfg = path / "config.json"
    if not cfg.is_file():
        return False
    try:
        data = json.loads(cfg.read_text())
    except ValueError:
        return False
    return "architecture" in data and "model_type" not in data



def timm_source(spec: str, *, allow_pickle: bool) -> str:
    """The name to give ``timm.create_model`` for ``spec`` (a folder, ``local-dir:``, ``hf-hub:`` or a Hub id), such
    that it loads safetensors weights only, unless ``allow_pickle``.

    timm falls back to ``pytorch_model.bin`` by itself when a repository has no safetensors file, and unpickling is
    code execution in the worst case; so without ``allow_pickle`` a Hub repository's ``model.safetensors`` and
    ``config.json`` are fetched first and the model is built from that folder, where no pickle was downloaded.
    """
    path = Path(spec.removeprefix("local-dir:"))
    if spec.startswith("local-dir:") or path.is_dir():
        if not allow_pickle and not (path / TIMM_SAFE_WEIGHTS).is_file():
            raise PickledWeightsError(f"timm model at {path} has no {TIMM_SAFE_WEIGHTS}; expected safetensors "
                                      "weights (pass allow_pickle=True to load pickled weights you trust)")
        return f"local-dir:{path}"
    repo = spec.removeprefix("hf-hub:")
    if allow_pickle:
        return f"hf-hub:{repo}"
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    from hf_twophase.hub.client import is_remote_missing

    try:
        weights = Path(hf_hub_download(repo, TIMM_SAFE_WEIGHTS))
    except EntryNotFoundError as exc:
        if not is_remote_missing(exc):
            raise
        raise PickledWeightsError(f"timm model {repo} has no {TIMM_SAFE_WEIGHTS} on the Hub; expected safetensors "
                                  "weights (pass allow_pickle=True to load pickled weights you trust)") from None
    hf_hub_download(repo, "config.json")
    return f"local-dir:{weights.parent}"


def load_hint(exc: BaseException, *, allow_pickle: bool) -> str:
    """What the user can do about a load failure that our own safety defaults caused (empty if none did)."""
    if "trust_remote_code" in str(exc):
        return " (it needs custom code: pass trust_remote_code=True only if you trust this repository)"
    if "safetensors" in str(exc).lower() and not allow_pickle:
        return " (only pickled weights found? pass allow_pickle=True if you trust this checkpoint)"
    return ""
