"""A state file damaged by hand or by another program ends a resume, or a matrix build, with one message that names
the file and what was expected: never a traceback, and nothing already computed is lost."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from hf_twophase.atomic import StateFileError
from hf_twophase.cli.select import main
from hf_twophase.errors import SelectionError
from hf_twophase.matrix_build.builder import BuildConfig, cells_to_train, collect
from tests.builder_helpers import BENCHMARKS
from tests.coordinator_helpers import make_candidates, make_data


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny selection (its state folder holds reports, decisions and a dropped-free run)."""
    root = tmp_path_factory.mktemp("damaged")
    models = make_candidates(root / "models", hidden=(16, 8, 12))
    rows = [{"model": m, "dataset": b, "step": s, "val": 0.9 - 0.1 * i - 0.05 * (3 - s), "test": 0.9 - 0.1 * i,
             "cost": 1.0} for i, m in enumerate(models) for b in ("b1", "b2", "b3") for s in (1, 2, 3)]
    pd.DataFrame(rows).to_csv(root / "records.csv", index=False)
    data = make_data(96, 0)
    pd.DataFrame({"text": data["text"], "label": data["label"]}).to_csv(root / "data.csv", index=False)
    argv = ["--task", "text-classification", "--dataset", str(root / "data.csv"), "--models", *models, "--matrix",
            str(root / "records.csv"), "--k", "3", "--budget", "4", "--stage-steps", "2", "--proxy-samples", "32",
            "--cpu", "--json"]
    assert main([*argv, "--output-dir", str(root / "out")]) == 0
    return root, argv


REPORT = {"candidate": "m", "step": 2, "val": 0.5}


@pytest.mark.parametrize("folder, content, message", [
    ("reports", {**REPORT, "step": "five"}, "field 'step' should be an integer"),
    ("reports", [1, 2], "expected a JSON object"),
    ("reports", {**REPORT, "val": "high"}, "field 'val' should be a number"),
    ("reports", {"candidate": "m", "val": 0.5}, "field 'step' is missing"),
    ("reports", "{\"candidate\": ", "cannot be read"),
    ("records", {"step": 99, "record": [1]}, "field 'record' should be an object"),
    ("records", {"step": "two", "record": {}}, "field 'step' should be an integer"),
    ("records", {"step": 99, "record": {"alive": "m"}}, "field 'alive' should be a list"),
    ("records", {"step": 98, "record": {"alive": []}}, "does not match its step"),
    ("records", {"step": 99, "record": {"alive": [], "decisions": [{"candidate": "m", "step": 2}]}},
     "field 'action' is missing"),
    ("records", {"step": 99, "record": {"alive": [], "decisions": [
        {"candidate": "m", "step": 2, "action": "pruned", "reason": "x", "shell": "rm"}]}}, "unknown fields"),
    ("dropped", {"candidate": 5}, "field 'candidate' should be a string"),
    ("dropped", {"candidate": "m"}, "field 'reason' is missing"),
])
def test_a_damaged_selection_state_ends_the_resume_with_one_message(finished, tmp_path, capsys, folder, content,
                                                                   message):
    root, argv = finished
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    name = f"{99:08d}.json" if folder == "records" else "zz_damaged.json"
    (out / "selection_state" / folder).mkdir(exist_ok=True)
    damaged = out / "selection_state" / folder / name
    damaged.write_text(content if isinstance(content, str) else json.dumps(content))
    before = sorted(p.name for p in (out / "selection_state" / "reports").iterdir())
    capsys.readouterr()
    assert main([*argv, "--output-dir", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(damaged) in err and message in err, err
    assert sorted(p.name for p in (out / "selection_state" / "reports").iterdir()) == before  # nothing lost


def _cells(tmp_path, cell):
    out = tmp_path / "build"
    (out / "cells").mkdir(parents=True)
    (out / "cells" / "m__b.0123.json").write_text(cell if isinstance(cell, str) else json.dumps(cell))
    return out


GOOD_CELL = {"model": "m", "benchmark": "b", "status": "done", "config": {},
             "rows": [{"model": "m", "dataset": "b", "step": 1, "val": 0.5, "test": 0.5, "cost": 1.0}]}


@pytest.mark.parametrize("cell, message", [
    ([], "expected a JSON object"),
    ({k: v for k, v in GOOD_CELL.items() if k != "status"}, "field 'status' is missing"),
    ({k: v for k, v in GOOD_CELL.items() if k != "rows"}, "'rows' should be a list of records"),
    ({**GOOD_CELL, "config": [1]}, "field 'config' should be an object"),
    ({**GOOD_CELL, "status": "maybe"}, "'status' should be 'done' or 'failed'"),
    ({**GOOD_CELL, "rows": [1, 2]}, "'rows' should be a list of records"),
])
def test_a_damaged_matrix_cell_is_one_clear_error(tmp_path, cell, message):
    out = _cells(tmp_path, cell)
    with pytest.raises(StateFileError, match=message):
        collect(out)
    grid = [("m", "m", BENCHMARKS[0])]
    (out / "cells" / "m__b.0123.json").rename(out / "cells" / next(iter(_cell_names(grid, out))))
    with pytest.raises(StateFileError, match=message):
        cells_to_train(grid, out, BuildConfig())


def _cell_names(grid, out):
    from hf_twophase.matrix_build.builder import _cell_file

    return [_cell_file(out, name, spec.name).name for _, name, spec in grid]


def test_a_cells_path_that_is_a_file_is_one_clear_error(tmp_path):
    out = tmp_path / "build"
    out.mkdir()
    (out / "cells").write_text("not a folder")
    with pytest.raises(SelectionError, match="cells should be the folder of matrix cells but is a file"):
        cells_to_train([("m", "m", BENCHMARKS[0])], out, BuildConfig())
    with pytest.raises(SelectionError, match="is a file"):
        collect(out)
