import json

import numpy as np
import pandas as pd
import pytest

from hf_twophase import PerformanceMatrix, Phase1
from hf_twophase.cli.main import main
from hf_twophase.method.recall import RecallConfig
from hf_twophase.method.replay import policy_factory, replay, replay_target
from hf_twophase.method.trends import benchmark_curves
from hf_twophase.records.curves import CurveCube
from hf_twophase.records.synthetic import synthetic_proxy, synthetic_records


@pytest.fixture(scope="module")
def records():
    return synthetic_records(24, 8, n_families=4, steps=6, seed=3)


def _mutate_target(records, target):
    changed = records.copy()
    rows = changed["dataset"] == target
    rng = np.random.default_rng(7)
    changed.loc[rows, "val"] = rng.uniform(size=rows.sum())
    changed.loc[rows & changed["test"].notna(), "test"] = rng.uniform(size=(rows & changed["test"].notna()).sum())
    return changed


def test_leave_one_out_no_leakage(records):
    target = "bench-03"
    a = CurveCube(PerformanceMatrix(records))
    b = CurveCube(PerformanceMatrix(_mutate_target(records, target)))
    pa = policy_factory("fine-selection", variant="paper")(a, target)
    pb = policy_factory("fine-selection", variant="paper")(b, target)
    for model in a.models:
        ca, cb = benchmark_curves(a, model, exclude=target), benchmark_curves(b, model, exclude=target)
        assert target not in ca.benchmarks
        np.testing.assert_array_equal(ca.val, cb.val)
        np.testing.assert_array_equal(ca.final, cb.final)
        for step in (1, 3, 6):
            for val in (0.2, 0.5, 0.8):  # the same target observation gives the same prediction
                assert pa.predict(model, step, val) == pb.predict(model, step, val)
    assert benchmark_curves(a, a.models[0], exclude="bench-00").benchmarks != ca.benchmarks


def test_replay_accounting(records):
    matrix = PerformanceMatrix(records)
    cube = CurveCube(matrix)
    bf = replay_target(cube, "bench-01", policy_factory("brute-force"))
    assert bf.speedup == pytest.approx(1.0) and bf.regret == pytest.approx(0.0)
    expected_bf = sum(matrix.pair_cost(m, "bench-01") for m in cube.models_on("bench-01"))
    assert bf.brute_force_cost == pytest.approx(expected_bf)
    sh = replay_target(cube, "bench-01", policy_factory("successive-halving", stage=1))
    assert sh.cost < sh.brute_force_cost and sh.speedup == pytest.approx(sh.brute_force_cost / sh.cost)
    assert sh.regret == pytest.approx(sh.best_score - sh.selected_score) and sh.regret >= 0
    # the winner is charged all of its steps; the others what they trained
    assert sh.cost >= matrix.pair_cost(sh.selected, "bench-01")


def test_two_phase_charges_proxy_cost(records):
    matrix = PerformanceMatrix(records)
    proxy = synthetic_proxy(records)
    robust = replay(matrix, "two-phase", targets=["bench-02"], proxy_table=proxy, k=6)[0]
    assert len(robust.recalled) == 6 and robust.proxy_cost == 0  # the default recall is the prior alone
    paper = RecallConfig(variant="paper")
    runs = replay(matrix, "two-phase", targets=["bench-02"], proxy_table=proxy, k=6, recall_config=paper)
    run = runs[0]
    cube = CurveCube(matrix)
    scored = Phase1.from_matrix(matrix, target="bench-02", candidates=cube.models_on("bench-02"),
                                recall=paper).to_score(6)
    assert len(run.recalled) == 6 and 0 < len(scored) < len(cube.models_on("bench-02"))
    assert run.proxy_cost == pytest.approx(1.0 * len(scored))  # the file's cost: 1.0 per scored model
    no_cost = proxy.assign(cost=np.nan)
    half = replay(matrix, "two-phase", targets=["bench-02"], proxy_table=no_cost, k=6, recall_config=paper)[0]
    expected = sum(0.5 * matrix.pair_cost(m, "bench-02") / 6 for m in scored)  # half of one of 6 steps each
    assert half.proxy_cost == pytest.approx(expected)
    assert half.cost - half.proxy_cost == pytest.approx(run.cost - run.proxy_cost)


def test_replay_cli_json(tmp_path, records, capsys):
    path = tmp_path / "records.csv"
    records.to_csv(path, index=False)
    proxy = tmp_path / "proxy.csv"
    synthetic_proxy(records).to_csv(proxy, index=False)
    for policy in ("brute-force", "successive-halving", "fine-selection", "two-phase"):
        argv = ["replay", "--records", str(path), "--proxy", str(proxy), "--policy", policy, "--stage", "2",
                "--targets", "bench-00,bench-05", "--k", "8", "--json"]
        assert main(argv) == 0
        out = json.loads(capsys.readouterr().out)
        assert [r["target"] for r in out["runs"]] == ["bench-00", "bench-05"]
        for r in out["runs"]:
            assert {"target", "policy", "selected", "selected_score", "best_score", "regret", "cost",
                    "brute_force_cost", "speedup"} <= set(r)
            assert r["policy"] == policy
        assert {"median_speedup", "mean_regret", "zero_regret", "targets"} <= set(out["summary"])
        assert out["summary"]["targets"] == 2
    assert main(["replay", "--records", str(path), "--policy", "two-phase", "--json"]) == 2
    assert "--proxy" in capsys.readouterr().err
    assert main(["replay", "--records", str(path), "--targets", "nope", "--json"]) == 2
    assert "unknown target 'nope'" in capsys.readouterr().err


def test_every_dataset_is_a_target_by_default(records):
    runs = replay(PerformanceMatrix(records), "successive-halving", stage=2)
    assert sorted(r.target for r in runs) == sorted(pd.unique(records["dataset"]))


def test_default_stage_is_the_main_jobs_quarter_of_the_budget():
    records = synthetic_records(8, 3, n_families=2, steps=16, seed=5)
    matrix = PerformanceMatrix(records)
    default = replay(matrix, "successive-halving", targets=["bench-00"])[0]
    quarter = replay(matrix, "successive-halving", targets=["bench-00"], stage=4)[0]
    first = replay(matrix, "successive-halving", targets=["bench-00"], stage=1)[0]
    assert default.to_dict() == quarter.to_dict()
    assert default.steps_trained > first.steps_trained  # a first stage of 1 prunes much earlier
    budgeted = replay(matrix, "successive-halving", targets=["bench-00"], budget=8)[0]
    two = replay(matrix, "successive-halving", targets=["bench-00"], budget=8, stage=2)[0]
    assert budgeted.to_dict() == two.to_dict()
