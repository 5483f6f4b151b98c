"""Turn published model-selection results into records, so a user starts with a useful matrix.

Why: building a matrix costs GPU-days; three public projects already measured many (model, dataset) pairs. Each
importer reads the files under their original names in one folder and returns the records (and proxy scores where the
source has them). Pure: pandas and json only.

- ``plasware`` (the paper's own code, two-phase-selection): ``matrix.txt`` is a tab-separated header of model names
  (``--`` stands for ``/``) followed by one row of final scores per line of ``datasets.txt``; ``leep_score_NAME.txt``
  files (same header, one row) are LEEP scores on the target ``NAME``. One step per pair; no costs.
- ``transfergraph``: ``records.csv`` (one fine-tuning run per row: ``model``, ``finetuned_dataset``,
  ``eval_accuracy``, ``train_runtime``, ``peft_method``) and ``transferability_score_records.csv`` (``model``,
  ``target_dataset``, ``metric``, ``score``, ``runtime``). LoRA/PEFT runs are left out (the matrix is about full
  fine-tuning); where a pair was run more than once, the first run is kept. The published image files hold a few
  broken lines (a row cut and shifted into the wrong columns): rows without a model, dataset, method or number are
  skipped, and the count is kept in ``frame.attrs["skipped_rows"]`` for the command line to report.
- ``quicktune``: ``eval_top1.json`` and ``cost.json`` (``{dataset: {run: [one value per epoch]}}``, top-1 in percent,
  cost in seconds) with ``table.csv`` (one row per run, indexed by the run id, with ``model`` and ``dataset``
  columns). A (model, dataset) pair was run with several hyper-parameter configurations: the importer keeps the
  lowest-numbered run that reached the longest curve of that dataset, so every kept curve is complete.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from hf_twophase.errors import RecordsError

SOURCES = ("plasware", "transfergraph", "quicktune")


def _need(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise RecordsError(f"expected the file {name} in {folder} (the source's original file name)",
                           source=str(path))
    return path


def _need_columns(frame: pd.DataFrame, columns: tuple[str, ...], source: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RecordsError(f"missing column(s) {', '.join(missing)}; expected at least {', '.join(columns)}",
                           source=str(source))


def _tab_rows(path: Path) -> tuple[list[str], list[list[float]]]:
    lines = [line.rstrip("\n") for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise RecordsError("empty file; expected a header of model names, then rows of scores", source=str(path))
    models = [m.strip().replace("--", "/") for m in lines[0].split("\t")]
    rows = []
    for i, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) != len(models):
            raise RecordsError(f"{len(cells)} values for {len(models)} models in the header", source=str(path),
                               row=i)
        try:
            rows.append([float(c) for c in cells])
        except ValueError as err:
            raise RecordsError(f"not a number ({err})", source=str(path), row=i) from None
    return models, rows


def import_plasware(folder: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    folder = Path(folder)
    models, rows = _tab_rows(_need(folder, "matrix.txt"))
    datasets = [d.strip() for d in _need(folder, "datasets.txt").read_text().splitlines() if d.strip()]
    if len(datasets) != len(rows):
        raise RecordsError(f"matrix.txt has {len(rows)} rows of scores but datasets.txt names {len(datasets)} "
                           "datasets; expected one row per dataset, in the same order", source=str(folder))
    records = pd.DataFrame([{"model": m, "dataset": d, "step": 1, "val": v, "test": v, "cost": np.nan}
                            for d, row in zip(datasets, rows, strict=True) for m, v in zip(models, row, strict=True)])
    proxies = []
    for path in sorted(folder.glob("leep_score_*.txt")):
        target = re.sub(r"^leep_score_", "", path.stem)
        p_models, p_rows = _tab_rows(path)
        if len(p_rows) != 1:
            raise RecordsError(f"expected one row of LEEP scores, found {len(p_rows)}", source=str(path))
        proxies += [{"model": m, "dataset": target, "method": "leep", "score": s, "cost": np.nan}
                    for m, s in zip(p_models, p_rows[0], strict=True)]
    return records, (pd.DataFrame(proxies) if proxies else None)


def import_transfergraph(folder: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    folder = Path(folder)
    path = _need(folder, "records.csv")
    runs = pd.read_csv(path)
    _need_columns(runs, ("model", "finetuned_dataset", "eval_accuracy"), path)
    if "peft_method" in runs.columns:
        runs = runs[runs["peft_method"].isna() | (runs["peft_method"].astype(str).str.strip() == "")]
    runs, skipped_runs = _complete_rows(runs, ["model", "finetuned_dataset"], numeric=["eval_accuracy"])
    runs = runs.drop_duplicates(["model", "finetuned_dataset"], keep="first")
    records = pd.DataFrame({"model": runs["model"], "dataset": runs["finetuned_dataset"], "step": 1,
                            "val": runs["eval_accuracy"].astype(float), "test": runs["eval_accuracy"].astype(float),
                            "cost": runs["train_runtime"].astype(float) if "train_runtime" in runs else np.nan})
    proxy = None
    score_path = folder / "transferability_score_records.csv"
    if score_path.is_file():
        scores = pd.read_csv(score_path)
        _need_columns(scores, ("model", "target_dataset", "metric", "score"), score_path)
        scores, skipped_scores = _complete_rows(scores, ["model", "target_dataset", "metric"], numeric=["score"])
        method = scores["metric"].astype(str).str.replace("TransferabilityMethod.", "", regex=False)
        proxy = pd.DataFrame({"model": scores["model"], "dataset": scores["target_dataset"],
                              "method": method.str.lower().str.replace("_", "", regex=False),
                              "score": scores["score"].astype(float),
                              "cost": scores["runtime"].astype(float) if "runtime" in scores else np.nan})
        proxy = proxy.drop_duplicates(["model", "dataset", "method"], keep="first").reset_index(drop=True)
        proxy.attrs["skipped_rows"] = skipped_scores
    records = records.reset_index(drop=True)
    records.attrs["skipped_rows"] = skipped_runs
    return records, proxy


def _complete_rows(frame: pd.DataFrame, columns: list[str], *, numeric: list[str]) -> tuple[pd.DataFrame, int]:
    """The rows with every one of ``columns`` present and a number in each of ``numeric``, and how many lack one."""
    complete = frame[columns].notna().all(axis=1)
    for column in numeric:
        complete &= pd.to_numeric(frame[column], errors="coerce").notna()
    return frame[complete], int((~complete).sum())


def import_quicktune(folder: str | os.PathLike) -> tuple[pd.DataFrame, None]:
    folder = Path(folder)
    curves = json.loads(_need(folder, "eval_top1.json").read_text())
    costs = json.loads(_need(folder, "cost.json").read_text())
    table_path = _need(folder, "table.csv")
    table = pd.read_csv(table_path, index_col=0)
    _need_columns(table, ("model",), table_path)
    table.index = table.index.astype(str)
    rows = []
    for dataset, runs in curves.items():
        longest = max((len(c) for c in runs.values()), default=0)
        kept: dict[str, str] = {}
        for run in sorted(runs, key=lambda r: (int(r) if str(r).isdigit() else float("inf"), str(r))):
            if len(runs[run]) < longest or str(run) not in table.index:
                continue
            model = str(table.loc[str(run), "model"])
            if "dataset" in table.columns and str(table.loc[str(run), "dataset"]) != str(dataset):
                continue
            kept.setdefault(model, run)
        for model, run in sorted(kept.items()):
            vals = [float(v) / 100.0 for v in runs[run]]
            run_costs = costs.get(dataset, {}).get(run, [np.nan] * len(vals))
            if not isinstance(run_costs, list):
                run_costs = [float(run_costs) / len(vals)] * len(vals)  # a total: spread over the epochs
            for step, (v, c) in enumerate(zip(vals, run_costs, strict=False), start=1):
                rows.append({"model": model, "dataset": dataset, "step": step, "val": v,
                             "test": v if step == len(vals) else np.nan, "cost": float(c)})
    if not rows:
        raise RecordsError("no complete curve found: expected eval_top1.json as {dataset: {run: [values]}} and "
                           "runs listed in table.csv", source=str(folder))
    return pd.DataFrame(rows), None


IMPORTERS = {"plasware": import_plasware, "transfergraph": import_transfergraph, "quicktune": import_quicktune}


def import_results(source: str, folder: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    if source not in IMPORTERS:
        raise RecordsError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    if not Path(folder).is_dir():
        raise RecordsError(f"{folder} is not a folder; expected the source's files under their original names")
    return IMPORTERS[source](folder)
