"""Where candidates report their stage scores and learn whether to go on: shared by Trainers.

Two ways to share, one decision rule (the policy objects of `method/policies.py`, replayed by `SelectionRun`):

- `SelectionState`: in memory, for Trainers in one process (the coordinator runs each in a greenlet on its own
  thread, taking turns on the accelerator).
- `DirectorySelectionState`: a folder, for Trainers in several processes or on several machines that
  see the same file system, or run one after another.

Two timings:

- `mode="sync"`: a stage's decision waits until every live candidate has reported that stage (or
  `timeout` seconds pass; a candidate that never arrives is dropped). The first decision of a stage is
  written once and read by everyone, so all candidates act on the same decision.
- `mode="async"` (ASHA-style): no waiting. A candidate goes on if the policy keeps it among the
  candidates that have already reported the same stage; the first candidate of a stage always goes on.
  This is the mode for Trainers that run one after another.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hf_twophase.atomic import StateFileError, read_state, write_json_atomic
from hf_twophase.errors import SelectionError
from hf_twophase.method.engine import SelectionRun
from hf_twophase.method.policies import Decision, SelectionPolicy
from hf_twophase.paths import folder_name

REPORT_FIELDS = {"candidate": str, "step": int, "val": float}
DROPPED_FIELDS = {"candidate": str, "reason": str}
_DAMAGED_HINT = ("delete the output folder's selection_state (or pass --overwrite) to start the selection again; "
                 "a resume cannot trust it")

PolicyFactory = Callable[[], SelectionPolicy]


@dataclass
class Verdict:
    """What a candidate learns after reporting a stage."""

    go_on: bool
    reason: str
    decision: Decision | None = None


def _replay(policy: SelectionPolicy, candidates: Sequence[str], budget: int,
            reports: dict[int, dict[str, float]], upto: int) -> SelectionRun:
    """Re-derive every decision up to stage step `upto` from the reports: the same inputs give the same
    decisions in every process, which is what keeps ranks and machines in agreement."""
    run = SelectionRun(policy, list(candidates), budget, apply_shortlist=False)  # never re-run a recall phase
    while not run.done and run.next_step() is not None and run.next_step() <= upto:
        step = run.next_step()
        run.observe({c: reports.get(step, {}).get(c, float("nan")) for c in run.alive})
    return run


def _verdict(run: SelectionRun, candidate: str, step: int) -> Verdict:
    for d in reversed(run.decisions):
        if d.candidate == candidate and d.action in ("pruned", "dropped", "not-recalled"):
            return Verdict(False, d.reason, d)
    if run.winner == candidate:
        return Verdict(True, "winner", next(d for d in reversed(run.decisions) if d.action == "winner"))
    if candidate in run.alive:
        return Verdict(True, "continues")
    return Verdict(False, "not a candidate")


class SelectionState:
    """In-memory shared state for Trainers in one process (thread-safe)."""

    def __init__(self, policy_factory: PolicyFactory, candidates: Sequence[str], budget: int, *,
                 mode: str = "sync", timeout: float = 3600.0):
        if mode not in ("sync", "async"):
            raise SelectionError(f"mode must be 'sync' or 'async', got {mode!r}")
        self.policy_factory = policy_factory
        self.candidates = list(candidates)
        self.budget = budget
        self.mode = mode
        self.timeout = timeout
        self.policy = policy_factory()
        self.stage_ends = self.policy.schedule.ends(budget)
        self._reports: dict[int, dict[str, float]] = {}
        self._dropped: dict[str, str] = {}
        self._decisions: dict[int, dict] = {}
        self._cond = threading.Condition()

    # -- storage (overridden by the directory state)
    def _write_report(self, candidate: str, step: int, value: float) -> None:
        self._reports.setdefault(step, {})[candidate] = value

    def _read_reports(self) -> dict[int, dict[str, float]]:
        return {s: dict(r) for s, r in self._reports.items()}

    def _read_dropped(self) -> dict[str, str]:
        return dict(self._dropped)

    def _write_dropped(self, candidate: str, reason: str) -> None:
        self._dropped[candidate] = reason

    def _decided(self, step: int) -> dict | None:
        return self._decisions.get(step)

    def _write_decision(self, step: int, reports: dict[int, dict[str, float]]) -> dict:
        """Freeze the reports a stage was decided on: everyone asking later gets the same decision."""
        return self._decisions.setdefault(step, {"reports": reports})

    def snapshot(self) -> dict:
        """Everything reported, dropped and decided so far, as plain data (what rank 0 sends the other ranks)."""
        with self._cond:
            decided = {s: self._decided(s) for s in self.stage_ends}
            return {"reports": self._read_reports(), "dropped": self._read_dropped(),
                    "decisions": {s: d for s, d in decided.items() if d is not None}}

    def restore(self, snapshot: dict) -> None:
        """Continue from another copy's ``snapshot`` (this in-memory state only)."""
        with self._cond:
            self._reports = {int(s): dict(r) for s, r in snapshot["reports"].items()}
            self._dropped = dict(snapshot["dropped"])
            self._decisions = {int(s): d for s, d in snapshot["decisions"].items()}
            self._cond.notify_all()

    # -- protocol
    def report(self, candidate: str, step: int, value: float) -> None:
        if candidate not in self.candidates:
            raise SelectionError(f"unknown candidate {candidate!r}; known: {', '.join(self.candidates)}")
        with self._cond:
            self._write_report(candidate, step, float(value))
            self._cond.notify_all()

    def drop(self, candidate: str, reason: str) -> None:
        """A candidate that failed (load error, NaN loss) leaves the selection; others stop waiting for it."""
        with self._cond:
            self._write_dropped(candidate, reason)
            self._cond.notify_all()

    def reports(self, *, include_dropped: bool = False) -> dict[int, dict[str, float]]:
        """Every value reported so far, by stage end and then candidate; a resumed coordinator rebuilds its curves
        and step counts from them. Dropped candidates' values are left out unless asked for: no decision uses them."""
        reports = self._read_reports()
        return reports if include_dropped else self._effective(reports)

    def dropped(self) -> dict[str, str]:
        """The candidates that left the selection (load error, NaN), each with its reason, for the report."""
        return dict(self._read_dropped())

    def _effective(self, reports: dict[int, dict[str, float]]) -> dict[int, dict[str, float]]:
        dropped = self._read_dropped()
        return {s: {c: v for c, v in r.items() if c not in dropped} for s, r in reports.items()}

    def verdict(self, candidate: str, step: int) -> Verdict:
        """Block (sync) or not (async) until `candidate` may learn whether it goes on after `step`."""
        if step not in self.stage_ends:
            return Verdict(True, "not a stage end")
        if self.mode == "async":
            # ASHA: judge this stage alone, among those that have reached it so far
            at_step = self._effective(self._read_reports()).get(step, {})
            if candidate not in at_step:
                return Verdict(False, "dropped")
            if step >= self.budget:
                return Verdict(True, "trained to the budget")
            pruned = self.policy_factory().prune(step, sorted(at_step), at_step)
            mine = next((d for d in pruned if d.candidate == candidate), None)
            return Verdict(True, "continues") if mine is None else Verdict(False, mine.reason, mine)
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while True:
                reports = self._decision_reports(step, force=time.monotonic() >= deadline)
                if reports is not None:
                    break
                self._cond.wait(timeout=min(1.0, max(0.01, deadline - time.monotonic())))
        run = _replay(self.policy_factory(), self.candidates, self.budget, reports, step)
        return _verdict(run, candidate, step)

    def ready(self, step: int) -> bool:
        """Whether `step`'s decision can be made now, without waiting: it was made already, or every candidate still
        in the selection has reported `step`. Lets a caller that runs the candidates itself avoid waiting on a
        report that only a candidate it has not run yet can give."""
        if step not in self.stage_ends or self.mode == "async":
            return True
        with self._cond:
            return self._decision_reports(step) is not None

    def _decision_reports(self, step: int, *, force: bool = False) -> dict[int, dict[str, float]] | None:
        """The reports `step` is decided on, frozen on first use; None while a live candidate has yet to report it
        (unless `force`: the timeout passed, and the missing candidates are judged without their report)."""
        frozen = self._decided(step)
        if frozen is not None:
            return frozen["reports"]
        reports = self._effective(self._read_reports())
        if not self._awaited(step, reports) or force:
            return self._write_decision(step, reports)["reports"]
        return None

    def note_decided(self, step: int) -> None:
        """Freeze `step` as decided on the reports at hand: for a copy of the state on a rank that receives its
        decisions from rank 0 instead of making them."""
        with self._cond:
            if self._decided(step) is None:
                self._write_decision(step, self._effective(self._read_reports()))

    def missing(self, step: int) -> list[str]:
        """The live candidates that have not reported `step` yet (for an error that says who is awaited)."""
        return self._awaited(step, self._effective(self._read_reports()))

    def _awaited(self, step: int, reports: dict[int, dict[str, float]]) -> list[str]:
        live = _replay(self.policy_factory(), self.candidates, self.budget, reports,
                       max([s for s in self.stage_ends if s < step], default=0)).alive
        dropped = self._read_dropped()
        return [c for c in live if c not in dropped and c not in reports.get(step, {})]

    def run_so_far(self) -> SelectionRun:
        """The selection as far as it was decided: reports of a stage that is not decided yet (some candidates
        reported it before a crash, others not) do not count, or a resume would judge the others absent."""
        reports = self._effective(self._read_reports())
        decided = [s for s in self.stage_ends if self._decided(s) is not None]
        if self.mode == "async" or not decided:
            last = max(reports, default=0) if self.mode == "async" else 0
        else:
            last = max(decided)
        return _replay(self.policy_factory(), self.candidates, self.budget, reports, last)


