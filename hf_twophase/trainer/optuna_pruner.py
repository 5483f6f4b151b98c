"""`StagePruner`: phase 2's `StageScheduler` as an Optuna pruner, for `Trainer.hyperparameter_search`.

Optuna calls ``pruner.prune(study, trial)`` after every ``trial.report``; the Trainer reports at each evaluation and
runs its trials one after another, so the pruner runs the scheduler's asynchronous rule: at a stage end, the trial is
judged against the trials that reached that stage before it, by the same policy (and the same matrix curves of each
trial's checkpoint) as a live phase 2, and the answer is final. Trials are enrolled as they come.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hf_twophase.errors import SelectionError
from hf_twophase.method.scheduler import STOP, StageScheduler
from hf_twophase.trainer.trials import trial_name

try:
    import optuna
    from optuna.pruners import BasePruner
except ImportError:  # pragma: no cover - the extra is missing; `require_optuna` says so before anything runs
    optuna = None
    BasePruner = object


def require_optuna() -> None:
    if optuna is None:
        raise SelectionError("the Optuna backend needs the optional extra: pip install 'hf-twophase[optuna]'")


class StagePruner(BasePruner):
    """Prunes a trial when ``scheduler`` (asynchronous) stops it.

    Args:
        scheduler: the search's `StageScheduler`, ``mode="async"``.
        greater_is_better: the study's direction (the scheduler's scores are greater-is-better).
        on_trial: called once per new trial with (scheduler name, Optuna's trial number, its parameters), before it is
            judged: where a search keeps which checkpoint each trial trains, for the policy's curves.
    """

    def __init__(self, scheduler: StageScheduler, *, greater_is_better: bool = True,
                 on_trial: Callable[[str, str, dict], None] | None = None):
        require_optuna()
        if scheduler.mode != "async":
            raise SelectionError("Optuna runs the Trainer's trials one after another: the pruner needs a scheduler "
                                 "with mode='async' (a stage barrier would wait for ever)")
        self.scheduler, self.sign, self.on_trial = scheduler, 1.0 if greater_is_better else -1.0, on_trial

    def prune(self, study: Any, trial: Any) -> bool:
        step = trial.last_step
        if step is None:
            return False
        name = trial_name(trial.number)
        if name not in self.scheduler.candidates:
            if self.on_trial is not None:
                self.on_trial(name, str(trial.number), dict(trial.params))
            self.scheduler.enroll(name)
        if step not in self.scheduler.stage_ends:
            return False
        self.scheduler.report(name, step, self.sign * float(trial.intermediate_values[step]))
        return self.scheduler.answer(name, step).action == STOP


def grid_sampler(space: dict[str, list], seed: int | None = None):
    """Every combination of ``space`` once, in an order drawn from ``seed``."""
    require_optuna()
    return optuna.samplers.GridSampler(space, seed=seed)
