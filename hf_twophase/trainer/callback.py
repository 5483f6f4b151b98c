"""`FineSelectionCallback`: fine selection inside an existing `transformers.Trainer`, with one line.

    trainer.add_callback(FineSelectionCallback(scheduler, candidate="bert-base-uncased"))

At every stage end of the policy's schedule (counted in optimizer steps) the callback asks the Trainer
to evaluate, reports the metric to the shared `StageScheduler`, and, when the scheduler stops this
candidate, sets `control.should_training_stop` and says why. The callback only changes `control`: the
Trainer is never forked.

When a coordinator interleaves several Trainers in one process, it hands the callback a `gate`: at a
stage end the candidate gives up the accelerator (its model and optimizer state move to host memory,
its random-number state is put aside) and waits for its next turn, so pausing never changes what it
learns.
"""

from __future__ import annotations

import logging
import math
import random
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from hf_twophase.errors import SelectionError
from hf_twophase.method.scheduler import WAIT, Answer, StageScheduler
from hf_twophase.trainer.distributed import from_rank_zero

logger = logging.getLogger(__name__)


def _move_optimizer_state(optimizer, device: torch.device) -> None:
    if optimizer is None:
        return
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the optimizer
    for state in inner.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.device != device:
                state[key] = value.to(device, non_blocking=True)


def stage_score(metrics: dict | None, metric: str, greater_is_better: bool, step: int,
                nan_loss_at: int | None = None) -> tuple[float, str]:
    """A stage end's score, greater is better, and why the candidate must leave the selection ("" if it need not;
    then the score is NaN). Every engine's reporter reads its Trainer's metrics through here."""
    metrics = metrics or {}
    if metric not in metrics:
        raise SelectionError(f"metric '{metric}' not in the evaluation metrics ({', '.join(sorted(metrics))}); pass "
                             "metric=... or compute_metrics to the Trainer")
    value = float(metrics[metric]) * (1.0 if greater_is_better else -1.0)
    eval_loss = float(metrics.get("eval_loss", 0.0))
    reason = ""
    if nan_loss_at is not None:
        reason = f"training loss became NaN at step {nan_loss_at}"
    elif not math.isfinite(eval_loss):
        # the Trainer logs a NaN training loss as the running mean (logging_nan_inf_filter, on by default), and an
        # argmax metric such as accuracy still looks like a number: the validation loss tells
        reason = f"validation loss is {eval_loss} at step {step}: the weights diverged"
    elif math.isnan(value):
        reason = f"metric {metric} is NaN at step {step}"
    return (float("nan"), reason) if reason else (value, "")


