"""Kill a tiny selection at every step boundary, every decision and its save, resume it, and compare.

`python tests/crash_helper.py MODELS_DIR WORK` writes WORK/results.json. The parent process imports the libraries
once and trains nothing itself; each crashed run and each resume is a forked child, so a crash is a real SIGKILL of
a process mid-selection, and a point costs the training it does, not a fresh interpreter's imports.

The selection: 4 tiny BERT candidates, 6 steps each in stages of 2, successive halving (4 -> 2 at step 2, 2 -> 1 at
step 4, the winner to step 6), stage checkpoints written in place as on the CPU by default.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hf_twophase.trainer import callback as callback_module  # noqa: E402
from hf_twophase.trainer import coordinator as coordinator_module  # noqa: E402
from hf_twophase.trainer import storage as storage_module  # noqa: E402
from hf_twophase.trainer.config import SelectionConfig  # noqa: E402

CANDIDATES = 4
BUDGET, STAGE = 6, 2
STEP_BOUNDARIES = 4 * 2 + 2 * 2 + 1 * 2  # optimizer steps over the whole selection
DECISIONS = 2  # stage records: 4 -> 2 at step 2, 2 -> 1 at step 4 (the winner is known; step 6 is not judged)


def selection(models_dir: Path, out: Path):
    from tests.coordinator_helpers import make_candidates, make_data, training_args

    names = make_candidates(models_dir)[:CANDIDATES]
    return coordinator_module.SelectionCoordinator(names, make_data(128, 0), make_data(32, 1),
                                                   training_args(out, max_steps=BUDGET),
                                                   SelectionConfig(stage_steps=STAGE))


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _crash_at(point: str) -> None:
    """Arm the crash in this (child) process: `step:N`, `decision:N` or `save`."""
    kind, _, n = point.partition(":")
    count = {"n": 0}
    if kind == "step":
        original = callback_module.FineSelectionCallback.on_step_end

        def on_step_end(self, *args, **kwargs):
            count["n"] += 1
            if count["n"] == int(n):
                _die()  # step N has been taken, nothing of it recorded yet
            return original(self, *args, **kwargs)

        callback_module.FineSelectionCallback.on_step_end = on_step_end
    elif kind == "decision":
        original = storage_module.DirectoryStorage.add_record

        def add_record(self, key, record):
            stored = original(self, key, record)
            count["n"] += 1
            if count["n"] == int(n):
                _die()  # decided and written, not yet acted on
            return stored

        storage_module.DirectoryStorage.add_record = add_record
    elif kind == "save":
        original = coordinator_module.SelectionCoordinator._save_winner

        def save_winner(self, slot, folder):
            original(self, slot, folder)
            _die()  # the winner saved, the report maybe not

        coordinator_module.SelectionCoordinator._save_winner = save_winner
    else:
        raise ValueError(point)


def _in_child(run) -> int:
    pid = os.fork()
    if pid == 0:  # the child: run, then leave without the parent's exit handlers
        import gc

        gc.collect = lambda *args: 0  # the full collection every Trainer.train starts with: time, not behaviour
        signal.alarm(120)  # a hung resume is a failure (SIGALRM: exit status -14), not a hung test
        code = 0
        try:
            run()
        except BaseException as exc:  # noqa: BLE001 - reported through the exit status
            print(f"child failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _summary(out: Path) -> dict:
    report = json.loads((out / "report.json").read_text())
    return {"winner": report["winner"], "steps_spent": report["steps_spent"],
            "candidates": [{k: c[k] for k in ("name", "status", "stopped_at", "steps_trained", "curve")}
                           for c in report["candidates"]]}


def _point(models_dir: Path, work: Path, point: str) -> dict:
    """Crash one fresh selection at ``point``, resume it (twice where that is tested) and summarise the outcome."""
    out = work / point.replace(":", "-")

    def crash():
        _crash_at(point)
        selection(models_dir, out).run()

    crashed = _in_child(crash)
    resumed = [_in_child(lambda: selection(models_dir, out).run(resume=True))]
    if point in ("step:5", "decision:1"):  # resuming twice is safe
        resumed.append(_in_child(lambda: selection(models_dir, out).run(resume=True)))
    got = _summary(out) if (out / "report.json").is_file() else None
    return {"crashed": crashed, "resumed": resumed, "got": got}


def main(models_dir: Path, work: Path, side_by_side: int = 2) -> dict:
    """Every crash point in its own folder, ``side_by_side`` points at a time (one per core: each point's runs are
    sequential, so the points are independent)."""
    import torch

    torch.set_num_threads(1)  # the children inherit it: two points on two cores do not fight over threads
    points = [f"step:{n}" for n in range(1, STEP_BOUNDARIES + 1)]
    points += [f"decision:{n}" for n in range(1, DECISIONS + 1)] + ["save"]
    straight = work / "straight"
    assert _in_child(lambda: selection(models_dir, straight).run()) == 0
    expected = _summary(straight)
    running: dict[int, str] = {}
    pending = list(points)
    while pending or running:
        while pending and len(running) < side_by_side:
            point = pending.pop(0)
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    outcome = _point(models_dir, work, point)
                    (work / f"{point.replace(':', '-')}.json").write_text(json.dumps(outcome))
                except BaseException as exc:  # noqa: BLE001 - reported through the exit status
                    print(f"point {point} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                    code = 3
                os._exit(code)
            running[pid] = point
        pid, status = os.wait()
        point = running.pop(pid)
        assert os.waitstatus_to_exitcode(status) == 0, f"the runner of {point} failed"
    results = {"expected": expected, "points": {}}
    for point in points:
        outcome = json.loads((work / f"{point.replace(':', '-')}.json").read_text())
        results["points"][point] = {**outcome, "same": outcome["got"] == expected}
    (work / "results.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
