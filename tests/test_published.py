"""The packaged matrices: what ships, where it comes from, how it is regenerated, and the selector's use of it."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from hf_twophase.cli.main import main
from hf_twophase.errors import RecordsError, SelectionError
from hf_twophase.method.live_policy import NO_CURVES, live_policy
from hf_twophase.records.matrix import PerformanceMatrix, packaged_matrices_dir
from hf_twophase.records.published import LEGACY_HUB_IDS, PUBLISHED, describe_provenance, regenerate


@pytest.mark.parametrize(("task", "models", "datasets"), [("text-classification", 39, 21),
                                                          ("image-classification", 30, 6)])
def test_each_task_ships_its_published_matrix(task, models, datasets):
    matrix = PerformanceMatrix.default(task)
    assert (len(matrix.models), len(matrix.datasets)) == (models, datasets)
    assert all("/" in m for m in matrix.models)  # Hub ids as the Hub lists them today
    assert matrix.final_scores().notna().to_numpy().all()
    source = matrix.provenance["source"]
    assert source["commit"] == PUBLISHED[task].commit and source["license"] == "MIT"
    assert set(source["sha256"]) == set(source["files"])
    text = describe_provenance(matrix.provenance)
    assert "plasware/two-phase-selection" in text and "MIT" in text and "Cui" in text
    assert matrix.subset(models=matrix.models[:3]).provenance == matrix.provenance  # views keep it
    assert "MIT License" in (packaged_matrices_dir() / "NOTICE").read_text()


def test_an_unknown_task_has_no_default():
    with pytest.raises(SelectionError, match="unknown task"):
        PerformanceMatrix.default("token-classification")


def _checkout_from_packaged(root):
    """A source checkout in the published format, written back from the packaged records (names with '--', the
    legacy ids, tab-separated rows): regenerating from it must give the packaged records again."""
    legacy = {new: old for old, new in LEGACY_HUB_IDS.items()}
    for task, src in PUBLISHED.items():
        final = PerformanceMatrix.default(task).final_scores()
        folder = root / src.folder
        folder.mkdir(parents=True)
        names = [legacy.get(m, m).replace("/", "--") for m in final.index]
        rows = ["\t".join(names)] + ["\t".join(f"{v:g}" for v in final[d]) for d in final.columns]
        (folder / "matrix.txt").write_text("\n".join(rows) + "\n")
        (folder / "datasets.txt").write_text("\n".join(final.columns))
    (root / "LICENSE").write_text("MIT License\n\nCopyright (c) 2023 plasware\n")


def test_regeneration_reproduces_the_packaged_records(tmp_path):
    _checkout_from_packaged(tmp_path / "src")
    written = regenerate(tmp_path / "src", tmp_path / "out")
    assert set(written) == {"text-classification.parquet", "text-classification.json", "image-classification.parquet",
                            "image-classification.json", "NOTICE"}
    for task in PUBLISHED:
        again = PerformanceMatrix.read(tmp_path / "out" / f"{task}.parquet").final_scores()
        shipped = PerformanceMatrix.default(task).final_scores()
        assert np.allclose(again.to_numpy(), shipped.reindex(index=again.index, columns=again.columns).to_numpy())
        assert json.loads((tmp_path / "out" / f"{task}.json").read_text())["renamed_models"] == (
            LEGACY_HUB_IDS if task == "text-classification" else {})


def test_regeneration_refuses_a_checkout_at_another_commit(tmp_path):
    src = tmp_path / "src"
    _checkout_from_packaged(src)
    git = ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    with pytest.raises(RecordsError, match="expected 4ce7cde96110"):
        regenerate(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(RecordsError, match="not a folder"):
        regenerate(tmp_path / "missing", tmp_path / "out")


def test_matrix_info_shows_the_provenance(capsys):
    assert main(["matrix", "info", "--task", "image-classification", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["models"] == 30 == len(out["model_ids"]) and out["learning_curves"] is False
    assert out["model_ids"] == list(PerformanceMatrix.default("image-classification").models)
    assert main(["matrix", "info", "--task", "image-classification"]) == 0
    assert f"models: {out['model_ids'][0]}" in capsys.readouterr().out
    assert out["provenance"]["source"]["repository"] == "plasware/two-phase-selection"
    assert main(["matrix", "info", "--task", "nope"]) == 2


def test_final_scores_only_fall_back_to_pruning_by_validation_score():
    matrix = PerformanceMatrix.default("image-classification")
    policy = live_policy("fine-selection", budget=40, stage_steps=10, matrix=matrix, candidates=matrix.models[:4])
    assert policy.name == "successive-halving" and policy.describe()["note"] == NO_CURVES


def test_selector_uses_the_packaged_matrix_without_one():
    from hf_twophase.selector import RepoSelector

    selector = RepoSelector.from_models(["facebook/deit-small-patch16-224", "someone/new-model"],
                                        task="image-classification")
    assert selector.matrix.source == "packaged:image-classification"
    assert selector.warm == ["facebook/deit-small-patch16-224"] and selector.cold == ["someone/new-model"]
    with pytest.raises(SelectionError, match="pass task="):
        RepoSelector.from_models(["facebook/deit-small-patch16-224"])


@pytest.mark.parametrize("argv", [
    ["matrix", "info", "../../etc/passwd.parquet"],  # a path that is not there
    ["matrix", "info", "a/b/c/d"],  # neither a file nor a Hub id
    ["matrix", "info", "--task", "../text-classification"],
    ["matrix", "regenerate-published", "/nonexistent/checkout"],
])
def test_hostile_matrix_arguments_are_one_clear_error(argv, capsys, tmp_path):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_negative_proxy_weight_is_refused_before_any_work(capsys, tmp_path):
    records = packaged_matrices_dir() / "text-classification.parquet"
    proxy = tmp_path / "proxy.csv"
    proxy.write_text("model,dataset,method,score\nFacebookAI/roberta-base,sst2,leep,-0.5\n")
    argv = ["recall", "--records", str(records), "--proxy", str(proxy), "--target", "sst2", "--proxy-weight", "-1"]
    assert main(argv) == 2
    assert "--proxy-weight: expected a number >= 0" in capsys.readouterr().err


def test_a_malformed_checkout_writes_nothing(tmp_path):
    src = tmp_path / "src"
    _checkout_from_packaged(src)
    matrix_txt = src / PUBLISHED["image-classification"].folder / "matrix.txt"
    lines = matrix_txt.read_text().splitlines()
    matrix_txt.write_text("\n".join([lines[0], lines[1] + "\tnot-a-number", *lines[2:]]) + "\n")
    with pytest.raises(RecordsError, match="values for"):
        regenerate(src, tmp_path / "out")
    assert not (tmp_path / "out" / "image-classification.parquet").exists()
    (src / PUBLISHED["text-classification"].folder / "datasets.txt").unlink()
    with pytest.raises(RecordsError, match="datasets.txt"):
        regenerate(src, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()
