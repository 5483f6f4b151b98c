"""The performance matrix: learning curves and final scores of models fine-tuned on benchmark datasets.

Everything in the project speaks one records schema (one row per model, dataset and evaluation
step), so the published Hub dataset, the replay input and the benchmark files are the same table.
This module validates that table once, at the door, so the algorithms behind it can trust it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hf_twophase.atomic import atomic_path
from hf_twophase.errors import RecordsError
from hf_twophase.tasks import check_task

REQUIRED_COLUMNS = ("model", "dataset", "step", "val")
OPTIONAL_COLUMNS = ("test", "cost")
SCHEMA_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
PROXY_REQUIRED_COLUMNS = ("model", "dataset", "method", "score")
_EXPECTED = "expected columns model, dataset, step, val and optionally test, cost"


def _format_of(path: str | os.PathLike) -> str:
    suffix = "".join(Path(path).suffixes[-2:]).lower()
    if suffix.endswith(".parquet") or suffix.endswith(".pq"):
        return "parquet"
    if suffix.endswith(".csv") or suffix.endswith(".csv.gz"):
        return "csv"
    raise RecordsError(f"unknown file type '{Path(path).suffix}'; expected a .csv or .parquet file", source=str(path))


def read_table(path: str | os.PathLike) -> tuple[pd.DataFrame, int]:
    """Read a CSV or Parquet file as strings-or-values, returning the frame and the row offset for messages.

    CSV is read as text so that a non-number is reported as the user wrote it, not as a NaN.
    The offset turns a 0-based data index into the line number a user sees in an editor.
    """
    fmt = _format_of(path)
    if not Path(path).exists():
        raise RecordsError("file not found", source=str(path))
    try:
        if fmt == "csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
            return frame, 2
        return pd.read_parquet(path), 1
    except pd.errors.EmptyDataError:
        raise RecordsError(f"the file is empty; {_EXPECTED}", source=str(path)) from None
    except (ValueError, OSError) as exc:  # pyarrow raises ArrowInvalid, a ValueError
        raise RecordsError(f"cannot be read as {fmt}: {exc}", source=str(path)) from None


def _numeric_column(
    frame: pd.DataFrame, column: str, *, source: str, offset: int, required: bool
) -> np.ndarray:
    raw = frame[column]
    if not pd.api.types.is_numeric_dtype(raw):
        text = raw.astype(str).str.strip()
        empty = raw.isna() | (text == "") | text.str.lower().isin(["nan", "none", "null"])
        values = pd.to_numeric(text.where(~empty, None), errors="coerce")
        bad = values.isna() & ~empty
    else:
        values = pd.to_numeric(raw, errors="coerce")
        empty = raw.isna()
        bad = values.isna() & ~empty
    labels = frame.index.to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise RecordsError(
            f"'{raw.iloc[i]}' is not a number; expected a numeric {column} value",
            source=source, row=int(labels[i]) + offset, column=column,
        )
    out = values.to_numpy(dtype=float)
    if required and np.isnan(out).any():
        i = int(np.flatnonzero(np.isnan(out))[0])
        raise RecordsError(f"{column} is empty; every record needs a {column} value", source=source,
                           row=int(labels[i]) + offset, column=column)
    if np.isinf(out).any():
        i = int(np.flatnonzero(np.isinf(out))[0])
        raise RecordsError(f"{column} is infinite; expected a finite number", source=source,
                           row=int(labels[i]) + offset, column=column)
    return out


def _collapse_duplicates(out: pd.DataFrame, key: list[str], *, source: str) -> pd.DataFrame:
    """Exact duplicate records collapse to one; duplicates that disagree are an error naming both rows."""
    dup = out.duplicated(key, keep=False)
    if not dup.any():
        return out
    for (model, dataset, step), group in out[dup].groupby(key, sort=False):
        values = group[["val", "test", "cost"]].to_numpy()
        if all(np.array_equal(values[0], row, equal_nan=True) for row in values[1:]):
            continue
        rows = group["_row"].tolist()
        differing = next(c for c in ("val", "test", "cost")
                         if not all(np.array_equal(group[c].iloc[0], v, equal_nan=True) for v in group[c]))
        raise RecordsError(
            f"duplicate record for model '{model}', dataset '{dataset}', step {step} with different values "
            f"(rows {', '.join(map(str, rows))}); expected one record per (model, dataset, step)",
            source=source, row=rows[1], column=differing,
        )
    return out.drop_duplicates(key, keep="first")


def validate_records(frame: pd.DataFrame, *, source: str = "<records>", offset: int = 1) -> pd.DataFrame:
    """Check a raw records table and return a clean, typed copy, sorted by model, dataset and step.

    Unknown columns are kept: the schema is a floor, and extra metadata (seed, revision) must
    survive a round trip. Exact duplicate rows collapse to one; conflicting ones are an error,
    since silently picking one would change the matrix behind the user's back.
    """
    if frame is None or len(frame.columns) == 0:
        raise RecordsError(f"no columns; {_EXPECTED}", source=source)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise RecordsError(
            f"missing required column(s) {', '.join(repr(c) for c in missing)}; {_EXPECTED}", source=source,
            column=missing[0],
        )
    if len(frame) == 0:
        raise RecordsError(f"no records (header only); {_EXPECTED}, and at least one row", source=source)
    out = frame.reset_index(drop=True)
    for column in ("model", "dataset"):
        text = out[column].astype(str).str.strip()
        blank = out[column].isna().to_numpy() | (text == "").to_numpy()
        if blank.any():
            i = int(np.flatnonzero(blank)[0])
            raise RecordsError(f"{column} is empty; every record names its {column}", source=source, row=i + offset,
                               column=column)
        out[column] = text
    steps = _numeric_column(out, "step", source=source, offset=offset, required=True)
    bad_step = (steps < 1) | (steps != np.floor(steps))
    if bad_step.any():
        i = int(np.flatnonzero(bad_step)[0])
        raise RecordsError(f"step {frame['step'].iloc[i]!r} is not an integer >= 1", source=source, row=i + offset,
                           column="step")
    out["step"] = steps.astype(np.int64)
    out["val"] = _numeric_column(out, "val", source=source, offset=offset, required=True)
    for column in OPTIONAL_COLUMNS:
        if column in out.columns:
            out[column] = _numeric_column(out, column, source=source, offset=offset, required=False)
        else:
            out[column] = np.nan
    out["_row"] = np.arange(len(out)) + offset
    key = ["model", "dataset", "step"]
    out = _collapse_duplicates(out, key, source=source)
    out = out.drop(columns="_row").sort_values(key, kind="stable").reset_index(drop=True)
    ordered = list(SCHEMA_COLUMNS) + [c for c in out.columns if c not in SCHEMA_COLUMNS]
    return out[ordered]


def packaged_matrices_dir() -> Path:
    return Path(str(resources.files("hf_twophase").joinpath("matrices")))


def packaged_matrix_files(task: str) -> tuple[Path, Path]:
    """The packaged records file and provenance record of ``task``."""
    check_task(task)
    return packaged_matrices_dir() / f"{task}.parquet", packaged_matrices_dir() / f"{task}.json"


@dataclass(frozen=True)
class Curve:
    """One model's learning curve on one dataset."""

    steps: np.ndarray
    val: np.ndarray
    cost: np.ndarray
    final: float

    def cost_until(self, step: int) -> float:
        """Compute spent on steps 1..step; a step without a recorded cost counts as one unit."""
        mask = self.steps <= step
        c = self.cost[mask]
        return float(np.where(np.isnan(c), 1.0, c).sum())


