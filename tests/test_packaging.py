"""What ships is what is in the source tree: every module and data file of the package reaches the wheel, no file of
the package is hidden from git, and every folder of code is a real package (with an ``__init__.py``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "hf_twophase"
DATA_SUFFIXES = {".parquet", ".json", ".md", ""}  # the matrices, their records, the card templates, NOTICE


def _package_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def test_no_file_of_the_package_is_ignored_by_git():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    names = [str(p.relative_to(REPO)) for p in _package_files() if p.suffix != ".pyc"]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *names], cwd=REPO, capture_output=True, text=True)
    assert ignored.stdout.split() == [], f"git ignores files of the package: {ignored.stdout.split()}"


def test_every_folder_of_code_is_a_package():
    folders = {p.parent for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    assert [f for f in folders if not (f / "__init__.py").is_file()] == []


def test_the_wheel_carries_every_module_and_data_file(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("hf_twophase-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(REPO).as_posix() for p in _package_files()
                if p.suffix == ".py" or p.suffix in DATA_SUFFIXES}
    assert expected - shipped == set(), f"missing from the wheel: {sorted(expected - shipped)}"
    assert "hf_twophase/hub/templates/model_card.md" in shipped
    assert not any(name.startswith("tests/") for name in shipped)