class DirectorySelectionState(SelectionState):
    """The same protocol over a folder: one JSON file per report, decisions frozen with an exclusive create."""

    def __init__(self, path: str | os.PathLike, policy_factory: PolicyFactory, candidates: Sequence[str],
                 budget: int, *, mode: str = "sync", timeout: float = 3600.0, poll: float = 0.5):
        super().__init__(policy_factory, candidates, budget, mode=mode, timeout=timeout)
        self.path = Path(path)
        self.poll = poll
        (self.path / "reports").mkdir(parents=True, exist_ok=True)
        (self.path / "decisions").mkdir(exist_ok=True)
        (self.path / "dropped").mkdir(exist_ok=True)
        self._cond = _PollingCondition(poll)  # other processes cannot notify us: waiting re-reads the folder

    def _write_report(self, candidate, step, value):
        write_json_atomic(self.path / "reports" / f"{step:08d}__{folder_name(candidate)}.json",
                           {"candidate": candidate, "step": step, "val": value, "time": time.time()})

    def _read_reports(self):
        out: dict[int, dict[str, float]] = {}
        for f in (self.path / "reports").glob("*.json"):  # written atomically: a file that cannot be read is damaged
            data = read_state(f, REPORT_FIELDS, what="selection report", hint=_DAMAGED_HINT)
            out.setdefault(data["step"], {})[data["candidate"]] = float(data["val"])
        return out

    def _write_dropped(self, candidate, reason):
        write_json_atomic(self.path / "dropped" / f"{folder_name(candidate)}.json",
                           {"candidate": candidate, "reason": reason})

    def _read_dropped(self):
        out = {}
        for f in (self.path / "dropped").glob("*.json"):
            data = read_state(f, DROPPED_FIELDS, what="dropped-candidate record", hint=_DAMAGED_HINT)
            out[data["candidate"]] = data["reason"]
        return out

    def _decided(self, step):
        f = self.path / "decisions" / f"{step:08d}.json"
        if not f.is_file():
            return None
        data = read_state(f, {"reports": dict}, what="stage decision", hint=_DAMAGED_HINT)
        reports: dict[int, dict[str, float]] = {}
        for stage, scores in data["reports"].items():
            if not (isinstance(stage, str) and stage.isdigit() and isinstance(scores, dict)
                    and all(isinstance(v, int | float) and not isinstance(v, bool) for v in scores.values())):
                found = json.dumps({stage: scores})[:80]
                raise StateFileError(f"stage decision {f} is damaged: 'reports' should map stage numbers to "
                                     f"{{candidate: score}}, found {found}; {_DAMAGED_HINT}")
            reports[int(stage)] = {str(k): float(v) for k, v in scores.items()}
        return {"reports": reports}

    def check(self) -> None:
        """Read every state file once, so that a damaged one ends a resume before any training, with its name."""
        self._read_reports()
        self._read_dropped()
        for f in (self.path / "decisions").glob("*.json"):
            if not f.stem.isdigit():
                raise StateFileError(f"stage decision {f} is not named after a step; {_DAMAGED_HINT}")
            self._decided(int(f.stem))

    def _write_decision(self, step, reports):
        f = self.path / "decisions" / f"{step:08d}.json"
        try:  # the first decider wins, with its whole file; the others read it
            write_json_atomic(f, {"reports": {str(s): r for s, r in reports.items()}}, exclusive=True)
        except FileExistsError:
            for _ in range(100):
                frozen = self._decided(step)
                if frozen is not None:
                    return frozen
                time.sleep(0.05)
            raise SelectionError(f"decision file {f} exists but cannot be read") from None
        return {"reports": reports}


class _PollingCondition:
    """A stand-in for threading.Condition whose wait is a sleep: other processes cannot notify us."""

    def __init__(self, poll: float):
        self.poll = poll
        self._lock = threading.Lock()

    def __enter__(self):
        self._lock.acquire()
        return self

    def __exit__(self, *exc):
        self._lock.release()

    def wait(self, timeout: float | None = None) -> None:
        self._lock.release()
        try:
            time.sleep(min(self.poll, timeout or self.poll))
        finally:
            self._lock.acquire()

    def notify_all(self) -> None:
        pass
