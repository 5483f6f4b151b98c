"""How a benchmark script is called and hands back its figures: the Markdown on stdout and in ``--out``, the raw
outcomes in ``--json``. Shared so every script reads and writes the same way."""

from __future__ import annotations

import argparse
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


def stage_lengths(text: str) -> list[int]:
    """``--stages``: comma-separated first-stage lengths, each a positive integer (an argparse type)."""
    try:
        lengths = [int(part) for part in text.split(",")]
    except ValueError:
        lengths = []
    if not lengths or min(lengths) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers such as 1,2,5, got {text!r}")
    return lengths


def cv_parser(doc: str, *, stages: str | None = None) -> argparse.ArgumentParser:
    """The arguments of a cross-validated replay: the records, the folds and their seed, the outputs, and (for
    phase 2) the stage lengths."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--records", required=True)
    if stages is not None:
        parser.add_argument("--stages", type=stage_lengths, default=stages,
                            help="first-stage lengths to replay, comma-separated")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the Markdown tables here too")
    parser.add_argument("--json", default=None, help="write every held-out outcome as JSON here")
    return parser
