"""`StageScheduler`: the one object that takes phase 2's decisions, whoever trains the candidates.

Candidates report ``(candidate, step, value)`` at the stage ends of the policy's schedule; the scheduler answers each
one ``continue``, ``wait`` (the stage's decision needs reports that have not arrived) or ``stop``. Every engine drives
this same object: the replay simulator, the Trainer callback, the in-process coordinator and the Ray Tune scheduler.
So a replayed benchmark measures exactly the decisions users get, and there is one place where a decision is made
(`decide`).

Decisions are incremental and final: a stage is judged once, on the reports of the candidates still in the
selection, and its record (who stopped, why, who is left) is stored. A resumed selection reads the records back and
never asks the policy again, so a later event (a candidate that fails at stage 3) cannot rewrite what stage 1 decided.

Where the reports and records live is a `SchedulerStorage`: `MemoryStorage` here; a folder shared by processes and
machines in `hf_twophase.trainer.storage`. Two timings:

- ``mode="sync"``: a stage is decided once every candidate still in the selection has reported it (or ``decide`` is
  forced, for a candidate that never arrives: it is dropped). For candidates that train side by side or take turns.
- ``mode="async"`` (in the style of ASHA): no waiting. A candidate's answer at a stage is taken the moment it asks,
  among the candidates that have reported that stage so far, and frozen. For Trainers that run one after another.

Pure: no torch, no transformers.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from hf_twophase.errors import SelectionError
from hf_twophase.method.policies import Decision, Progress, SelectionPolicy, Shortlist

CONTINUE, WAIT, STOP = "continue", "wait", "stop"
MODES = ("sync", "async")
STOPPING = ("pruned", "dropped", "not-recalled")

# a decision record's key: (stage end, None) for a stage of the synchronous mode, (step, candidate) for one answer
# of the asynchronous mode; (0, None) holds the shortlist taken before any training
RecordKey = tuple[int, str | None]


@dataclass(frozen=True)
class Answer:
    """What a candidate learns after reporting a stage end."""

    action: str  # CONTINUE | WAIT | STOP
    reason: str
    decision: Decision | None = None

    @property
    def go_on(self) -> bool:
        return self.action == CONTINUE


class SchedulerStorage(Protocol):
    """Where reports, dropped candidates and decision records are kept. Records are written once: when two
    processes decide the same key, the first record stored wins and both act on it."""

    def add_report(self, candidate: str, step: int, value: float) -> None: ...

    def reports(self) -> dict[int, dict[str, float]]: ...

    def add_dropped(self, candidate: str, reason: str) -> None: ...

    def dropped(self) -> dict[str, str]: ...

    def add_record(self, key: RecordKey, record: dict) -> dict:
        """Store ``record`` under ``key`` unless one is there already; return the one stored."""
        ...

    def records(self) -> dict[RecordKey, dict]: ...


class MemoryStorage:
    """A selection kept in this process (the replay simulator; candidates taking turns in one process)."""

    def __init__(self) -> None:
        self._reports: dict[int, dict[str, float]] = {}
        self._dropped: dict[str, str] = {}
        self._records: dict[RecordKey, dict] = {}

    def add_report(self, candidate: str, step: int, value: float) -> None:
        self._reports.setdefault(step, {})[candidate] = value

    def reports(self) -> dict[int, dict[str, float]]:
        return {s: dict(r) for s, r in self._reports.items()}

    def add_dropped(self, candidate: str, reason: str) -> None:
        self._dropped.setdefault(candidate, reason)

    def dropped(self) -> dict[str, str]:
        return dict(self._dropped)

    def add_record(self, key: RecordKey, record: dict) -> dict:
        return self._records.setdefault(key, record)

    def records(self) -> dict[RecordKey, dict]:
        return dict(self._records)


def _finite(value: float | None) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


class StageScheduler:
    """Phase 2's decisions over one storage.

    Args:
        policy: the pruning rule (`hf_twophase.method.policies`); its schedule sets the stage ends.
        candidates: the names of the candidates, unique.
        budget: training steps per candidate; the last stage ends there.
        storage: where reports and decisions live (default: in memory).
        mode: "sync" (stage barrier) or "async" (ASHA-style, no waiting).
        shortlist: let the policy cut the candidates before any training (the two-phase policy's recall, in
            replay); a live selection has taken phase 1 already.
    """

    def __init__(self, policy: SelectionPolicy, candidates: Sequence[str], budget: int, *,
                 storage: SchedulerStorage | None = None, mode: str = "sync", shortlist: bool = False):
        if mode not in MODES:
            raise SelectionError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not candidates and mode != "async":  # an open-ended search enrolls its candidates as they come
            raise SelectionError("no candidates to select from")
        if len(set(candidates)) != len(candidates):
            raise SelectionError("candidate names must be unique")
        if budget < 1:
            raise SelectionError(f"the budget must be at least 1 step, got {budget}")
        self.policy, self.candidates, self.budget, self.mode = policy, list(candidates), int(budget), mode
        self.storage = storage if storage is not None else MemoryStorage()
        self.stage_ends = policy.schedule.ends(self.budget)
        self._lock = threading.RLock()  # Trainers on several threads may share one scheduler
        self._reset()
        if shortlist and (0, None) not in self.storage.records():
            self.storage.add_record((0, None), self._shortlist_record(policy.shortlist(self.candidates)))
        self.refresh()

    # ------------------------------------------------------------------ state
    def _reset(self) -> None:
        self.alive: list[str] = list(self.candidates)
        self.decisions: list[Decision] = []
        self.winner: str | None = None
        self.failed = False  # every candidate failed: the selection is over without a winner
        self.decided: list[int] = []  # stage ends decided so far (sync)
        self.shortlist_cost = 0.0
        self._answers: dict[tuple[str, int], Answer] = {}  # async answers, frozen
        self._applied: set[RecordKey] = set()

    @property
    def done(self) -> bool:
        """Whether the selection is over: a winner is known, or every candidate failed."""
        return self.winner is not None or self.failed

    def next_step(self) -> int | None:
        """The next stage end to decide (sync); None once the selection is over."""
        if self.done:
            return None
        return next((s for s in self.stage_ends if s not in self.decided), None)

    def refresh(self) -> None:
        """Apply the records stored since the last look (another process's decisions, or a resumed selection's)."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        records = self.storage.records()
        for key in sorted((k for k in records if k not in self._applied), key=lambda k: (k[0], k[1] or "")):
            self._apply(key, records[key])

    def _apply(self, key: RecordKey, record: dict) -> None:
        self._applied.add(key)
        step, candidate = key
        decisions = [Decision(**d) for d in record.get("decisions", [])]
        self.decisions.extend(decisions)
        if candidate is not None:  # one asynchronous answer
            d = decisions[0] if decisions else None
            self._answers[(candidate, step)] = Answer(record["action"], record["reason"], d)
            return
        self.alive = list(record["alive"])
        self.shortlist_cost += float(record.get("cost", 0.0))
        if step > 0:
            self.decided.append(step)
        self.winner = record.get("winner")
        self.failed = bool(record.get("failed", False))

    @staticmethod
    def _shortlist_record(short: Shortlist) -> dict:
        if not short.candidates:
            raise SelectionError("the policy kept no candidate before training")
        return {"alive": list(short.candidates), "cost": short.cost,
                "decisions": [d.to_dict() for d in short.decisions]}

    # ------------------------------------------------------------------ candidates' side
    def enroll(self, candidate: str) -> None:
        """Let a new candidate in. Open-ended searches (Optuna's trials, drawn one after another) learn their
        candidates as they come; only the asynchronous mode takes them, since a synchronous stage already decided
        could not be judged again with a newcomer."""
        with self._lock:
            if candidate in self.candidates:
                return
            if self.mode != "async":
                raise SelectionError(f"a synchronous selection has a fixed set of candidates; {candidate!r} is not "
                                     f"one of {', '.join(self.candidates)}")
            self.candidates.append(candidate)
            self.alive.append(candidate)

    def report(self, candidate: str, step: int, value: float) -> None:
        """Record a candidate's validation score at ``step`` (greater is better; NaN: it failed)."""
        self._known(candidate)
        self.storage.add_report(candidate, int(step), float(value))

    def drop(self, candidate: str, reason: str) -> None:
        """A candidate that failed (load error, NaN loss) leaves the selection; no decision waits for it."""
        self._known(candidate)
        self.storage.add_dropped(candidate, reason)

    def reports(self, *, include_dropped: bool = False) -> dict[int, dict[str, float]]:
        """Every score reported, by step and candidate; dropped candidates' scores only when asked for."""
        reports = self.storage.reports()
        if include_dropped:
            return reports
        dropped = self.storage.dropped()
        return {s: {c: v for c, v in r.items() if c not in dropped} for s, r in reports.items()}

    def dropped(self) -> dict[str, str]:
        return self.storage.dropped()

    def answer(self, candidate: str, step: int) -> Answer:
        """Whether ``candidate`` goes on after reporting ``step``: WAIT while its stage is not decided (sync)."""
        self._known(candidate)
        if step not in self.stage_ends:
            return Answer(CONTINUE, "not a stage end")
        with self._lock:
            return self._answer(candidate, step)

    def _answer(self, candidate: str, step: int) -> Answer:
        self._refresh()
        if self.mode == "async":
            return self._async_answer(candidate, step)
        for d in self.decisions:
            if d.candidate == candidate and d.action in STOPPING:
                return Answer(STOP, d.reason, d)
        dropped = self.storage.dropped()
        if candidate in dropped:
            return Answer(STOP, f"dropped: {dropped[candidate]}")
        if self.winner == candidate:
            return Answer(CONTINUE, "winner", next(d for d in reversed(self.decisions) if d.action == "winner"))
        if self.failed or candidate not in self.alive:
            return Answer(STOP, "not in the selection")
        if step in self.decided:
            return Answer(CONTINUE, "continues")
        return Answer(WAIT, f"waiting for the decision at step {step}")

    def await_answer(self, candidate: str, step: int, *, timeout: float = 3600.0, poll: float | None = None
                     ) -> Answer:
        """Wait for ``candidate``'s answer at ``step``, deciding whatever can be decided meanwhile; after ``timeout``
        seconds the stage is decided without the candidates that have not reported it (they are dropped). For
        drivers whose candidates run on their own (Trainers in several threads or processes)."""
        poll = poll if poll is not None else getattr(self.storage, "poll", 0.05)
        deadline = time.monotonic() + timeout
        while True:
            self.decide(force=time.monotonic() >= deadline)
            answer = self.answer(candidate, step)
            if answer.action != WAIT:
                return answer
            time.sleep(poll)

    def missing(self, step: int) -> list[str]:
        """The candidates still in the selection that have not reported ``step`` yet."""
        dropped = self.storage.dropped()
        reported = self.storage.reports().get(step, {})
        return [c for c in self.alive if c not in dropped and c not in reported]

    def _known(self, candidate: str) -> None:
        if candidate not in self.candidates:
            raise SelectionError(f"unknown candidate {candidate!r}; known: {', '.join(self.candidates)}")

    # ------------------------------------------------------------------ the one place decisions are made
    def decide(self, *, force: bool = False) -> list[dict]:
        """Take every decision whose reports have all arrived, in stage order; with ``force``, also the next one
        whose reports have not (its missing candidates are dropped). Returns the records taken now."""
        with self._lock:
            return self._decide(force)

    def _decide(self, force: bool) -> list[dict]:
        self._refresh()
        if self.mode == "async":
            return []
        taken = []
        while not self.done:
            step = self.next_step()
            if step is None:
                break
            missing = self.missing(step)
            if missing and not force:
                break
            force = False  # only the stage that waited is judged without its missing reports
            key = (step, None)
            record = self.storage.add_record(key, self._judge(step, missing))  # another process's, if it was first
            self._apply(key, record)
            taken.append(record)
        return taken

    def _progress(self, step: int) -> dict:
        """The ``progress`` keyword for a policy that models whole curves: every report up to ``step``."""
        if not self.policy.uses_progress:
            return {}
        points: dict[str, list[tuple[int, float]]] = {}
        for at, values in sorted(self.storage.reports().items()):
            if at <= step:
                for c, v in values.items():
                    if _finite(v):
                        points.setdefault(c, []).append((at, float(v)))
        return {"progress": Progress(budget=self.budget, points=points)}

    def _judge(self, step: int, missing: Sequence[str]) -> dict:
        dropped = self.storage.dropped()
        vals = self.storage.reports().get(step, {})
        alive, new = [], []
        for c in self.alive:
            v = vals.get(c)
            if c in dropped or not _finite(v):
                why = (dropped.get(c) or ("no report by the deadline" if c in missing else "no finite score"))
                new.append(Decision(c, step, "dropped", "no score", note=why))
            else:
                alive.append(c)
        if not alive:
            return {"alive": [], "winner": None, "failed": True, "decisions": [d.to_dict() for d in new]}
        final = step >= self.budget
        current = {c: float(vals[c]) for c in alive}
        pruned = self.policy.prune(step, list(alive), current, final=final, **self._progress(step))
        gone = {d.candidate for d in pruned}
        if gone >= set(alive):
            raise SelectionError(f"policy {self.policy.name} pruned every candidate at step {step}")
        new.extend(pruned)
        alive = [c for c in alive if c not in gone]
        winner = None
        if len(alive) == 1:
            winner = alive[0]
            new.append(Decision(winner, step, "winner", "best-at-budget" if final else "last-standing",
                                val=current[winner], note="" if final else "trained to the full budget"))
        elif final:
            winner = max(alive, key=lambda c: (current[c], c))
            new.extend(Decision(c, step, "pruned", "lower-at-budget", val=current[c]) for c in alive if c != winner)
            new.append(Decision(winner, step, "winner", "best-at-budget", val=current[winner]))
            alive = [winner]
        return {"alive": alive, "winner": winner, "decisions": [d.to_dict() for d in new]}

    def _async_answer(self, candidate: str, step: int) -> Answer:
        if (candidate, step) in self._answers:
            return self._answers[(candidate, step)]
        dropped = self.storage.dropped()
        at_step = {c: v for c, v in self.storage.reports().get(step, {}).items() if c not in dropped and _finite(v)}
        if candidate not in at_step:
            answer = Answer(STOP, f"dropped: {dropped.get(candidate, 'no finite score')}")
        elif step >= self.budget:
            answer = Answer(CONTINUE, "trained to the budget")
        else:  # judged among those that have reached this stage so far
            mine = next((d for d in self.policy.prune(step, sorted(at_step), at_step, **self._progress(step))
                         if d.candidate == candidate),
                        None)
            answer = Answer(CONTINUE, "continues") if mine is None else Answer(STOP, mine.reason, mine)
        record = {"action": answer.action, "reason": answer.reason,
                  "decisions": [answer.decision.to_dict()] if answer.decision else []}
        key = (step, candidate)
        self._apply(key, self.storage.add_record(key, record))
        return self._answers[(candidate, step)]

    def __getstate__(self) -> dict:  # a copy in another process (Ray saves its scheduler) gets a lock of its own
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ plain data
    def state_dict(self) -> dict:
        """Everything reported, dropped and decided, as plain data (JSON-ready)."""
        return {"candidates": list(self.candidates), "budget": self.budget, "mode": self.mode,
                "policy": self.policy.describe(),
                "reports": {str(s): r for s, r in self.storage.reports().items()},
                "dropped": self.storage.dropped(),
                "records": [[s, c, r] for (s, c), r in sorted(self.storage.records().items(),
                                                               key=lambda item: (item[0][0], item[0][1] or ""))]}

    def load_state_dict(self, state: Mapping) -> None:
        """Continue from ``state_dict()`` (of this scheduler in another process, or saved before a crash) into this
        scheduler's own storage."""
        if self.mode == "async":  # an open-ended search: the saved one may have enrolled more candidates
            for candidate in state["candidates"]:
                self.enroll(candidate)
        if list(state["candidates"]) != self.candidates or int(state["budget"]) != self.budget:
            raise SelectionError("the saved selection is of other candidates or another budget; cannot continue it")
        for s, by_candidate in state["reports"].items():
            for c, v in by_candidate.items():
                self.storage.add_report(c, int(s), float(v))
        for c, reason in state["dropped"].items():
            self.storage.add_dropped(c, reason)
        for s, c, record in state["records"]:
            self.storage.add_record((int(s), c), record)
        self.refresh()


def play(scheduler: StageScheduler, score_at: Callable[[str, int], float]) -> dict[str, int]:
    """Drive a synchronous selection to its end with ``score_at(candidate, step)`` as the evaluation, and return the
    step each candidate trained to (the winner: the full budget). How the replay simulator and cost estimates train:
    through the same `decide` as live training."""
    if scheduler.mode != "sync":
        raise SelectionError("play drives the synchronous mode")
    reached = dict.fromkeys(scheduler.alive, 0)
    while not scheduler.done:
        step = scheduler.next_step()
        for c in scheduler.alive:
            reached[c] = step
            scheduler.report(c, step, score_at(c, step))
        scheduler.decide()
    if scheduler.winner is None:
        raise SelectionError("every candidate failed; nothing left to select")
    reached[scheduler.winner] = scheduler.budget
    return reached
