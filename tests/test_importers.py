"""Importers of published results, on small excerpts the tests write in each source's original layout."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from hf_twophase.cli.main import main
from hf_twophase.errors import RecordsError
from hf_twophase.records.importers import import_plasware, import_quicktune, import_transfergraph
from hf_twophase.records.matrix import PerformanceMatrix, read_proxy_scores


def _plasware(folder, rows=("0.5\t0.6\t0.7", "0.8\t0.1\t0.9"), datasets=("cola", "sst2")):
    folder.mkdir(exist_ok=True)
    (folder / "matrix.txt").write_text("org--bert\troberta-base\tx--y\n" + "\n".join(rows) + "\n")
    (folder / "datasets.txt").write_text("\n".join(datasets))
    (folder / "leep_score_multirc.txt").write_text("org--bert\troberta-base\tx--y\n-0.68\t-0.70\t-0.69\n")
    return folder


def test_plasware_matrix_and_leep(tmp_path):
    records, proxy = import_plasware(_plasware(tmp_path / "p"))
    matrix = PerformanceMatrix(records)
    assert matrix.models == ["org/bert", "roberta-base", "x/y"]
    assert matrix.final_scores().loc["roberta-base", "sst2"] == pytest.approx(0.1)
    assert matrix.final_scores().loc["x/y", "cola"] == pytest.approx(0.7)
    assert set(proxy["dataset"]) == {"multirc"} and proxy.set_index("model").loc["org/bert", "score"] == -0.68


def test_plasware_bad_layouts_name_the_file(tmp_path):
    with pytest.raises(RecordsError, match="one row per dataset"):
        import_plasware(_plasware(tmp_path / "a", datasets=("cola",)))
    with pytest.raises(RecordsError, match="row 3.*2 values for 3 models"):
        import_plasware(_plasware(tmp_path / "b", rows=("0.5\t0.6\t0.7", "0.8\t0.1")))
    with pytest.raises(RecordsError, match="datasets.txt"):
        (tmp_path / "c").mkdir()
        (tmp_path / "c" / "matrix.txt").write_text("a\n0.1\n")
        import_plasware(tmp_path / "c")


def test_transfergraph_keeps_full_fine_tuning_first_runs(tmp_path):
    runs = pd.DataFrame({
        "model": ["m1", "m1", "m2", "m1"], "finetuned_dataset": ["tweet_eval/irony", "tweet_eval/irony",
                                                                  "glue/sst2", "glue/sst2"],
        "eval_accuracy": [0.6, 0.7, 0.9, 0.8], "train_runtime": [100.0, 110.0, 50.0, 60.0],
        "peft_method": [None, None, None, "lora"]})
    runs.to_csv(tmp_path / "records.csv")
    pd.DataFrame({"model": ["m1", "m1"], "target_dataset": ["glue/sst2", "glue/sst2"],
                  "metric": ["TransferabilityMethod.LOG_ME", "TransferabilityMethod.REG_H_SCORE"],
                  "score": [-0.3, 0.5], "runtime": [5.0, 6.0]}).to_csv(tmp_path / "transferability_score_records.csv")
    records, proxy = import_transfergraph(tmp_path)
    matrix = PerformanceMatrix(records)
    assert matrix.final_scores().loc["m1", "tweet_eval/irony"] == pytest.approx(0.6)  # the first run
    assert pd.isna(matrix.final_scores().loc["m1", "glue/sst2"])  # the LoRA run is left out
    assert sorted(proxy["method"]) == ["logme", "reghscore"]


def test_transfergraph_skips_the_sources_broken_rows_and_counts_them(tmp_path, capsys):
    """The published image files hold lines cut and shifted into the wrong columns: the import skips them (and says
    so) instead of writing a proxy file that the proxy reader then refuses."""
    pd.DataFrame({"model": ["m1", "m2", None], "finetuned_dataset": ["pets", "pets", "dtd"],
                  "eval_accuracy": [0.6, "oops", 0.7], "train_runtime": [1.0, 2.0, 3.0]}).to_csv(
        tmp_path / "records.csv")
    pd.DataFrame({"model": ["m1", None, "m2"], "target_dataset": ["pets", None, "pets"],
                  "metric": ["TransferabilityMethod.LOG_ME", None, "TransferabilityMethod.LOG_ME"],
                  "score": [0.5, None, "n/a"], "runtime": [1.0, None, 1.0]}).to_csv(
        tmp_path / "transferability_score_records.csv")
    records, proxy = import_transfergraph(tmp_path)
    assert list(records["model"]) == ["m1"] and records.attrs["skipped_rows"] == 2
    assert list(proxy["model"]) == ["m1"] and proxy.attrs["skipped_rows"] == 2
    code = main(["import", "transfergraph", str(tmp_path), "--out", str(tmp_path / "r.csv"), "--proxy-out",
                 str(tmp_path / "proxy.csv")])
    assert code == 0 and "(4 incomplete rows of the source skipped)" in capsys.readouterr().out
    assert len(read_proxy_scores(tmp_path / "proxy.csv")) == 1  # what was written reads back


def test_quicktune_one_complete_curve_per_pair(tmp_path):
    curves = {"BRD": {"0": [10, 20, 30], "1": [50, 60, 70], "2": [90, 95], "3": [5, 6, 7]}}
    costs = {"BRD": {"0": [1.0, 1.0, 1.0], "1": [2.0, 2.0, 2.0], "2": [1.0, 1.0], "3": [3.0, 3.0, 3.0]}}
    (tmp_path / "eval_top1.json").write_text(json.dumps(curves))
    (tmp_path / "cost.json").write_text(json.dumps(costs))
    pd.DataFrame({"model": ["beit", "beit", "deit", "deit"], "dataset": ["BRD"] * 4},
                 index=["0", "1", "2", "3"]).to_csv(tmp_path / "table.csv")
    records, proxy = import_quicktune(tmp_path)
    matrix = PerformanceMatrix(records)
    assert proxy is None and matrix.models == ["beit", "deit"]
    beit = matrix.curve("beit", "BRD")
    assert list(beit.val) == pytest.approx([0.1, 0.2, 0.3]) and beit.final == pytest.approx(0.3)  # run 0 kept
    assert matrix.curve("deit", "BRD").final == pytest.approx(0.07)  # run 2 is incomplete, run 3 kept
    assert matrix.pair_cost("deit", "BRD") == pytest.approx(9.0)


def test_cli_import_writes_records_and_proxy(tmp_path, capsys):
    folder = _plasware(tmp_path / "p")
    code = main(["import", "plasware", str(folder), "--out", str(tmp_path / "r.parquet"), "--proxy-out",
                 str(tmp_path / "proxy.csv"), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["models"] == 3 and out["datasets"] == 2
    assert PerformanceMatrix.read(tmp_path / "r.parquet").models == ["org/bert", "roberta-base", "x/y"]
    assert len(read_proxy_scores(tmp_path / "proxy.csv")) == 3
    assert main(["import", "quicktune", str(tmp_path / "nowhere"), "--out", str(tmp_path / "q.csv")]) == 2
