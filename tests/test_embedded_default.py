"""The embedded offline repository: its matrix ships with the package and must match this version's recipe, or every
first run would quietly fall back to building the whole repository."""

from __future__ import annotations

import dataclasses

import pytest

from hf_twophase.matrix_build import defaults
from hf_twophase.matrix_build.defaults import EMBEDDED, SETUPS, ensure_default


@pytest.mark.parametrize("task", sorted(SETUPS))
def test_the_shipped_matrix_matches_this_versions_recipe(task, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TWOPHASE_CACHE", str(tmp_path))
    setup = SETUPS[task]
    repo = ensure_default(task, progress=False)
    assert repo.shipped and not repo.built_now and repo.build_seconds == 0, (
        f"regenerate it: hf-twophase matrix regenerate-embedded --task {task} --root /tmp/embedded")
    assert set(repo.matrix.models) == set(repo.models) == set(setup.planned_models(repo.root))
    assert set(repo.matrix.datasets) == set(setup.benchmarks) and setup.target not in repo.matrix.datasets
    assert not any(m.startswith(EMBEDDED) for m in repo.matrix.models)  # named by their folders in this cache
    assert not (repo.root / "models").exists()  # nothing trained until a model is recalled
    assert repo.matrix.records.groupby(["model", "dataset"])["step"].nunique().min() > 1  # learning curves


def test_a_stale_shipped_matrix_is_not_used(tmp_path):
    task = "image-classification"
    assert defaults._shipped(SETUPS[task], tmp_path) is not None
    changed = dataclasses.replace(SETUPS[task], build=dataclasses.replace(SETUPS[task].build, epochs=2))
    assert defaults._shipped(changed, tmp_path) is None
