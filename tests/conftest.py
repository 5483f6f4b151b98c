"""Shared fixtures: small hand-made records, written the way users write them."""

from __future__ import annotations

import pandas as pd
import pytest


@pytest.fixture
def write_csv(tmp_path):
    def write(rows, name="records.csv", text=None):
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        else:
            pd.DataFrame(rows).to_csv(path, index=False)
        return path

    return write


def cell_records(matrix: dict[str, dict[str, float]]) -> list[dict]:
    """One-step records from {model: {dataset: score}}."""
    return [
        {"model": m, "dataset": d, "step": 1, "val": v, "test": v, "cost": 1.0}
        for m, row in matrix.items()
        for d, v in row.items()
    ]
