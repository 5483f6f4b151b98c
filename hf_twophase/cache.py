"""Where hf-twophase keeps what it can always rebuild: proxy scores, the embedded default repository.

``$HF_TWOPHASE_CACHE`` wins, then ``$XDG_CACHE_HOME/hf_twophase``, then ``~/.cache/hf_twophase``, as other Hugging
Face tools place their caches.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("HF_TWOPHASE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "hf_twophase")
    return Path(root)