class FineSelectionCallback(TrainerCallback):
    """Report at each stage end; stop this Trainer when the scheduler stops its candidate.

    Args:
        scheduler: the selection's `StageScheduler`, shared by every candidate (in memory for Trainers in one
            process, `hf_twophase.trainer.storage.directory_scheduler` for several processes).
        candidate: this Trainer's candidate, one of the scheduler's names.
        metric / greater_is_better: the evaluation metric that decides.
        gate: set by `SelectionCoordinator` only: candidates take turns, and its loop takes the decisions.
        save_stages: checkpoint at every stage end (what a resume needs).
        timeout: seconds to wait for the other candidates' reports of a stage; then the stage is decided without
            them (they are dropped).
    """

    def __init__(self, scheduler: StageScheduler, candidate: str, *, metric: str = "eval_accuracy",
                 greater_is_better: bool = True, gate: Any = None, save_stages: bool = False,
                 timeout: float = 3600.0):
        self.scheduler = scheduler
        self.candidate = candidate
        self.metric = metric
        self.greater_is_better = greater_is_better
        self.gate = gate
        self.timeout = timeout
        self.pending_step: int | None = None
        self.save_stages = save_stages
        self.verdicts: list[tuple[int, Answer]] = []
        self.curve: dict[int, float] = {}
        self._rng: dict | None = None
        self._device: torch.device | None = None
        self._holding = False
        self._nan_loss_at: int | None = None
        self._pre_eval_rng: dict | None = None
        self._dropped_because: str | None = None

    # ---------------------------------------------------------------- gate (coordinator only)
    def mark_holding(self) -> None:
        """The coordinator built this Trainer during the candidate's turn: it already holds the gate."""
        self._holding = True

    def _acquire(self, model, optimizer, *, restore: bool = True) -> None:
        if self.gate is None or self._holding:
            return
        self.gate.acquire(self.candidate)
        self._holding = True
        if not restore:  # only to end training inside a turn: its last collectives must not overlap another's
            return
        if self._rng is not None:
            random.setstate(self._rng["python"])
            np.random.set_state(self._rng["numpy"])
            torch.set_rng_state(self._rng["torch"])
            if self._rng.get("cuda") is not None:
                torch.cuda.set_rng_state_all(self._rng["cuda"])
        if self._device is not None and self._device.type != "cpu":
            model.to(self._device)
            _move_optimizer_state(optimizer, self._device)

    @staticmethod
    def _capture_rng() -> dict:
        return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}

    def _release(self, model, optimizer) -> None:
        if self.gate is None or not self._holding:
            return
        # the state from before this stage's evaluation: creating the eval DataLoader draws from the global
        # generator, and a paused candidate must resume exactly where uninterrupted training would be
        self._rng = self._pre_eval_rng or self._capture_rng()
        self._pre_eval_rng = None
        if model is not None:
            self._device = next(model.parameters()).device
            if self._device.type != "cpu":  # paused: only the running candidate sits on the accelerator
                model.to("cpu")  # its blocks stay in torch's cache for the next candidate: no empty_cache here
                _move_optimizer_state(optimizer, torch.device("cpu"))
        self._holding = False
        self.gate.release(self.candidate)

    # ---------------------------------------------------------------- Trainer events
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        budget = state.max_steps
        if budget != self.scheduler.budget:
            raise SelectionError(f"candidate {self.candidate}: the Trainer trains {budget} steps but the selection "
                                 f"budget is {self.scheduler.budget}; set max_steps={self.scheduler.budget}")
        self._acquire(model, optimizer)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.scheduler.stage_ends and state.global_step not in self.curve:
            if self.gate is not None:
                self._pre_eval_rng = self._capture_rng()
            control.should_evaluate = True
            control.should_save = self.save_stages
        return control

    def on_evaluate(self, args, state, control, metrics=None, model=None, optimizer=None, **kwargs):
        step = state.global_step
        if step not in self.scheduler.stage_ends or step in self.curve:
            return control
        value, reason = stage_score(metrics, self.metric, self.greater_is_better, step, self._nan_loss_at)
        if reason:
            self._dropped_because = reason
            self.scheduler.drop(self.candidate, reason)
        self.curve[step] = value
        # dropped first, so no decision ever weighs a NaN; the value is still recorded: a resumed selection counts
        # the steps a dropped candidate trained from the stages it reported
        self.scheduler.report(self.candidate, step, value)
        self.pending_step = step
        self._release(model, optimizer)
        verdict = self._decide(step)
        self.pending_step = None
        self.verdicts.append((step, verdict))
        self._acquire(model, optimizer, restore=verdict.go_on)
        if not verdict.go_on:
            control.should_training_stop = True
            control.should_save = False
            logger.info("fine selection: %s stops at step %d (%s)", self.candidate, step, verdict.reason)
        return control

    def await_verdict(self, step: int) -> Answer:
        """Before training resumes from a checkpoint written at the end of `step`: that stage was reported before
        the crash, but maybe not decided, so wait for its verdict as the uninterrupted run did."""
        self.pending_step = step
        self._release(None, None)
        verdict = self._decide(step)
        self.pending_step = None
        self.verdicts.append((step, verdict))
        if verdict.go_on:
            self._acquire(None, None, restore=False)
        return verdict

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)) and self._nan_loss_at is None:
            self._nan_loss_at = state.global_step  # dropped at the next stage end, with this reason

    def on_train_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        self._release(None, None)

    def _decide(self, step: int) -> Answer:
        """The scheduler's answer for this stage end. Under a coordinator its loop decides while every candidate is
        paused, and this candidate waits for its turn; otherwise rank 0 waits for the other candidates' reports and
        decides, and every rank acts on its answer (transformers #18609)."""
        if self.gate is not None:
            self.gate.block_until(self.candidate, lambda: self.scheduler.answer(self.candidate, step).action != WAIT)
            return self.scheduler.answer(self.candidate, step)
        return from_rank_zero(lambda: self.scheduler.await_answer(self.candidate, step, timeout=self.timeout))
