"""How a benchmark script hands back its figures: the Markdown on stdout and in ``--out``, the raw outcomes in
``--json``. Shared so every script writes the same way."""

from __future__ import annotations

import json

import numpy as np


def _plain(value):
    return bool(value) if isinstance(value, np.bool_) else float(value)


def emit(text: str, out: str | None = None, json_path: str | None = None, payload: dict | None = None) -> None:
    print(text)
    if out:
        with open(out, "w") as handle:
            handle.write(text + "\n")
    if json_path:
        with open(json_path, "w") as handle:
            json.dump(payload or {}, handle, indent=2, default=_plain)
