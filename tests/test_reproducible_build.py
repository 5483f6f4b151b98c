"""`build-matrix` as users run it: the same seed gives the same records in fresh processes, finished cells are reused
only with the same settings, and `--json` prints one JSON object."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.coordinator_helpers import make_candidates

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def build_argv(out: Path, model: str, *extra: str) -> list[str]:
    return ["build-matrix", "--models", model, "--benchmarks", "rotten_tomatoes_snippets", "--out", str(out),
            "--subset", "64", "--eval-subset", "32", "--epochs", "1", "--cpu", "--json", *extra]


def build(out: Path, model: str, *extra: str) -> subprocess.CompletedProcess:
    """`hf-twophase build-matrix` in a fresh process, as a user starts it."""
    return subprocess.run([sys.executable, "-m", "hf_twophase", *build_argv(out, model, *extra)], capture_output=True,
                          text=True, timeout=240, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def refused_here(capsys, out: Path, model: str, *extra: str) -> tuple[int, str, str]:
    """The same command in this process, for runs that must stop before any training or reuse every cell (no
    interpreter start)."""
    from hf_twophase.cli import main

    capsys.readouterr()
    code = main(build_argv(out, model, *extra))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def records(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "records.parquet").drop(columns=["cost"])  # cost is measured seconds


@pytest.fixture(scope="module")
def new_head_model(tmp_path_factory) -> str:
    # three labels for a two-class benchmark: the classifier head is built anew, from the random generator
    return make_candidates(tmp_path_factory.mktemp("models"), hidden=(8,), num_labels=3)[0]


@pytest.fixture(scope="module")
def first_build(tmp_path_factory, new_head_model) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("first") / "out"
    return out, build(out, new_head_model)


def fresh_copy(first_build, tmp_path) -> Path:
    """A folder holding the first build, for a test that changes it."""
    import shutil

    out, run = first_build
    assert run.returncode == 0, run.stderr[-2000:]
    return Path(shutil.copytree(out, tmp_path / "out"))


def test_two_fresh_processes_with_one_seed_build_identical_records(tmp_path, new_head_model, first_build):
    (a, first), second = first_build, build(tmp_path / "b", new_head_model)
    for run in (first, second):
        assert run.returncode == 0, run.stderr[-2000:]
        out = json.loads(run.stdout)  # one JSON object on stdout, nothing else: the Trainer's logs go to stderr
        assert out["rows"] == 1 and out["models"] == [new_head_model]
    pd.testing.assert_frame_equal(records(a), records(tmp_path / "b"))
    cell = json.loads(next((a / "cells").glob("*.json")).read_text())
    assert cell["config"]["seed"] == 0 and cell["config"]["epochs"] == 1.0  # each cell records its recipe


def test_rerun_with_other_settings_refuses_or_overwrites(tmp_path, new_head_model, first_build, capsys):
    out = fresh_copy(first_build, tmp_path)
    cell = next((out / "cells").glob("*.json"))
    before = cell.read_bytes()
    code, stdout, stderr = refused_here(capsys, out, new_head_model, "--seed", "3", "--lr", "0.001")
    assert code == 2 and stdout == ""
    assert "other settings" in stderr and "learning_rate" in stderr and "seed" in stderr
    assert "Traceback" not in stderr and cell.read_bytes() == before  # nothing was retrained
    code, _, stderr = refused_here(capsys, out, new_head_model)  # same settings: nothing trains, so in this process
    assert code == 0 and cell.read_bytes() == before, stderr[-2000:]  # the cell is reused
    again = build(out, new_head_model, "--seed", "3", "--overwrite")
    assert again.returncode == 0
    assert json.loads(cell.read_text())["config"]["seed"] == 3


def test_a_damaged_cell_is_one_clear_error(tmp_path, new_head_model, first_build, capsys):
    out = fresh_copy(first_build, tmp_path)
    cell = next((out / "cells").glob("*.json"))
    cell.write_text('{"model": "x", "status": "do')  # what a crash mid-write left before writes were atomic
    code, _, stderr = refused_here(capsys, out, new_head_model)
    assert code == 2 and "damaged" in stderr and str(cell) in stderr
    assert "Traceback" not in stderr
