"""Phase 2 on Ray Tune: the trial scheduler only translates the `StageScheduler`'s answers, and a selection on Ray
ends as the in-process one does, through a killed worker and a killed driver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from ray.tune.experiment import Trial  # noqa: E402
from ray.tune.schedulers import TrialScheduler  # noqa: E402

from hf_twophase import SelectionError, StageSchedule, StageScheduler, SuccessiveHalving  # noqa: E402
from hf_twophase.trainer import ray_engine  # noqa: E402
from hf_twophase.trainer.ray_engine import CANDIDATE, DROPPED, SCORE, STEP, StageTrialScheduler  # noqa: E402

HELPER = Path(__file__).with_name("ray_helper.py")
ENV = {**os.environ, "PYTHONPATH": str(HELPER.parent.parent)}


class FakeTrial:
    def __init__(self, name: str, status: str = Trial.RUNNING):
        self.config, self.status, self.error_file = {"candidate": name}, status, None


class FakeController:
    def __init__(self, trials):
        self.trials, self.stopped = trials, []

    def get_trials(self):
        return self.trials

    def stop_trial(self, trial):
        self.stopped.append(trial.config["candidate"])
        trial.status = Trial.TERMINATED


def _result(name: str, step: int, score: float, dropped: str = "") -> dict:
    return {CANDIDATE: name, STEP: step, SCORE: score, DROPPED: dropped}


def test_the_trial_scheduler_pauses_until_the_stage_is_decided_then_resumes_or_stops():
    trials = {n: FakeTrial(n) for n in "abcd"}
    controller = FakeController(list(trials.values()))
    ray_scheduler = StageTrialScheduler(StageScheduler(SuccessiveHalving(StageSchedule(2)), list("abcd"), 6))
    for name, score in (("a", 0.9), ("b", 0.1), ("c", 0.5)):
        assert ray_scheduler.on_trial_result(controller, trials[name], _result(name, 2, score)) == TrialScheduler.PAUSE
        trials[name].status = Trial.PAUSED
    assert ray_scheduler.choose_trial_to_run(controller) is None  # nobody may go on before d reports
    # d reports last: the stage is decided at once, b and c (paused) are stopped, a is chosen to run again
    assert ray_scheduler.on_trial_result(controller, trials["d"], _result("d", 2, 0.7)) == TrialScheduler.CONTINUE
    assert sorted(controller.stopped) == ["b", "c"]
    assert ray_scheduler.choose_trial_to_run(controller) is trials["a"]
    # a failed candidate is dropped with its reason, and nobody waits for it
    assert ray_scheduler.on_trial_result(controller, trials["a"], _result("a", 4, float("nan"), "loss is NaN")) \
        == TrialScheduler.STOP
    assert ray_scheduler.scheduler.dropped() == {"a": "loss is NaN"}
    assert ray_scheduler.on_trial_result(controller, trials["d"], _result("d", 4, 0.8)) == TrialScheduler.CONTINUE
    assert ray_scheduler.scheduler.winner == "d"


def test_without_ray_the_backend_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(ray_engine, "tune", None)
    with pytest.raises(SelectionError, match=r"pip install 'hf-twophase\[ray\]'"):
        ray_engine.require_ray()


def _run(models: Path, out: Path, backend: str, *extra: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HELPER), str(models), str(out), backend, *extra], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **popen)


def _summary(proc: subprocess.Popen, out: Path) -> dict:
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    return root, _summary(_run(root / "models", root / "local", "local"), root / "local")


def _workers() -> list[int]:
    """Ray workers running a trial's training (the process title names the method it is in)."""
    found = subprocess.run(["pgrep", "-f", "ray::ImplicitFunc.train"], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


@pytest.mark.slow
def test_on_ray_a_killed_worker_and_a_killed_driver_end_in_the_same_selection(in_process, tmp_path):
    """A worker killed while its trial trains restarts the trial; then the driver (with the local Ray it started) is
    killed once stage 1 is decided, and `resume=True` ends the selection, every survivor from its stage checkpoint:
    the same winner, decisions and steps as the in-process run."""
    root, expected = in_process
    out = tmp_path / "ray"
    proc = _run(root / "models", out, "ray")
    killed = []
    deadline = time.time() + 200
    state = out / "selection_state"
    while proc.poll() is None and time.time() < deadline and not killed:
        # a worker dies while its trial trains the first stage
        if (workers := _workers()) and not list((state / "reports").glob("*.json")):
            time.sleep(1.0)  # well inside the stage: the trial is running, not starting
            if not list((state / "reports").glob("*.json")):
                os.kill(workers[0], signal.SIGKILL)
                killed.append(workers[0])
        time.sleep(0.02)
    record = state / "records" / f"{4:08d}.json"
    while not record.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert killed and record.exists(), proc.communicate()[1][-3000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
    proc.wait()
    subprocess.run(["ray", "stop", "--force"], capture_output=True)
    got = _summary(_run(root / "models", out, "ray", "--resume"), out)
    assert got["winner"] == expected["winner"] and got["steps"] == expected["steps"]
    # the killed trial restarted (a dropped one would show in the decisions)
    assert got["decisions"] == expected["decisions"]
