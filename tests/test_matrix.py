import numpy as np
import pandas as pd
import pytest

from hf_twophase import PerformanceMatrix, RecordsError
from hf_twophase.records.matrix import read_proxy_scores

ROWS = [
    {"model": "a", "dataset": "d1", "step": 1, "val": 0.5, "test": None, "cost": 2.0, "seed": 1},
    {"model": "a", "dataset": "d1", "step": 2, "val": 0.7, "test": 0.72, "cost": 3.0, "seed": 1},
    {"model": "a", "dataset": "d2", "step": 1, "val": 0.4, "test": 0.41, "cost": None, "seed": 1},
    {"model": "b", "dataset": "d1", "step": 1, "val": 0.6, "test": 0.61, "cost": 1.0, "seed": 2},
]


def test_final_scores_keep_missing_cells_missing():
    m = PerformanceMatrix(ROWS)
    final = m.final_scores()
    assert final.loc["a", "d1"] == pytest.approx(0.72)
    assert final.loc["a", "d2"] == pytest.approx(0.41)
    assert np.isnan(final.loc["b", "d2"])  # never run: missing, not 0
    assert m.models == ["a", "b"] and m.datasets == ["d1", "d2"]


def test_curve_and_cost():
    m = PerformanceMatrix(ROWS)
    c = m.curve("a", "d1")
    assert c.steps.tolist() == [1, 2] and c.val.tolist() == [0.5, 0.7] and c.final == pytest.approx(0.72)
    assert m.pair_cost("a", "d1") == pytest.approx(5.0)
    assert m.pair_cost("a", "d1", until_step=1) == pytest.approx(2.0)
    assert m.pair_cost("a", "d2") == pytest.approx(1.0)  # no recorded cost: one unit per step
    with pytest.raises(KeyError):
        m.curve("b", "d2")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip_keeps_extra_columns(tmp_path, suffix):
    m = PerformanceMatrix(ROWS)
    path = m.write(tmp_path / f"records{suffix}")
    back = PerformanceMatrix.read(path)
    assert "seed" in back.records.columns
    pd.testing.assert_frame_equal(back.final_scores(), m.final_scores())
    assert back.records["seed"].astype(int).tolist() == [1, 1, 1, 2]


def test_dataset_round_trip():
    import datasets

    m = PerformanceMatrix(ROWS)
    ds = datasets.Dataset.from_pandas(m.records, preserve_index=False)
    assert set(["model", "dataset", "step", "val", "test", "cost", "seed"]) <= set(ds.column_names)
    back = PerformanceMatrix.from_dataset(ds)
    pd.testing.assert_frame_equal(back.final_scores(), m.final_scores())


def test_leave_one_out_view_and_merge():
    m = PerformanceMatrix(ROWS)
    assert m.without_datasets(["d1"]).datasets == ["d2"]
    newer = PerformanceMatrix([{"model": "b", "dataset": "d1", "step": 1, "val": 0.9, "test": 0.9},
                               {"model": "c", "dataset": "d1", "step": 1, "val": 0.3, "test": 0.3}])
    merged = m.merge(newer)
    assert merged.final_scores().loc["b", "d1"] == pytest.approx(0.61)  # what was there is kept
    assert merged.final_scores().loc["c", "d1"] == pytest.approx(0.3)
    assert m.merge(newer, overwrite=True).final_scores().loc["b", "d1"] == pytest.approx(0.9)


def test_identical_duplicates_collapse():
    m = PerformanceMatrix(ROWS + [ROWS[0]])
    assert len(m) == len(ROWS)


def test_missing_column_names_file_and_column(write_csv):
    path = write_csv(None, text="model,dataset,step,test\na,d1,1,0.5\n")
    with pytest.raises(RecordsError) as err:
        PerformanceMatrix.read(path)
    msg = str(err.value)
    assert str(path) in msg and "'val'" in msg and "expected columns" in msg


def test_non_numeric_score_names_row_and_column(write_csv):
    path = write_csv(None, text="model,dataset,step,val\na,d1,1,0.5\na,d1,2,high\n")
    with pytest.raises(RecordsError) as err:
        PerformanceMatrix.read(path)
    assert err.value.row == 3 and err.value.column == "val"  # line 3 of the file
    assert "'high' is not a number" in str(err.value) and str(path) in str(err.value)


def test_conflicting_duplicates_are_an_error(write_csv):
    path = write_csv(None, text="model,dataset,step,val\na,d1,1,0.5\nb,d1,1,0.4\na,d1,1,0.6\n")
    with pytest.raises(RecordsError) as err:
        PerformanceMatrix.read(path)
    assert "duplicate record" in str(err.value) and "rows 2, 4" in str(err.value)
    assert err.value.column == "val"


@pytest.mark.parametrize("text", ["", "model,dataset,step,val\n"])
def test_empty_file_is_an_error(write_csv, text):
    path = write_csv(None, text=text)
    with pytest.raises(RecordsError, match=str(path)):
        PerformanceMatrix.read(path)


@pytest.mark.parametrize("step", ["0", "1.5", "-2"])
def test_bad_step(write_csv, step):
    path = write_csv(None, text=f"model,dataset,step,val\na,d1,{step},0.5\n")
    with pytest.raises(RecordsError, match="step"):
        PerformanceMatrix.read(path)


def test_empty_val_and_unknown_extension(write_csv, tmp_path):
    path = write_csv(None, text="model,dataset,step,val\na,d1,1,\n")
    with pytest.raises(RecordsError, match="val is empty"):
        PerformanceMatrix.read(path)
    with pytest.raises(RecordsError, match="expected a .csv or .parquet"):
        PerformanceMatrix.read(tmp_path / "records.xlsx")
    with pytest.raises(RecordsError, match="not found"):
        PerformanceMatrix.read(tmp_path / "absent.csv")


def test_proxy_table(write_csv):
    path = write_csv(None, name="proxy.csv", text="model,dataset,method,score\na,d1,leep,-0.5\nb,d1,leep,x\n")
    with pytest.raises(RecordsError, match="'x' is not a number"):
        read_proxy_scores(path)
    path = write_csv(None, name="proxy2.csv", text="model,dataset,score\na,d1,-0.5\n")
    with pytest.raises(RecordsError, match="'method'"):
        read_proxy_scores(path)