class PerformanceMatrix:
    """Records of (model, benchmark, step) -> val / test / cost, with the views the method needs.

    Missing cells stay missing (NaN), never 0: a model that was never run on a benchmark is not a
    model that scored zero there, and the similarity of Eq. 1 depends on telling them apart.
    """

    def __init__(self, records: pd.DataFrame | Sequence[Mapping[str, Any]], *, source: str = "<records>",
                 validate: bool = True):
        frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
        self.source = source
        self.records: pd.DataFrame = validate_records(frame, source=source) if validate else frame
        self._final: pd.DataFrame | None = None
        self.provenance: dict | None = None  # where a published matrix comes from (source, license, citation)

    # ---------------------------------------------------------------- I/O
    @classmethod
    def read(cls, path: str | os.PathLike) -> PerformanceMatrix:
        """Read a CSV or Parquet records file (chosen by extension)."""
        frame, offset = read_table(path)
        return cls(validate_records(frame, source=str(path), offset=offset), source=str(path), validate=False)

    @classmethod
    def default(cls, task: str) -> PerformanceMatrix:
        """The matrix that ships with the package for ``task`` (the paper authors' published matrix, converted by
        ``records/published.py``), with its provenance record in ``.provenance``."""
        records, provenance = packaged_matrix_files(task)
        if not records.is_file() or not provenance.is_file():
            raise RecordsError(f"the packaged {task} matrix is missing from this installation (expected {records}); "
                               "reinstall hf-twophase", source=str(records))
        matrix = cls.read(records)
        matrix.source = f"packaged:{task}"
        matrix.provenance = json.loads(provenance.read_text())
        return matrix

    @classmethod
    def from_dataset(cls, dataset: Any, *, source: str = "<dataset>") -> PerformanceMatrix:
        """Build from a `datasets.Dataset` (anything with ``to_pandas()``) holding the records schema. The Hub
        dataset itself is read by ``hf_twophase.load_matrix``, which lives with the other Hub I/O."""
        return cls(dataset.to_pandas(), source=source)

    def write(self, path: str | os.PathLike) -> Path:
        """Write CSV or Parquet by extension, atomically, so a crash never leaves half a file behind."""
        path = Path(path)
        fmt = _format_of(path)
        with atomic_path(path) as tmp:
            if fmt == "csv":
                self.records.to_csv(tmp, index=False)
            else:
                self.records.to_parquet(tmp, index=False)
        return path

    # ---------------------------------------------------------------- views
    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"PerformanceMatrix(models={len(self.models)}, datasets={len(self.datasets)}, records={len(self)})"

    @property
    def models(self) -> list[str]:
        return sorted(self.records["model"].unique().tolist())

    @property
    def datasets(self) -> list[str]:
        return sorted(self.records["dataset"].unique().tolist())

    def final_scores(self) -> pd.DataFrame:
        """Models x datasets frame of final test scores; NaN where a pair was never run or has no test score.

        The final score of a pair is the `test` value of its last step that carries one.
        """
        if self._final is None:
            with_test = self.records.dropna(subset=["test"])
            last = with_test.groupby(["model", "dataset"], sort=True)["test"].last()
            table = last.unstack("dataset")
            self._final = table.reindex(index=self.models, columns=self.datasets)
        return self._final

    def curve(self, model: str, dataset: str) -> Curve:
        rows = self.records[(self.records["model"] == model) & (self.records["dataset"] == dataset)]
        if rows.empty:
            raise KeyError(f"no records for model '{model}' on dataset '{dataset}'")
        final = self.final_scores().loc[model, dataset]
        return Curve(
            steps=rows["step"].to_numpy(), val=rows["val"].to_numpy(dtype=float),
            cost=rows["cost"].to_numpy(dtype=float), final=float(final),
        )

    def pair_cost(self, model: str, dataset: str, until_step: int | None = None) -> float:
        """Compute spent on a pair (steps without a cost count as one unit each)."""
        curve = self.curve(model, dataset)
        return curve.cost_until(int(curve.steps.max()) if until_step is None else until_step)

    def without_datasets(self, names: Iterable[str]) -> PerformanceMatrix:
        """The leave-one-out view: the same matrix with some datasets' rows removed."""
        drop = set(names)
        return self._view(self.records[~self.records["dataset"].isin(drop)])

    def subset(
        self, *, models: Iterable[str] | None = None, datasets: Iterable[str] | None = None
    ) -> PerformanceMatrix:
        frame = self.records
        if models is not None:
            frame = frame[frame["model"].isin(set(models))]
        if datasets is not None:
            frame = frame[frame["dataset"].isin(set(datasets))]
        return self._view(frame)

    def merge(self, other: PerformanceMatrix, *, overwrite: bool = False) -> PerformanceMatrix:
        """Union of two matrices. Rows already here win unless `overwrite`, so nothing published is lost."""
        first, second = (other, self) if overwrite else (self, other)
        frame = pd.concat([first.records, second.records], ignore_index=True)
        frame = frame.drop_duplicates(["model", "dataset", "step"], keep="first")
        return self._view(frame.sort_values(["model", "dataset", "step"], kind="stable"))

    def _view(self, frame: pd.DataFrame) -> PerformanceMatrix:
        if frame.empty:
            raise RecordsError("no records left after filtering", source=self.source)
        view = PerformanceMatrix.__new__(PerformanceMatrix)
        view.source = self.source
        view.provenance = self.provenance
        view.records = frame.reset_index(drop=True)
        view._final = None
        return view


