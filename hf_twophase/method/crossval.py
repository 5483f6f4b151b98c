"""The evaluation protocol shared by the recall and replay benchmarks: k-fold cross-validation over datasets.

Why: a constant tuned on the same datasets it is then measured on looks better than it is (a phase-2 gain tuned on a
whole file shrank to successive halving's level on unseen data). Here every choice is made on the training folds
only, and the figure reported for a dataset comes from the fold that held it back. The folds are fixed by a seed and
returned, so a benchmark writes them next to its figures. Pure: numpy only.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from hf_twophase.errors import SelectionError

Setting = TypeVar("Setting", bound=Hashable)


def dataset_folds(datasets: Sequence[str], k: int, seed: int = 0) -> list[list[str]]:
    """Split ``datasets`` into ``k`` folds of near-equal size, by a seeded permutation of the sorted names."""
    names = sorted(set(datasets))
    if k < 2 or k > len(names):
        raise SelectionError(f"k-fold needs 2 <= k <= {len(names)} datasets, got k={k}")
    order = np.random.default_rng(seed).permutation(len(names))
    return [sorted(names[i] for i in order[f::k]) for f in range(k)]


@dataclass
class FoldResult(Generic[Setting]):
    held_out: list[str]
    chosen: Setting
    training_score: tuple
    outcomes: dict[str, dict] = field(default_factory=dict)  # held-out dataset -> the chosen setting's outcome


def cross_validate(
    folds: Sequence[Sequence[str]],
    settings: Sequence[Setting],
    evaluate: Callable[[Setting, str], dict],
    score: Callable[[list[dict]], tuple],
) -> list[FoldResult[Setting]]:
    """For each fold: pick the setting whose outcomes on the other folds' datasets score highest (``score`` maps a
    list of outcomes to a sortable tuple, higher is better; ties go to the earlier setting), then evaluate it on the
    held-out fold. ``evaluate(setting, dataset)`` is called at most once per pair."""
    if not settings:
        raise SelectionError("cross-validation needs at least one setting to choose from")
    cache: dict[tuple[int, str], dict] = {}

    def outcome(index: int, dataset: str) -> dict:
        if (index, dataset) not in cache:
            cache[(index, dataset)] = evaluate(settings[index], dataset)
        return cache[(index, dataset)]

    results = []
    for f, held_out in enumerate(folds):
        training = [d for g, fold in enumerate(folds) if g != f for d in fold]
        ranked = [(score([outcome(i, d) for d in training]), -i) for i in range(len(settings))]
        best_score, neg_index = max(ranked)
        chosen = -neg_index
        results.append(FoldResult(held_out=list(held_out), chosen=settings[chosen], training_score=best_score,
                                  outcomes={d: outcome(chosen, d) for d in held_out}))
    return results


def versus_halving(outcomes: Sequence[Mapping[str, Mapping[int, tuple[float, float]]]], stages: Sequence[int]
                   ) -> tuple[int, float]:
    """The rule phase 2's settings are chosen by, as a ``score`` for `cross_validate`: each outcome holds, per stage
    length, the (speedup, regret) of the ``"setting"`` and of ``"halving"`` (successive halving) on one dataset.
    Higher is better: first the number of stage lengths at which the setting is no worse than halving on both counts
    (median speedup, mean regret), then the summed gain (regret points saved + log speedup ratio)."""
    no_worse, gain = 0, 0.0
    for stage in stages:
        speed = statistics.median(o["setting"][stage][0] for o in outcomes)
        regret = statistics.mean(o["setting"][stage][1] for o in outcomes)
        base_speed = statistics.median(o["halving"][stage][0] for o in outcomes)
        base_regret = statistics.mean(o["halving"][stage][1] for o in outcomes)
        no_worse += regret <= base_regret + 1e-9 and speed >= base_speed - 1e-9
        gain += (base_regret - regret) + math.log(speed / base_speed)
    return no_worse, gain
