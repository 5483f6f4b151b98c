"""The one decision object of phase 2: every engine decides through `StageScheduler.decide`, decisions are final,
and a selection moves between memory and a folder without being re-derived."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from hf_twophase import SelectionError, StageSchedule, StageScheduler, SuccessiveHalving
from hf_twophase.method import scheduler as scheduler_module
from hf_twophase.method.scheduler import STOP, WAIT
from hf_twophase.trainer.storage import DirectoryStorage, directory_scheduler

ROOT = Path(__file__).resolve().parent.parent


def _sh(stage: int = 10) -> SuccessiveHalving:
    return SuccessiveHalving(StageSchedule(stage))


def _prune_calls(path: Path) -> list[int]:
    """Lines of ``path`` that call a policy's ``prune``."""
    tree = ast.parse(path.read_text())
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == "prune"]


def test_no_engine_decides_by_another_route():
    """Only the scheduler asks a policy to prune (and a policy its inner policy): the replay simulator, the callback,
    the coordinator and the benchmarks all go through `StageScheduler.decide` / `answer`."""
    allowed = {ROOT / "hf_twophase" / "method" / "scheduler.py", ROOT / "hf_twophase" / "method" / "policies.py"}
    offenders = {str(p.relative_to(ROOT)): lines for folder in ("hf_twophase", "benchmarks", "examples")
                 for p in sorted((ROOT / folder).rglob("*.py")) if p not in allowed and (lines := _prune_calls(p))}
    assert offenders == {}, f"these decide without the scheduler: {offenders}"
    for module in ("method/replay.py", "trainer/callback.py", "trainer/coordinator.py", "trainer/report.py",
                   "trainer/ray_engine.py"):
        assert "StageScheduler" in (ROOT / "hf_twophase" / module).read_text(), module


def test_the_replay_simulator_decides_through_the_scheduler(monkeypatch):
    import pandas as pd

    from hf_twophase.method.replay import policy_factory, replay_target
    from hf_twophase.records.curves import CurveCube
    from hf_twophase.records.matrix import PerformanceMatrix

    rows = [{"model": m, "dataset": d, "step": s, "val": v * s / 4, "test": v, "cost": 1.0}
            for d in ("t", "b1", "b2") for m, v in (("x", 0.9), ("y", 0.5), ("z", 0.7), ("w", 0.2))
            for s in (1, 2, 3, 4)]
    cube = CurveCube(PerformanceMatrix(pd.DataFrame(rows)))
    judged = []
    original = StageScheduler._judge
    monkeypatch.setattr(StageScheduler, "_judge", lambda self, *a: judged.append(a[0]) or original(self, *a))
    run = replay_target(cube, "t", policy_factory("successive-halving", stage=1))
    assert judged == [1, 2] and run.selected == "x"  # 4 -> 2 at step 1, 2 -> 1 at step 2: the winner is known
    assert [d.action for d in run.decisions].count("winner") == 1


def test_a_decision_is_final_a_later_failure_does_not_rewrite_it(tmp_path):
    names = ["a", "b", "c", "d"]
    run = directory_scheduler(tmp_path, _sh(), names, 30)
    for c, v in zip(names, (0.9, 0.8, 0.2, 0.1), strict=True):
        run.report(c, 10, v)
    run.decide()
    assert run.alive == ["a", "b"]
    run.drop("a", "loss became NaN at step 15")  # a failure after stage 1 was decided
    run.report("b", 20, 0.85)
    run.decide()
    resumed = directory_scheduler(tmp_path, _sh(), names, 30)  # a fresh process reads the records back
    assert resumed.winner == "b" and resumed.answer("c", 10).action == STOP
    assert [(d.candidate, d.step, d.action) for d in resumed.decisions] == [
        ("d", 10, "pruned"), ("c", 10, "pruned"), ("a", 20, "dropped"), ("b", 20, "winner")]


def test_several_processes_act_on_the_first_record(tmp_path):
    """Two copies over one folder (two processes) both decide stage 1: the first record stands for both."""
    names = ["a", "b"]
    first, second = (directory_scheduler(tmp_path, _sh(), names, 30) for _ in range(2))
    first.report("a", 10, 0.9)
    second.report("b", 10, 0.1)
    assert first.answer("a", 10).action == WAIT
    first.decide()
    assert second.decide() == [] and second.winner == first.winner == "a"
    assert len(list((tmp_path / "records").glob("*.json"))) == 1


def test_state_dict_moves_a_selection_between_memory_and_a_folder(tmp_path):
    names = ["a", "b", "c"]
    memory = StageScheduler(_sh(), names, 30)
    for c, v in zip(names, (0.3, 0.2, 0.1), strict=True):
        memory.report(c, 10, v)
    memory.decide()
    folder = StageScheduler(_sh(), names, 30, storage=DirectoryStorage(tmp_path))
    folder.load_state_dict(json.loads(json.dumps(memory.state_dict())))
    assert folder.alive == memory.alive == ["a"] and folder.winner == "a"
    with pytest.raises(SelectionError, match="other candidates"):
        StageScheduler(_sh(), ["a", "b"], 30).load_state_dict(memory.state_dict())


def test_a_stage_waits_for_its_missing_reports_unless_forced():
    run = StageScheduler(_sh(), ["a", "b", "c"], 30)
    run.report("a", 10, 0.5)
    run.report("b", 10, 0.4)
    assert run.decide() == [] and run.missing(10) == ["c"] and run.answer("a", 10).action == WAIT
    run.drop("c", "could not be loaded")
    taken = run.decide()  # a dropped candidate is no longer awaited
    assert len(taken) == 1 and run.answer("c", 10).action == STOP
    assert run.answer("a", 10).go_on and run.winner == "a"


def test_every_candidate_failing_ends_the_selection_without_a_winner():
    run = StageScheduler(_sh(), ["a", "b"], 30)
    run.report("a", 10, float("nan"))
    run.decide(force=True)
    assert run.failed and run.done and run.winner is None
    assert run.answer("a", 10).action == STOP and run.answer("b", 10).action == STOP
    with pytest.raises(SelectionError, match="every candidate failed"):
        scheduler_module.play(StageScheduler(_sh(), ["a"], 30), lambda c, s: float("nan"))
