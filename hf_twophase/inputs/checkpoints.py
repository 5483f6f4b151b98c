"""What a checkpoint on disk is, and what to tell the user when it will not load.

The proxy scorer and the Trainer candidates load the same checkpoints; they must recognise them, and explain a
refusal caused by our safety defaults (no custom code, no pickled weights), in the same words.
"""

from __future__ import annotations

import json
from pathlib import Path


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



def load_hint(exc: BaseException, *, allow_pickle: bool) -> str:
    """What the user can do about a load failure that our own safety defaults caused (empty if none did)."""
    if "trust_remote_code" in str(exc):
        return " (it needs custom code: pass trust_remote_code=True only if you trust this repository)"
    if "safetensors" in str(exc).lower() and not allow_pickle:
        return " (only pickled weights found? pass allow_pickle=True if you trust this checkpoint)"
    return ""