def read_proxy_scores(
    path: str | os.PathLike,
    *,
    method: str | None = None,
    dataset: str | None = None,
    models: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Read a proxy-score table (`model, dataset, method, score[, cost]`), checked like the records.

    Filters apply before the scores are checked, so a bad row that the caller never asked for (another
    dataset, a model that is not scored) does not stop the run: only the rows used are read as numbers.
    """
    frame, offset = read_table(path)
    source = str(path)
    missing = [c for c in PROXY_REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise RecordsError(
            f"missing required column(s) {', '.join(repr(c) for c in missing)}; expected columns model, dataset, "
            "method, score and optionally cost", source=source, column=missing[0],
        )
    if len(frame) == 0:
        raise RecordsError("no proxy scores (header only)", source=source)
    out = frame.copy()
    for column in ("model", "dataset", "method"):
        out[column] = out[column].astype(str).str.strip()
    if method is not None:
        out = out[out["method"] == method]
    if dataset is not None:
        out = out[out["dataset"] == dataset]
    if models is not None:
        out = out[out["model"].isin(set(models))]
    out["score"] = _numeric_column(out, "score", source=source, offset=offset, required=True)
    out["cost"] = (_numeric_column(out, "cost", source=source, offset=offset, required=False)
                   if "cost" in out.columns else np.nan)
    return out.reset_index(drop=True)
