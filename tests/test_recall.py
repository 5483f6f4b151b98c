import json

import numpy as np
import pandas as pd
import pytest
from conftest import cell_records

from hf_twophase import SelectionError, cluster_models, coarse_recall
from hf_twophase.cli.main import main
from hf_twophase.method.recall import exp_normaliser, minmax_normaliser, models_to_score, normaliser_for
from hf_twophase.method.similarity import pair_distance
from tests.test_similarity_clustering import _hand_repository


def test_eq3_and_eq4_by_hand():
    models, scores = _hand_repository()
    clustering = cluster_models(models, scores)
    proxy = {"a2": -0.1, "b2": -1.0}
    result = coarse_recall(clustering, scores, proxy, k=3, normaliser=exp_normaliser)
    acc = scores.mean(axis=1)
    norm = {"a2": np.exp(-0.1), "b2": np.exp(-1.0)}
    expected = {m: acc[i] * norm["a2"] for i, m in enumerate(models[:3])}  # Eq. 3
    expected.update({m: acc[i] * norm["b2"] for i, m in enumerate(models[3:5], start=3)})
    sim_a = 1 - pair_distance(scores[5], scores[1])
    sim_b = 1 - pair_distance(scores[5], scores[4])
    expected["c"] = acc[5] * 0.5 * (sim_a * norm["a2"] + sim_b * norm["b2"])  # Eq. 4
    for m, v in expected.items():
        assert result.scores[m] == pytest.approx(v)
    assert result.scored == ["a2", "b2"]  # only representatives are proxy-scored
    assert result.recalled == sorted(expected, key=lambda m: -expected[m])[:3]


def test_only_representatives_need_a_score():
    models, scores = _hand_repository()
    clustering = cluster_models(models, scores)
    assert models_to_score(clustering, k=3) == ["a2", "b2"]
    with pytest.raises(SelectionError, match="no proxy score for 1 representative"):
        coarse_recall(clustering, scores, {"a2": -0.1}, k=3)


def test_small_repository_needs_no_scoring():
    models, scores = _hand_repository()
    result = coarse_recall(cluster_models(models, scores), scores, {}, k=10)
    assert sorted(result.recalled) == sorted(models) and result.scored == []
    one = coarse_recall(cluster_models(["x"], scores[:1]), scores[:1], {}, k=1)
    assert one.recalled == ["x"]


def test_all_singletons_score_every_model():
    models, scores = _hand_repository()
    from hf_twophase import ClusteringConfig

    clustering = cluster_models(models, scores, ClusteringConfig(threshold=0.0))
    proxy = {m: -float(i) for i, m in enumerate(models)}
    result = coarse_recall(clustering, scores, proxy, k=2, normaliser=exp_normaliser)
    assert result.scored == models and "every model scored" in result.note


def test_ties_are_broken_deterministically():
    scores = np.array([[0.5] * 7, [0.5] * 7, [0.5] * 7])
    clustering = cluster_models(["m3", "m1", "m2"], scores)
    result = coarse_recall(clustering, scores, {"m1": -0.2}, k=2)
    assert result.recalled == ["m1", "m2"]


def test_normalisers():
    assert exp_normaliser(np.array([0.0, -np.log(2)])) == pytest.approx([1.0, 0.5])
    assert minmax_normaliser(np.array([-3.0, -1.0, -2.0])) == pytest.approx([0.0, 1.0, 0.5])
    assert minmax_normaliser(np.array([-3.0])) == pytest.approx([1.0])
    assert normaliser_for("auto", "leep") is exp_normaliser
    assert normaliser_for("auto", "logme") is minmax_normaliser
    with pytest.raises(SelectionError, match="unknown normaliser"):
        normaliser_for("zscore")


def _write_case(tmp_path, target_scores):
    models, scores = _hand_repository()
    bench = {m: {f"d{j}": float(scores[i, j]) for j in range(scores.shape[1])} for i, m in enumerate(models)}
    for m, v in target_scores.items():
        bench[m]["target"] = v
    pd.DataFrame(cell_records(bench)).to_csv(tmp_path / "records.csv", index=False)
    # only the representatives' proxy scores are valid numbers; any other row would break the run if read
    proxy = [("a2", "target", "logme", "-0.4"), ("b2", "target", "logme", "-0.9"), ("c", "target", "logme", "nan"),
             ("a2", "d0", "logme", "5.0")]
    pd.DataFrame(proxy, columns=["model", "dataset", "method", "score"]).to_csv(tmp_path / "proxy.csv", index=False)
    return tmp_path / "records.csv", tmp_path / "proxy.csv"


def _run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_recall_cli_leave_one_out(tmp_path, capsys):
    records, proxy = _write_case(tmp_path, {"a1": 0.1, "b1": 0.99})
    argv = ["recall", "--records", str(records), "--proxy", str(proxy), "--target", "target", "--k", "3", "--json",
            "--variant", "paper"]
    first = _run_json(capsys, argv)
    assert first["target"] == "target" and first["scored"] == ["a2", "b2"] and len(first["recalled"]) == 3
    _write_case(tmp_path, {"a1": 0.9, "b1": 0.01, "c": 0.5})  # the target's own rows change...
    assert _run_json(capsys, argv) == first  # ...and nothing about the recall does
    robust = _run_json(capsys, argv[:-2])
    assert robust["scored"] == [] and len(robust["recalled"]) == 3  # the default: the robust prior alone
    aware = _run_json(capsys, [*argv[:-2], "--target-temperature", "0.25"])
    assert aware["scored"] and "benchmark_weights" not in robust
    assert sum(aware.get("benchmark_weights", {"_": 1.0}).values()) == pytest.approx(1.0)


def test_cluster_cli(tmp_path, capsys):
    records, _ = _write_case(tmp_path, {})
    out = _run_json(capsys, ["cluster", "--records", str(records), "--json"])
    assert out["clusters"] == [["a1", "a2", "a3"], ["b1", "b2"], ["c"]]
    assert out["representatives"] == ["a2", "b2"] and out["silhouette"] > 0.5
    parquet = tmp_path / "records.parquet"
    pd.read_csv(records).to_parquet(parquet)
    assert _run_json(capsys, ["cluster", "--records", str(parquet), "--json"]) == out


def test_cli_bad_input_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("model,dataset,step\na,d,1\n")
    assert main(["cluster", "--records", str(bad), "--json"]) == 2
    err = capsys.readouterr().err
    assert "missing required column(s) 'val'" in err and "Traceback" not in err
