"""Every script in examples/ runs as a user starts it: from its own folder, where examples/select.py sits beside the
others under the name of a standard-library module. Reduced settings keep each run short. examples/select.py on a
user's own data also runs in tests/test_select_job.py (Ctrl-C; torchrun killed, then resumed under accelerate)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.coordinator_helpers import make_candidates

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(*argv: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent)}
    return subprocess.run([sys.executable, *argv], cwd=EXAMPLES, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_every_example_is_tested_here():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == ["callback_in_your_trainer.py",
                                                             "hyperparameter_search.py", "replay_policies.py",
                                                             "select.py"]


def test_hyperparameter_search_example_names_the_best_trial(tmp_path):
    """On given checkpoints (the default's phase 1 on the embedded repository and its Ray run are measured in
    docs/benchmarks.md): Optuna, pruned, names the best trial's checkpoint and hyper-parameters."""
    models = make_candidates(tmp_path / "models", hidden=(16, 8))
    done = run_example("hyperparameter_search.py", "--models", *models, "--max-steps", "8", "--learning-rates",
                       "3e-3", "1e-3", "--output-dir", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trials: 4, stopped early: " in done.stdout
    best = next(line for line in done.stdout.splitlines() if line.startswith("best trial"))
    assert "checkpoint " + str(tmp_path / "models") in best and "learning rate " in best


def test_replay_policies_runs():
    done = run_example("replay_policies.py")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fine-selection (improved)" in done.stdout and "median speedup" in done.stdout


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_callback_example_runs_one_after_another_and_at_the_same_time(tmp_path, mode):
    models = make_candidates(tmp_path / "models", hidden=(16, 8))
    done = run_example("callback_in_your_trainer.py", "--models", *models, "--state-dir", str(tmp_path / "state"),
                       "--mode", mode, "--max-steps", "4", "--stage-steps", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith(tuple(models))]
    assert len(lines) == 2 and sum("trained to the end" in line for line in lines) == 1, done.stdout[-2000:]
    if mode == "sync":  # both runs reported stage 1 before it was decided (none dropped): they ran at the same time
        record = json.loads((tmp_path / "state" / "records" / f"{2:08d}.json").read_text())["record"]
        assert sorted(d["action"] for d in record["decisions"]) == ["pruned", "winner"], record


DEFAULT_REDUCED = ["--k", "2", "--budget", "4", "--max-train", "64", "--max-eval", "32"]


@pytest.fixture(scope="module")
def one_process_default(tmp_path_factory):
    """The no-argument job on a reduced setting, from a fresh cache, started as a user starts it."""
    tmp_path = tmp_path_factory.mktemp("default")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent), "HF_TWOPHASE_CACHE": str(tmp_path / "cache"),
           "HF_TWOPHASE_SELECT_JSON": str(tmp_path / "summary.json")}
    done = subprocess.run([sys.executable, "select.py", *DEFAULT_REDUCED, "--output-dir", str(out), "--cpu"],
                          cwd=EXAMPLES, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, out, tmp_path, json.loads((tmp_path / "summary.json").read_text())


def test_image_default_runs_quietly_from_a_fresh_cache(one_process_default):
    """The no-argument job's own code path (shipped matrix, derive only what is recalled, phase 2), on a few steps:
    the console shows phase lines and the summary, never a Trainer log or a warning; the log file keeps them."""
    done, out, tmp_path, _ = one_process_default
    for name in ("winner/config.json", "report.md", "report.json", "curves.png", "summary.txt", "select.log"):
        assert (out / name).is_file(), name
    screen = done.stdout + done.stderr
    assert "{'loss'" not in screen and "{'eval_" not in screen  # no Trainer log dictionary
    assert "warn" not in screen.lower() and "MISSING" not in screen  # no warning the user cannot act on
    assert "phase 1: recalled 2" in done.stdout and "winner: " in done.stdout
    assert "embedded repository: shipped matrix" in done.stdout
    log = (out / "select.log").read_text()
    assert "'loss'" in log  # what the screen left out is kept
    matrix_cells = tmp_path / "cache" / "default" / "image-classification" / "matrix"
    assert not matrix_cells.exists()  # the matrix shipped: nothing was built but the recalled models
    cache = str(tmp_path / "cache")
    assert cache not in (out / "report.md").read_text()  # local folders by their own names, as on the console
    assert cache in (out / "report.json").read_text()  # the full names stay in the machine-readable report
    assert not [p.name for p in (out / "candidates").iterdir() if "cache" in p.name]


def test_image_default_on_two_processes_is_one_selection(one_process_default, tmp_path):
    """`torchrun --nproc_per_node 2 examples/select.py` on the default job, from a fresh cache: the first rank derives
    the recalled model in a process of its own while the other waits, both train data-parallel, and the job ends with
    one summary, one set of files and the phase 1 of one process."""
    one = one_process_default[3]
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent), "HF_TWOPHASE_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "examples/select.py", *DEFAULT_REDUCED, "--output-dir", str(out), "--json"],
                          cwd=EXAMPLES.parent, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads(done.stdout)  # one JSON object: only the main process prints
    assert two["processes"] == 2 and two["recalled"][0].endswith("efficientnet-lite2-faces_subset")
    assert [r.rsplit("/", 1)[-1] for r in two["recalled"]] == [r.rsplit("/", 1)[-1] for r in one["recalled"]]
    assert two["built_now"]  # the recalled derived model was trained now, by one rank, in its own process
    assert done.stderr.count("  done in ") == 1 and done.stderr.count("phase 1: ranking") == 1
    assert "{'loss'" not in done.stderr and "Traceback" not in done.stderr
    assert (out / "winner" / "config.json").is_file() and (out / "report.json").is_file()
    log = (out / "select.log").read_text()
    assert "parallel_mode != ParallelMode.DISTRIBUTED" not in log  # the Trainer really ran data-parallel
