"""Pruning policies as small pure objects: who keeps training after a stage's evaluation.

One interface serves the replay simulator and live training (the Trainer callback and the
coordinator), so a benchmark measures exactly the code users run. A policy sees only what a live
run would see: the candidates still alive, their validation scores so far and, for fine selection,
each candidate's own curves on the benchmarks (never the target's future).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from hf_twophase.method.trends import (
    BenchmarkCurves,
    PaperTrendPredictor,
    Prediction,
    TrendPredictor,
)


@dataclass
class Decision:
    """Why a candidate stopped (or won): one line of the selection report."""

    candidate: str
    step: int
    action: str  # "pruned" | "winner" | "dropped" | "not-recalled"
    reason: str  # "halved" | "trend-pruned" | "winner" | "best-at-budget" | "last-standing" | free text
    val: float | None = None
    predicted: float | None = None
    competitor: str | None = None
    competitor_predicted: float | None = None
    note: str = ""

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None and v != ""}


@dataclass
class StageSchedule:
    """When candidates are evaluated and pruned: every `stage` steps, each stage `growth` times longer."""

    stage: int = field(default=1, metadata={"help": "Steps (epochs or eval rounds) in the first stage."})
    growth: float = field(
        default=1.0, metadata={"help": "Each stage is this many times longer than the one before (1 = fixed)."}
    )

    def __post_init__(self) -> None:
        if self.stage < 1:
            raise ValueError(f"stage must be >= 1 step, got {self.stage}")
        if self.growth < 1.0:
            raise ValueError(f"growth must be >= 1, got {self.growth}")

    def ends(self, budget: int) -> list[int]:
        """Steps at which a stage ends and a decision is taken; the last one is the budget."""
        if budget < 1:
            raise ValueError(f"budget must be >= 1 step, got {budget}")
        ends, length, step = [], float(self.stage), 0
        while step < budget:
            step = min(budget, step + max(1, int(round(length))))
            ends.append(step)
            length *= self.growth
        return ends


@dataclass
class Shortlist:
    """The candidates a policy lets into stage training, what choosing them cost, and who was left out."""

    candidates: list[str]
    cost: float = 0.0
    decisions: list[Decision] = field(default_factory=list)


@dataclass(frozen=True)
class Progress:
    """What a policy that models whole curves sees beyond the stage's scores: the budget, and every (step, score)
    each candidate has reported so far, in step order."""

    budget: int
    points: Mapping[str, Sequence[tuple[int, float]]]


class SelectionPolicy:
    """Base policy: never prunes; subclasses decide which alive candidates stop after a stage."""

    name = "policy"
    note = ""  # why this policy runs instead of the one asked for, for the report
    uses_progress = False  # True: `prune` takes a ``progress=`` keyword (a `Progress`)

    def __init__(self, schedule: StageSchedule | None = None):
        self.schedule = schedule or StageSchedule()

    def shortlist(self, candidates: Sequence[str]) -> Shortlist:
        """Before any training: which candidates enter (every one, unless a recall phase cuts them)."""
        return Shortlist(list(candidates))

    def prune(self, step: int, alive: Sequence[str], vals: Mapping[str, float], final: bool = False) -> list[Decision]:
        """Return a `pruned` decision for every candidate in `alive` that must stop after `step`.

        `final` says the step is the budget: no policy needs to prune then, since the best val wins.
        """
        return []

    def describe(self) -> dict:
        out = {"policy": self.name, "stage": self.schedule.stage, "growth": self.schedule.growth}
        return {**out, "note": self.note} if self.note else out


def _by_val(alive: Sequence[str], vals: Mapping[str, float]) -> list[str]:
    """Ascending val, ties broken by name so every rank and every replay agrees."""
    return sorted(alive, key=lambda c: (_val(vals, c), c), reverse=False)


def _val(vals: Mapping[str, float], c: str) -> float:
    v = vals.get(c)
    return -math.inf if v is None or math.isnan(v) else float(v)


class BruteForce(SelectionPolicy):
    """Train everyone to the full budget, keep the best: the cost every other policy is measured against."""

    name = "brute-force"

    def __init__(self) -> None:
        super().__init__(StageSchedule(stage=1 << 30))


class SuccessiveHalving(SelectionPolicy):
    """After each stage keep the better floor(n / 2) by validation score (at least one)."""

    name = "successive-halving"

    def prune(self, step, alive, vals, final=False):
        if final:
            return []
        keep = max(1, len(alive) // 2)
        order = _by_val(alive, vals)
        return [
            Decision(c, step, "pruned", "halved", val=_val(vals, c), note=f"not in the best {keep} of {len(alive)}")
            for c in order[: len(alive) - keep]
        ]


class FineSelection(SelectionPolicy):
    """The paper's Algorithm 1: trend pruning, then halving down to at most floor(n / 2).

    From the worst validation score upward, a candidate stops when some candidate with a better val
    is predicted to finish higher by more than `threshold`. Then, if more than half remain, the worst
    by val go until half remain. A candidate with no prediction (too few benchmark curves) is judged
    by val alone.
    """

    name = "fine-selection"

    def __init__(
        self,
        curves: Mapping[str, BenchmarkCurves] | Callable[[str], BenchmarkCurves | None],
        *,
        predictor: TrendPredictor | None = None,
        threshold: float = 0.0,
        schedule: StageSchedule | None = None,
        bound: str = "point",
        curve_step: Callable[[int], int] | None = None,
        runner_up_guard: TrendPredictor | None = None,
    ):
        super().__init__(schedule)
        self.runner_up_guard = runner_up_guard
        self.curve_step = curve_step  # live step -> index into the benchmark curves (e.g. the stage number)
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        if bound not in ("point", "interval"):
            raise ValueError(f"bound must be 'point' or 'interval', got {bound!r}")
        self.bound = bound
        self._curves = curves
        self.predictor = predictor or PaperTrendPredictor()
        self.threshold = threshold
        self._cache: dict[tuple[int, str, int, float], Prediction | None] = {}  # keyed by id(predictor) first

    def describe(self) -> dict:
        out = {**super().describe(), "threshold": self.threshold, "predictor": self.predictor.name,
               "bound": self.bound}
        if self.runner_up_guard is not None:
            out["runner_up_guard"] = self.runner_up_guard.name
        return out

    def curves_of(self, candidate: str) -> BenchmarkCurves | None:
        if callable(self._curves):
            return self._curves(candidate)
        return self._curves.get(candidate)

    def predict(self, candidate: str, step: int, val: float, predictor: TrendPredictor | None = None
                ) -> Prediction | None:
        predictor = predictor or self.predictor
        key = (id(predictor), candidate, step, val)
        if key not in self._cache:
            curves = self.curves_of(candidate)
            at = self.curve_step(step) if self.curve_step else step
            self._cache[key] = None if curves is None else predictor.predict(curves, at, val)
        return self._cache[key]

    def _runner_up_holds(self, step: int, ranked: Sequence[str], vals: Mapping[str, float]) -> str | None:
        """Why the best of the candidates about to go should stay, or None: the cut to a single candidate is
        the one decision nothing can undo, so it waits while the runner-up's trend says it finishes higher."""
        if self.runner_up_guard is None or len(ranked) < 2:
            return None
        leader, second = ranked[-1], ranked[-2]
        lead = self.predict(leader, step, _val(vals, leader), self.runner_up_guard)
        chase = self.predict(second, step, _val(vals, second), self.runner_up_guard)
        if lead is None or chase is None or chase.value <= lead.value:
            return None
        return (f"{second} kept as runner-up: its {self.runner_up_guard.name} trend predicts {chase.value:.4f}, "
                f"above {leader}'s {lead.value:.4f}, so the cut to one candidate waits")

    def prune(self, step, alive, vals, final=False):
        if final:
            return []
        order = _by_val(alive, vals)
        preds = {c: self.predict(c, step, _val(vals, c)) for c in order}
        removed: list[Decision] = []
        gone: set[str] = set()
        for i, c in enumerate(order):
            mine = preds[c]
            if mine is None:
                continue
            interval = self.bound == "interval"
            rivals = [(preds[d].lower if interval else preds[d].value, d) for d in order[i + 1:]
                      if preds[d] is not None and _val(vals, d) > _val(vals, c)]
            if not rivals:
                continue
            best_pred, rival = max(rivals)
            if best_pred > (mine.upper if interval else mine.value) + self.threshold:
                removed.append(Decision(c, step, "pruned", "trend-pruned", val=_val(vals, c), predicted=mine.value,
                                        competitor=rival, competitor_predicted=best_pred,
                                        note=f"{mine.detail}; {rival} predicted higher by more than {self.threshold}"))
                gone.add(c)
        left = [c for c in order if c not in gone]
        keep = max(1, len(alive) // 2)
        guarded = None
        if keep == 1 and len(left) > 1:
            guarded = self._runner_up_holds(step, left, vals)  # judged on the val order: halving keeps those two
            keep = 2 if guarded else 1
        if len(left) > keep:
            for c in left[: len(left) - keep]:
                p = preds[c]
                removed.append(Decision(c, step, "pruned", "halved", val=_val(vals, c),
                                        predicted=None if p is None else p.value,
                                        note=f"not in the best {keep} of {len(alive)} by val"
                                        + ("; no prediction (too few benchmark curves)" if p is None else "")
                                        + (f"; {guarded}" if guarded else "")))
        return removed


class CalibratedHalving(SelectionPolicy):
    """Successive halving that cuts deeper only where the benchmarks show it is safe.

    After each stage the better half by validation score stays, as in successive halving. Once ``min_fraction`` of
    training has passed, the cut may go further: to the smallest share of the alive candidates that, on every
    benchmark where at least three of them were trained (and there must be at least three such benchmarks), held that
    benchmark's eventual best model at the same point of training (``coverage`` 1.0: every benchmark). It never keeps
    more than halving would, so it never costs more; it cuts deeper only when the recorded curves say the early
    ranking was already right. Why not earlier: on real curves the eventual winner often ranks far down in the first
    tenth of training, so no early cut is safe.
    """

    name = "fine-selection"
    min_benchmarks = 3

    def __init__(self, curves: Mapping[str, BenchmarkCurves] | Callable[[str], BenchmarkCurves | None], *,
                 schedule: StageSchedule | None = None, coverage: float = 1.0, min_fraction: float = 0.06,
                 curve_step: Callable[[int], int] | None = None):
        super().__init__(schedule)
        if not 0.0 < coverage <= 1.0:
            raise ValueError(f"coverage must be in (0, 1], got {coverage}")
        self._curves = curves
        self.coverage, self.min_fraction, self.curve_step = coverage, min_fraction, curve_step

    def describe(self) -> dict:
        return {**super().describe(), "variant": "calibrated", "coverage": self.coverage,
                "min_fraction": self.min_fraction}

    def curves_of(self, candidate: str) -> BenchmarkCurves | None:
        return self._curves(candidate) if callable(self._curves) else self._curves.get(candidate)

    def safe_share(self, step: int, alive: Sequence[str]) -> float | None:
        """The share of the alive candidates that held every benchmark's eventual best at this point of training,
        or None when the benchmarks cannot tell (too early, or too few shared curves)."""
        at = self.curve_step(step) if self.curve_step else step
        points: dict[str, list[tuple[float, float]]] = {}
        length = 0
        for c in alive:
            curves = self.curves_of(c)
            if curves is None or at > curves.val.shape[1]:
                continue
            length = max(length, curves.val.shape[1])
            for b, val, final in zip(curves.benchmarks, curves.val[:, at - 1], curves.final, strict=True):
                if not (math.isnan(val) or math.isnan(final)):
                    points.setdefault(b, []).append((float(val), float(final)))
        if not length or at < self.min_fraction * length:
            return None
        shares = []
        for rows in points.values():
            if len(rows) < 3:
                continue
            vals = np.array([v for v, _ in rows])
            best = int(np.argmax([f for _, f in rows]))
            shares.append((1 + int((vals > vals[best]).sum())) / len(rows))
        if len(shares) < self.min_benchmarks:  # agreement on one or two benchmarks is no evidence
            return None
        return float(np.quantile(shares, self.coverage, method="higher"))

    def prune(self, step, alive, vals, final=False):
        if final:
            return []
        keep = max(1, len(alive) // 2)
        share = self.safe_share(step, alive)
        deeper = share is not None and math.ceil(share * len(alive) - 1e-9) < keep
        if deeper:
            keep = max(1, math.ceil(share * len(alive) - 1e-9))
        order = _by_val(alive, vals)
        note = (f"not in the best {keep} of {len(alive)} by val"
                + (f"; on every benchmark the eventual best was within the top {share:.0%} at this point"
                   if deeper else ""))
        return [Decision(c, step, "pruned", "halved", val=_val(vals, c), note=note)
                for c in order[: len(alive) - keep]]


class TwoPhase(SelectionPolicy):
    """The whole method: coarse recall cuts the candidates before training, then `inner` prunes in stages.

    `recall` maps the candidate list to (recalled models, proxy cost spent); it is phase 1 over the
    performance matrix (`Phase1.recall`), kept behind a function so this module stays free of I/O.
    """

    name = "two-phase"

    def __init__(self, recall: Callable[[list[str]], tuple[list[str], float]], inner: SelectionPolicy):
        super().__init__(inner.schedule)
        self.recall = recall
        self.inner = inner

    def shortlist(self, candidates):
        recalled, cost = self.recall(list(candidates))
        kept = set(recalled)
        left_out = [Decision(c, 0, "not-recalled", "coarse recall", note="outside the top K of phase 1")
                    for c in candidates if c not in kept]
        return Shortlist([c for c in candidates if c in kept], cost=cost, decisions=left_out)

    @property
    def uses_progress(self) -> bool:
        return self.inner.uses_progress

    def prune(self, step, alive, vals, final=False, **progress):
        return self.inner.prune(step, alive, vals, final=final, **progress)

    def describe(self) -> dict:
        return {**self.inner.describe(), "policy": self.name}
