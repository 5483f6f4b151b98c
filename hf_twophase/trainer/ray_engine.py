"""Phase 2 on Ray: every candidate a Ray Tune trial with its own resources, side by side; the one `StageScheduler`
decides.

Why Ray Tune: it already schedules trials over a cluster's CPUs and GPUs, restarts a trial whose worker died, and
lets a `TrialScheduler` answer each reported result with CONTINUE, PAUSE or STOP. `StageTrialScheduler` is that
scheduler, and it only translates: a candidate's stage report goes to the selection's `StageScheduler` (kept in the
output folder, so a killed driver resumes from it; Ray's `Tuner.restore` does not restore a scheduler's state,
ray-project/ray#30838), which answers continue (CONTINUE), wait for the stage's decision (PAUSE: the trial gives its
resources back) or stop (STOP).

A trial checkpoints its candidate at every stage end into the output folder, as the in-process coordinator does (the
Trainer's own checkpoint: weights, optimizer, schedule, random-number state), and starts from the newest complete one
whenever Ray (re)starts it: after a pause, after its worker died, after the driver was restarted. So the output
folder must be on storage every worker sees (one machine, or a shared file system).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from hf_twophase.errors import SelectionError
from hf_twophase.method.scheduler import CONTINUE, STOP, WAIT, StageScheduler
from hf_twophase.trainer.callback import stage_score
from hf_twophase.trainer.storage import DirectoryStorage
from hf_twophase.trainer.trials import STEP_KEY, trial_name

try:
    from ray import tune
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler
except ImportError:  # pragma: no cover - the extra is missing; `require_ray` says so before anything runs
    tune = Trial = None
    TrialScheduler = object

logger = logging.getLogger(__name__)

CANDIDATE, STEP, SCORE, DROPPED = "hf_candidate", "hf_step", "hf_score", "hf_dropped"  # keys of a trial's reports


def require_ray() -> None:
    """One clear error when the optional extra is missing."""
    if tune is None:
        raise SelectionError("backend 'ray' needs the optional extra: pip install 'hf-twophase[ray]'")


class StageTrialScheduler(TrialScheduler):
    """A Ray Tune `TrialScheduler` whose every decision is the `StageScheduler`'s."""

    _supports_buffered_results = False  # a trial must not run past a stage end before its answer

    def __init__(self, scheduler: StageScheduler):
        super().__init__()
        self.scheduler = scheduler
        self.last_step: dict[str, int] = {}  # the stage end each candidate reported last
        self.seconds: dict[str, float] = {}

    # the scheduler decides by its own metric: nothing to configure from the Tuner
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True

    def on_trial_add(self, tune_controller, trial) -> None:
        pass

    def _name(self, trial) -> str:
        """The scheduler's name of a trial."""
        return trial.config["candidate"]

    def _reading(self, trial, result: dict) -> tuple[int, float, str] | None:
        """(stage end, score, why the candidate leaves or "") of a report; None: not a report to judge."""
        return int(result[STEP]), float(result[SCORE]), result.get(DROPPED) or ""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        name, reading = self._name(trial), self._reading(trial, result)
        if reading is None or reading[0] not in self.scheduler.stage_ends:
            return TrialScheduler.CONTINUE
        step, score, dropped = reading
        self.last_step[name] = step
        self.seconds[name] = float(result.get("time_total_s", 0.0))
        if dropped:  # first, so that no decision ever weighs its NaN
            self.scheduler.drop(name, dropped)
        self.scheduler.report(name, step, score)
        self._decide(tune_controller)
        action = self.scheduler.answer(name, step).action
        return {CONTINUE: TrialScheduler.CONTINUE, STOP: TrialScheduler.STOP, WAIT: TrialScheduler.PAUSE}[action]

    def on_trial_error(self, tune_controller, trial) -> None:
        """A trial that failed for good leaves the selection; nobody waits for it. Ray also calls this for a failure it
        recovers from (`max_failures`): it has then stopped the trial's actor (status ERROR) and requeues the trial,
        which starts again from its newest stage checkpoint."""
        if trial.status == Trial.ERROR and trial.should_recover():
            return
        name = self._name(trial)
        self.scheduler.drop(name, f"its Ray trial failed: {trial.error_file or 'see the Ray logs'}")
        self._decide(tune_controller)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._decide(tune_controller)

    def on_trial_remove(self, tune_controller, trial) -> None:
        pass

    def _decide(self, tune_controller) -> None:
        """Take every decision that can be taken, then stop the paused trials it stopped."""
        self.scheduler.decide()
        for trial in tune_controller.get_trials():
            name = self._name(trial)
            if trial.status == Trial.PAUSED and name in self.last_step and \
                    self.scheduler.answer(name, self.last_step[name]).action == STOP:
                tune_controller.stop_trial(trial)

    def choose_trial_to_run(self, tune_controller):
        """New trials first, in the candidates' order; then a paused one whose stage was decided in its favour."""
        trials = tune_controller.get_trials()
        for trial in trials:
            if trial.status == Trial.PENDING:
                return trial
        for trial in trials:
            name = self._name(trial)
            if trial.status == Trial.PAUSED and (
                    name not in self.last_step or self.scheduler.answer(name, self.last_step[name]).go_on):
                return trial
        return None

    def debug_string(self) -> str:
        return f"stage scheduler: {len(self.scheduler.alive)} alive, stages decided {self.scheduler.decided}"


