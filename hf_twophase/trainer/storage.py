"""`DirectoryStorage`: a selection's reports and decisions in a folder, for a `StageScheduler` shared by processes.

Trainers in several processes, on several machines that see one file system, or run one after another, and a
selection that must survive a crash, keep their `StageScheduler` here. One small JSON file per report, per dropped
candidate and per decision record, each written atomically; a record is published with an exclusive create, so
when two processes decide the same stage the first record wins and everyone acts on it. Every file is checked when
read: a damaged one ends the run with its name, before anything acts on it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from hf_twophase.atomic import StateFileError, check_fields, read_state, write_json_atomic
from hf_twophase.method.policies import Decision
from hf_twophase.method.scheduler import RecordKey, StageScheduler
from hf_twophase.paths import folder_name

REPORT_FIELDS = {"candidate": str, "step": int, "val": float}
DROPPED_FIELDS = {"candidate": str, "reason": str}
RECORD_FIELDS = {"step": int, "candidate?": str, "record": dict}
DECISION_FIELDS = {"candidate": str, "step": int, "action": str, "reason": str}
_DECISION_KEYS = {f.name for f in dataclasses.fields(Decision)}
DAMAGED_HINT = ("delete the output folder's selection_state (or pass --overwrite) to start the selection again; "
                "a resume cannot trust it")


class DirectoryStorage:
    """A `SchedulerStorage` over ``path``: ``reports/``, ``dropped/`` and ``records/``, one JSON file each.

    ``poll`` is how often a caller that waits on other processes looks again (they cannot notify it)."""

    def __init__(self, path: str | os.PathLike, *, poll: float = 0.5):
        self.path = Path(path)
        self.poll = poll
        for sub in ("reports", "dropped", "records"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        self._records: dict[str, tuple[RecordKey, dict]] = {}  # by file name: a record never changes once written

    def add_report(self, candidate: str, step: int, value: float) -> None:
        write_json_atomic(self.path / "reports" / f"{step:08d}__{folder_name(candidate)}.json",
                          {"candidate": candidate, "step": step, "val": value, "time": time.time()})

    def reports(self) -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {}
        for f in (self.path / "reports").glob("*.json"):  # written atomically: a file that cannot be read is damaged
            data = read_state(f, REPORT_FIELDS, what="selection report", hint=DAMAGED_HINT)
            out.setdefault(data["step"], {})[data["candidate"]] = float(data["val"])
        return out

    def add_dropped(self, candidate: str, reason: str) -> None:
        f = self.path / "dropped" / f"{folder_name(candidate)}.json"
        try:  # the first reason stands
            write_json_atomic(f, {"candidate": candidate, "reason": reason}, exclusive=True)
        except FileExistsError:
            pass

    def dropped(self) -> dict[str, str]:
        out = {}
        for f in (self.path / "dropped").glob("*.json"):
            data = read_state(f, DROPPED_FIELDS, what="dropped-candidate record", hint=DAMAGED_HINT)
            out[data["candidate"]] = data["reason"]
        return out

    @staticmethod
    def _record_name(key: RecordKey) -> str:
        step, candidate = key
        return f"{step:08d}.json" if candidate is None else f"{step:08d}__{folder_name(candidate)}.json"

    def add_record(self, key: RecordKey, record: dict) -> dict:
        f = self.path / "records" / self._record_name(key)
        step, candidate = key
        try:  # the first decider wins, with its whole file; the others read it
            write_json_atomic(f, {"step": step, "candidate": candidate, "record": record}, exclusive=True)
            return record
        except FileExistsError:
            return self._read_record(f)[1]

    def records(self) -> dict[RecordKey, dict]:
        for f in (self.path / "records").glob("*.json"):
            if f.name not in self._records:
                self._records[f.name] = self._read_record(f)
        return dict(self._records.values())

    def _read_record(self, f: Path) -> tuple[RecordKey, dict]:
        data = read_state(f, RECORD_FIELDS, what="selection decision", hint=DAMAGED_HINT)
        key = (data["step"], data.get("candidate"))
        if f.name != self._record_name(key):
            raise StateFileError(f"selection decision {f} is damaged: its name does not match its step and "
                                 f"candidate; {DAMAGED_HINT}")
        record = data["record"]
        for d in record.get("decisions", []):
            check_fields(d, DECISION_FIELDS, path=f, what="selection decision", hint=DAMAGED_HINT)
            if not set(d) <= _DECISION_KEYS:
                raise StateFileError(f"selection decision {f} is damaged: unknown fields "
                                     f"{sorted(set(d) - _DECISION_KEYS)}; {DAMAGED_HINT}")
        fields = ({"action": str, "reason": str} if key[1] is not None
                  else {"alive": list} if key[0] == 0 else {"alive": list, "winner?": str})
        check_fields(record, {**fields, "decisions?": list}, path=f, what="selection decision", hint=DAMAGED_HINT)
        return key, record

    def check(self) -> None:
        """Read every state file once, so that a damaged one ends a resume before any training, with its name."""
        self.reports()
        self.dropped()
        self.records()


def directory_scheduler(path: str | os.PathLike, policy, candidates, budget: int, *, mode: str = "sync",
                        poll: float = 0.5) -> StageScheduler:
    """A `StageScheduler` kept in ``path``: what several processes (or Trainers run one after another) share."""
    return StageScheduler(policy, candidates, budget, storage=DirectoryStorage(path, poll=poll), mode=mode)

