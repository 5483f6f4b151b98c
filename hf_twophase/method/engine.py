"""The stage loop shared by replay and live training: who trains to which step next, and who won.

`SelectionRun` is a small state machine. The driver (the replay simulator, or the Trainer
coordinator) asks `next_step()`, trains the alive candidates up to it, reports their validation
scores with `observe()`, and repeats until `winner` is set. Its whole state is plain data
(`state_dict`), so a crashed selection resumes from its last completed stage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from hf_twophase.errors import SelectionError
from hf_twophase.method.policies import Decision, SelectionPolicy, Shortlist


@dataclass
class SelectionRun:
    policy: SelectionPolicy
    candidates: Sequence[str]
    budget: int
    apply_shortlist: bool = True  # False: the candidates are already the shortlist (replaying reports)
    shortlist_cost: float = field(init=False, default=0.0)
    alive: list[str] = field(init=False)
    history: dict[str, dict[int, float]] = field(init=False)
    decisions: list[Decision] = field(init=False)
    winner: str | None = field(init=False, default=None)
    stage_index: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if not self.candidates:
            raise SelectionError("no candidates to select from")
        if len(set(self.candidates)) != len(self.candidates):
            raise SelectionError("candidate names must be unique")
        self.candidates = list(self.candidates)
        short = self.policy.shortlist(self.candidates) if self.apply_shortlist else Shortlist(list(self.candidates))
        if not short.candidates:
            raise SelectionError(f"policy {self.policy.name} kept no candidate before training")
        self.shortlist_cost = short.cost
        self.decisions = list(short.decisions)
        self.alive = list(short.candidates)
        self.history = {c: {} for c in self.candidates}
        self.ends = self.policy.schedule.ends(self.budget)

    @property
    def done(self) -> bool:
        return self.winner is not None

    def next_step(self) -> int | None:
        """The step every alive candidate must reach before the next decision; None once a winner is known."""
        if self.done:
            return None
        return self.ends[self.stage_index]

    def observe(self, vals: Mapping[str, float]) -> list[Decision]:
        """Record the alive candidates' val at the current stage end and apply the policy.

        A candidate missing from `vals`, or with a NaN score, is dropped (it failed or never arrived).
        """
        step = self.next_step()
        if step is None:
            raise SelectionError("the selection is over: a winner was already chosen")
        new: list[Decision] = []
        for c in list(self.alive):
            v = vals.get(c)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                new.append(Decision(c, step, "dropped", "no score", note="no finite validation score at this stage"))
                self.alive.remove(c)
            else:
                self.history[c][step] = float(v)
        if not self.alive:
            self.decisions.extend(new)
            raise SelectionError(f"every candidate failed by step {step}; nothing left to select")
        final = step >= self.budget
        current = {c: self.history[c][step] for c in self.alive}
        pruned = self.policy.prune(step, list(self.alive), current, final=final)
        gone = {d.candidate for d in pruned}
        if gone >= set(self.alive):
            raise SelectionError(f"policy {self.policy.name} pruned every candidate at step {step}")
        new.extend(pruned)
        self.alive = [c for c in self.alive if c not in gone]
        if len(self.alive) == 1:
            c = self.alive[0]
            reason = "best-at-budget" if final else "last-standing"
            new.append(Decision(c, step, "winner", reason, val=current[c],
                                note="trained to the full budget" if not final else ""))
            self.winner = c
        elif final:
            best = max(self.alive, key=lambda c: (current[c], c))
            for c in self.alive:
                if c != best:
                    new.append(Decision(c, step, "pruned", "lower-at-budget", val=current[c]))
            new.append(Decision(best, step, "winner", "best-at-budget", val=current[best]))
            self.alive = [best]
            self.winner = best
        else:
            self.stage_index += 1
        self.decisions.extend(new)
        return new

    def play(self, score_at: Callable[[str, int], float]) -> dict[str, int]:
        """Drive the selection to its end with `score_at(candidate, step)` as the evaluation, and return the
        step each candidate trained to (the winner: the full budget). How replay and cost estimates train."""
        reached = dict.fromkeys(self.alive, 0)
        while not self.done:
            step = self.next_step()
            for c in self.alive:
                reached[c] = step
            self.observe({c: score_at(c, step) for c in self.alive})
        reached[self.winner] = self.budget
        return reached

    def state_dict(self) -> dict:
        return {
            "candidates": list(self.candidates), "budget": self.budget, "alive": list(self.alive),
            "history": {c: {str(k): v for k, v in h.items()} for c, h in self.history.items()},
            "decisions": [d.to_dict() for d in self.decisions], "winner": self.winner,
            "stage_index": self.stage_index, "policy": self.policy.describe(),
            "shortlist_cost": self.shortlist_cost,
        }

    @classmethod
    def from_state_dict(cls, policy: SelectionPolicy, state: dict) -> SelectionRun:
        """Resume a saved selection without running its shortlist (phase 1) again."""
        run = cls.__new__(cls)
        run.policy = policy
        run.candidates = list(state["candidates"])
        run.budget = int(state["budget"])
        run.ends = policy.schedule.ends(run.budget)
        run.load_state_dict(state)
        return run

    def load_state_dict(self, state: dict) -> None:
        if list(state["candidates"]) != list(self.candidates) or int(state["budget"]) != self.budget:
            raise SelectionError("saved selection state is for other candidates or another budget; cannot resume")
        self.shortlist_cost = float(state.get("shortlist_cost", 0.0))
        self.alive = list(state["alive"])
        self.history = {c: {int(k): float(v) for k, v in h.items()} for c, h in state["history"].items()}
        self.decisions = [Decision(**d) for d in state["decisions"]]
        self.winner = state["winner"]
        self.stage_index = int(state["stage_index"])