class SearchTrialScheduler(StageTrialScheduler):
    """The same scheduler for `Trainer.hyperparameter_search` with Ray Tune: trials are named in the order Ray adds
    them, and a report is the Trainer's evaluation metrics at a stage end (with the step the search's callback
    adds, and the objective)."""

    def __init__(self, search):
        super().__init__(search.scheduler)
        self.search = search
        self._names: dict[str, str] = {}  # Ray's trial id -> the scheduler's name

    def on_trial_add(self, tune_controller, trial) -> None:
        if trial.trial_id not in self._names:
            name = trial_name(len(self._names))
            if name not in self.scheduler.candidates:
                raise SelectionError(f"Ray added more trials than the {len(self.scheduler.candidates)} the search "
                                     "planned: give the grid as search_kwargs(space=...), not to ray.tune.run")
            self._names[trial.trial_id] = name
            self.search.enroll(name, trial.trial_id, trial.config)

    def _name(self, trial) -> str:
        return self._names[trial.trial_id]

    def _reading(self, trial, result: dict) -> tuple[int, float, str] | None:
        if STEP_KEY not in result or "objective" not in result:
            return None
        score = self.search.score(result["objective"])
        return int(result[STEP_KEY]), score, "" if math.isfinite(score) else "its objective is not a number"


class _StageReport(TrainerCallback):
    """Inside a trial: evaluate at every stage end and report to the driver, which answers by letting the trial go
    on (the report returns), pausing it or stopping it (Ray ends this process)."""

    def __init__(self, name: str, stage_ends: list[int], metric: str, greater_is_better: bool, writer):
        self.name, self.stage_ends, self.metric, self.greater_is_better = name, stage_ends, metric, greater_is_better
        self.writer = writer
        self.curve: dict[int, float] = {}
        self.nan_loss_at: int | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)) and self.nan_loss_at is None:
            self.nan_loss_at = state.global_step  # the candidate leaves at the next stage end, with this reason

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.stage_ends and state.global_step not in self.curve:
            control.should_evaluate = True
            control.should_save = True  # a paused trial starts again from this stage's checkpoint
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        step = state.global_step
        if step not in self.stage_ends or step in self.curve:
            return control
        value, dropped = stage_score(metrics, self.metric, self.greater_is_better, step, self.nan_loss_at)
        self.curve[step] = value
        self.writer.wait(self.name)  # the stage checkpoint is whole before anyone acts on this report
        tune.report({CANDIDATE: self.name, STEP: step, SCORE: value, DROPPED: dropped})
        return control


def run_trial(trial_config: dict, coordinator) -> None:
    """One candidate's trial, in a Ray worker: from its newest complete stage checkpoint, to its stop or the
    budget. ``coordinator`` is a copy of the driver's `SelectionCoordinator` (its data, template and settings)."""
    from hf_twophase.trainer.candidates import CandidateError
    from hf_twophase.trainer.checkpoints import CheckpointWriter, checkpoint_step

    name = trial_config["candidate"]
    slot = coordinator.new_slot(name)
    coordinator._main, coordinator._writer = True, CheckpointWriter()
    reports = DirectoryStorage(coordinator.output_dir / "selection_state").reports()
    slot.callback = _StageReport(name, coordinator.stage_ends, coordinator.metric, coordinator.greater_is_better,
                                 coordinator._writer)
    try:
        coordinator._build(slot)  # seeded: the new head starts as it would in the in-process coordinator
    except (CandidateError, SelectionError) as exc:  # it would fail the same way on every restart: report it once
        tune.report({CANDIDATE: name, STEP: coordinator.stage_ends[0], SCORE: math.nan, DROPPED: str(exc)})
        return
    checkpoint = coordinator._latest_checkpoint(slot)
    done = checkpoint_step(checkpoint) if checkpoint is not None else 0
    if checkpoint is not None and done in coordinator.stage_ends and name not in reports.get(done, {}):
        checkpoint, done = None, 0  # written just before its report was lost: train the stage again
    try:
        if checkpoint is not None and done in coordinator.stage_ends:
            slot.callback.curve.update({s: r[name] for s, r in reports.items() if name in r and s <= done})
            # (re)started at a stage end it had reported: ask again, and wait, as an uninterrupted trial would
            tune.report({CANDIDATE: name, STEP: done, SCORE: reports[done][name], DROPPED: ""})
        if done < coordinator.budget:
            slot.trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    finally:
        coordinator._writer.wait_all()
        coordinator._writer.close()


def run_on_ray(coordinator, scheduler: StageScheduler) -> tuple[dict[str, dict], int]:
    """Every candidate still in the selection as a Ray Tune trial, until the scheduler has its winner. Returns, per
    candidate, what the driver saw of its trial (seconds, whether it failed), and how many trials the cluster can
    run side by side."""
    require_ray()
    import ray
    from ray.tune import FailureConfig, RunConfig, TuneConfig, Tuner

    config = coordinator.config
    if not ray.is_initialized():
        init: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        ray.init(address=config.ray_address, **init)
    names = [c.name for c in coordinator.candidates if c.name in scheduler.alive]
    trial_scheduler = StageTrialScheduler(scheduler)
    worker_copy = copy.copy(coordinator)
    worker_copy.on_report, worker_copy._bar = None, None
    worker_copy.config = dataclasses.replace(config, progress=False)
    resources = {"cpu": config.cpus_per_candidate, "gpu": config.gpus_per_candidate}
    trainable = tune.with_resources(tune.with_parameters(run_trial, coordinator=worker_copy), resources)
    start = time.perf_counter()
    tuner = Tuner(trainable, param_space={"candidate": tune.grid_search(names)},
                  tune_config=TuneConfig(scheduler=trial_scheduler, reuse_actors=False),
                  run_config=RunConfig(name=f"ray-{int(time.time())}",
                                       storage_path=str((Path(coordinator.output_dir) / "ray").resolve()),
                                       failure_config=FailureConfig(max_failures=config.max_failures), verbose=0))
    grid = tuner.fit()
    logger.info("Ray Tune ran %d trial(s) in %.1f s", len(grid), time.perf_counter() - start)
    failed = {r.config["candidate"]: str(r.error) for r in grid if r.error is not None}
    cluster = ray.cluster_resources()
    side_by_side = int(cluster.get("CPU", 1) // config.cpus_per_candidate)
    if config.gpus_per_candidate:
        side_by_side = min(side_by_side, int(cluster.get("GPU", 0) // config.gpus_per_candidate))
    workers = max(1, min(len(names), side_by_side))
    return {n: {"seconds": trial_scheduler.seconds.get(n, 0.0), "error": failed.get(n)} for n in names}, workers
