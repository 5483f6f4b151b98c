"""`SelectionCoordinator`: train candidates in stages, prune with the policy, hand back the trained winner.

One `Trainer` per candidate, each with its own tokenizer or image processor, each laid out over the
full budget (`max_steps`), so its learning-rate schedule is the one a full run would have. The
candidates take turns: the coordinator gives one the accelerator, it trains to the next stage end,
evaluates, reports to the shared selection state and gives the accelerator back (model and optimizer
state to host memory, random-number state put aside), and waits. When every live candidate has
reported the stage, the policy decides; pruned candidates stop and free their memory and checkpoints
at once; the last one standing trains to the end.

Every stage is written to `output_dir` (reports, frozen decisions and, with `save_stages`, one
checkpoint per live candidate), so `resume=True` continues a crashed selection from its last completed
stage without re-training it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import gc
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from hf_twophase.atomic import read_json, write_json_atomic
from hf_twophase.errors import SelectionError
from hf_twophase.inputs.columns import Columns, encode_string_labels, split_columns
from hf_twophase.method.policies import SelectionPolicy, StageSchedule, SuccessiveHalving
from hf_twophase.method.registry import default_stage
from hf_twophase.method.scheduler import WAIT, StageScheduler
from hf_twophase.paths import UnsafePathError, folder_name, real_folder, remove_tree
from hf_twophase.trainer.callback import FineSelectionCallback
from hf_twophase.trainer.candidates import (
    Candidate,
    CandidateError,
    Prepared,
    accuracy,
    head_mismatch,
    prepare,
    save_trained,
)
from hf_twophase.trainer.checkpoints import (
    BackgroundCheckpointTrainer,
    CheckpointWriter,
    checkpoint_step,
    latest_complete,
    share_identical_weights,
    unshare_weights,
)
from hf_twophase.trainer.config import SelectionConfig
from hf_twophase.trainer.distributed import from_rank_zero, has_accelerator, process_state, several_ranks
from hf_twophase.trainer.report import CandidateReport, SelectionReport
from hf_twophase.trainer.storage import DirectoryStorage

logger = logging.getLogger(__name__)


class TurnGate:
    """Hands the accelerator to one candidate at a time, in an order the coordinator's loop chooses.

    Each candidate's Trainer runs in a greenlet on the coordinator's own OS thread; pausing is a switch back to the
    loop. Why not threads: PyTorch runs small CPU ops several times slower outside the thread that started its
    OpenMP pool (measured in docs/benchmarks.md), and one OS thread also keeps every collective of
    `torch.distributed` on the thread that created the process group.
    """

    def __init__(self) -> None:
        import greenlet

        self._greenlet = greenlet
        self._loop = greenlet.getcurrent()
        self._turn: str | None = None
        self._candidates: dict[str, Any] = {}
        self._waiting_for: dict[str, Callable[[], bool]] = {}  # what each blocked candidate waits for
        self.status: dict[str, str] = {}

    def spawn(self, candidate: str, run: Callable[[], None]) -> None:
        self._candidates[candidate] = self._greenlet.greenlet(run, parent=self._loop)
        self.status[candidate] = "new"

    def block_until(self, candidate: str, ready: Callable[[], bool]) -> None:
        """Called by a candidate: hand control back to the loop until `ready()` holds."""
        self._waiting_for[candidate] = ready
        try:
            while not ready():
                self._loop.switch()
        finally:
            self._waiting_for.pop(candidate, None)

    def acquire(self, candidate: str) -> None:
        self.status[candidate] = "waiting"
        self.block_until(candidate, lambda: self._turn == candidate)
        self.status[candidate] = "running"

    def release(self, candidate: str) -> None:
        """Paused at a stage end: the next candidate may run."""
        self._leave(candidate, "paused")

    def finish(self, candidate: str) -> None:
        """Done (winner trained, pruned, or failed): never asks for a turn again."""
        self._leave(candidate, "finished")

    def _leave(self, candidate: str, status: str) -> None:
        self.status[candidate] = status
        if self._turn == candidate:
            self._turn = None

    def _resume(self, candidate: str) -> None:
        glet = self._candidates[candidate]
        if glet.dead:
            self.status[candidate] = "finished"
        else:
            glet.switch()

    def run_turn(self, candidate: str) -> None:
        self._turn = candidate
        while self._turn == candidate and self.status.get(candidate) != "finished":
            self._resume(candidate)

    def settle(self, candidate: str) -> str:
        """Let the candidate run until it asks for another turn ("waiting"), is done ("finished"), or is paused
        waiting for something that has not happened yet ("paused": a verdict the loop cannot give yet)."""
        while self.status.get(candidate) not in ("waiting", "finished"):
            blocked_on = self._waiting_for.get(candidate)
            if self.status.get(candidate) == "paused" and blocked_on is not None and not blocked_on():
                return "paused"
            self._resume(candidate)
        return self.status[candidate]


def budget_of(training_args, train_size: int | None = None) -> int:
    """Each candidate's budget in steps: the template's ``max_steps`` when set, else its ``num_train_epochs`` over
    ``train_size`` examples, counted as the Trainer counts optimizer steps (batch size x processes per batch,
    gradient accumulation, ceil). Every candidate shares the template, so an epoch budget is the same number of steps
    for all of them, and their curves stay comparable step for step."""
    if int(training_args.max_steps) > 0:
        return int(training_args.max_steps)
    epochs = float(training_args.num_train_epochs)
    if train_size is None or not epochs > 0:
        raise SelectionError("set training_args.max_steps, or num_train_epochs > 0: it is the budget of every "
                             "candidate")
    per_batch = int(training_args.per_device_train_batch_size) * max(1, int(training_args.world_size))
    batches = train_size // per_batch if training_args.dataloader_drop_last else math.ceil(train_size / per_batch)
    accumulation = max(1, int(training_args.gradient_accumulation_steps))
    updates = max(1, batches // accumulation + int(batches % accumulation > 0))
    return max(1, math.ceil(epochs * updates))


@dataclass
class SelectionResult:
    """The trained winner and the story of how it won."""

    winner: str
    model: torch.nn.Module
    processing: Any
    trainer: Any
    report: SelectionReport
    output_dir: Path
    files: dict = field(default_factory=dict)
    workers: int = 1  # candidates that trained side by side (Ray trials); 1 when they took turns

    def push_to_hub(self, repo_id: str, *, task: str, dataset_name: str = "the user's dataset",
                    private: bool = False, token: str | bool | None = None, license: str | None = None) -> str:
        """Upload the winner with a model card carrying the selection report; returns the commit id."""
        from hf_twophase.hub.client import push_winner

        return push_winner(self.files["winner"], repo_id, self.report, task=task, dataset_name=dataset_name,
                           private=private, token=token, license=license)


class _StepProgress(TrainerCallback):
    """Advances the selection's single progress bar, naming the candidate on the accelerator."""

    def __init__(self, bar, name: str):
        self.bar, self.name = bar, name.rstrip("/").split("/")[-1]

    def on_step_end(self, args, state, control, **kwargs):
        self.bar.set_postfix_str(f"{self.name} step {state.global_step}", refresh=False)
        self.bar.update(1)


class _LogLines(TrainerCallback):
    """Each Trainer log (loss, learning rate, metrics) as one line of this module's logger: a log file keeps them
    where a screen would drown in them."""

    def __init__(self, name: str):
        self.name = name

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            logger.info("%s step %d: %s", self.name, state.global_step, logs)


@dataclass
class _Slot:
    candidate: Candidate
    callback: FineSelectionCallback | None = None
    prepared: Prepared | None = None
    trainer: Any = None
    steps: int = 0
    seconds: float = 0.0
    error: str | None = None


class SelectionCoordinator:
    """Fine selection among candidates with real Trainers.

    Args:
        candidates: Hub ids, local paths, or `Candidate` objects (a loaded module or a model_init).
        train_dataset / eval_dataset: `datasets.Dataset` splits with a label column.
        training_args: a `TrainingArguments` template; its `max_steps` (or `num_train_epochs`) is the budget of
            every candidate.
        config: how the selection runs (`SelectionConfig`: stages, metric, columns, checkpoints, loading).
        policy: the pruning rule (default: successive halving on the config's stage schedule).
        compute_metrics: as the Trainer's (default: accuracy, when the metric is `eval_accuracy`).
        columns: the splits' columns, when the caller detected them already (default: detected here, once).
        on_report: completes the report (e.g. phase 1's story) before it is written, while the winner is saved.
    """

    def __init__(
        self,
        candidates: Sequence[str | Candidate],
        train_dataset,
        eval_dataset,
        training_args,
        config: SelectionConfig | None = None,
        *,
        policy: SelectionPolicy | None = None,
        compute_metrics: Callable | None = None,
        columns: Columns | None = None,
        on_report: Callable[[SelectionReport], None] | None = None,
    ):
        self.config = config = config or SelectionConfig()
        self.on_report = on_report
        self._bar = None
        self.candidates = [Candidate.of(c) for c in candidates]
        names = [c.name for c in self.candidates]
        if not names:
            raise SelectionError("no candidates to select from")
        if len(set(names)) != len(names):
            raise SelectionError(f"candidate names must be unique, got {names}")
        # labels given as class names (pos/neg) are encoded the same way in both splits; the names become id2label
        train_dataset, eval_dataset = encode_string_labels(train_dataset, eval_dataset, config.label_column)
        self.budget = budget_of(training_args, len(train_dataset))
        self.columns = columns or split_columns(train_dataset, eval_dataset, **config.column_names())
        for c in self.candidates:  # a fixed head that cannot fit the classes fails here, before any training
            if isinstance(c.model, torch.nn.Module) and head_mismatch(c.model, self.columns.n_classes):
                raise SelectionError(head_mismatch(c.model, self.columns.n_classes, name=c.name))
        self.policy = policy or SuccessiveHalving(
            StageSchedule(config.stage_steps or default_stage(self.budget), config.growth))
        self.stage_ends = self.policy.schedule.ends(self.budget)
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        self.args = training_args
        self.metric, self.greater_is_better = config.metric, config.greater_is_better
        self.compute_metrics = compute_metrics or (accuracy if config.metric == "eval_accuracy" else None)
        self.output_dir = Path(training_args.output_dir)
        self.workers = 1  # candidates training at the same time (Ray: trials side by side)
        self._writer: CheckpointWriter | None = None

    # ---------------------------------------------------------------- public
    def run(self, *, resume: bool = False) -> SelectionResult:
        ranks = process_state(self.args.use_cpu)  # one process, or every rank of `accelerate launch` / torchrun
        names = [c.name for c in self.candidates]
        if self.config.backend == "ray":
            return self._run_on_ray(ranks, names, resume)
        scheduler = self._open_scheduler(ranks, names, resume)
        ranks.wait_for_everyone()
        gate = TurnGate()
        slots = {c.name: _Slot(c) for c in self.candidates}
        if self.config.progress and self._main:
            from tqdm.auto import tqdm

            # one bar for the whole selection; its total shrinks as candidates are pruned
            self._bar = tqdm(total=self.budget * len(names), desc="fine selection", unit="step", dynamic_ncols=True)
        start = time.perf_counter()
        self._writer = CheckpointWriter()
        try:
            for n in names:
                gate.spawn(n, functools.partial(self._train, slots[n], scheduler, gate, resume))
            pending = list(names)
            while pending:
                status = {n: gate.settle(n) for n in pending}
                pending = [n for n in pending if status[n] != "finished"]
                for n in pending:  # one candidate on the accelerator at a time, in a fixed order on every rank
                    if status[n] == "waiting":
                        gate.run_turn(n)
                asked = {n: slots[n].callback.pending_step for n in pending
                         if slots[n].callback is not None and slots[n].callback.pending_step is not None}
                if not asked:
                    continue
                # decided here, while every candidate is paused, so that no candidate's own collectives (DDP
                # all-reduces) are in flight: rank 0 decides, every other rank takes rank 0's selection as its own.
                # Only what needs no wait is decided: after a resume, candidates may stand at different stages, and
                # the one behind must train on and report before the one ahead can be judged.
                taken = from_rank_zero(scheduler.decide)
                if several_ranks():
                    known = from_rank_zero(scheduler.state_dict)
                    if not self._main:
                        scheduler.load_state_dict(known)
                if not taken and "waiting" not in status.values() and all(
                        scheduler.answer(n, s).action == WAIT for n, s in asked.items()):
                    raise SelectionError(self._stuck(asked, scheduler))
            for name, exc in self._writer.wait_all().items():  # only resume needs them: a warning, not a failure
                logger.warning("candidate %s: its last stage checkpoint could not be written (%s); a resume would "
                               "start it from an earlier stage", name, exc)
        finally:
            self._writer.close()
        if self._bar is not None:
            self._bar.close()
        return self._finish(slots, scheduler, time.perf_counter() - start)

    def _run_on_ray(self, ranks, names: list[str], resume: bool) -> SelectionResult:
        """Candidates side by side as Ray Tune trials (`ray_engine`); this process is the driver and decides."""
        from hf_twophase.trainer.ray_engine import require_ray, run_on_ray

        require_ray()
        if ranks.num_processes > 1:
            raise SelectionError("backend 'ray' runs the candidates as Ray trials: start the job as one process "
                                 "(python, not torchrun or accelerate launch) and give each candidate its GPUs with "
                                 "gpus_per_candidate")
        scheduler = self._open_scheduler(ranks, names, resume)
        start = time.perf_counter()
        trials, self.workers = run_on_ray(self, scheduler)
        seconds = time.perf_counter() - start
        slots = {c.name: _Slot(c) for c in self.candidates}
        reported = scheduler.reports(include_dropped=True)
        for name, slot in slots.items():
            slot.steps = max((s for s, by in reported.items() if name in by), default=0)
            slot.seconds = trials.get(name, {}).get("seconds", 0.0)
            slot.error = trials.get(name, {}).get("error")
        winner = scheduler.winner
        if winner is not None:  # the driver loads the winner from its last stage checkpoint, at the budget
            slot = slots[winner]
            checkpoint = self._latest_checkpoint(slot)
            if checkpoint is None or checkpoint_step(checkpoint) != self.budget:
                raise SelectionError(f"the winner {winner} has no checkpoint at step {self.budget} in "
                                     f"{self._candidate_dir(slot)}: its trial did not finish")
            self._writer = CheckpointWriter()
            self._build(slot)
            self._restore_finished(slot.trainer, checkpoint)
        for name, slot in slots.items():  # pruned and failed candidates give their checkpoints back
            if name != winner:
                remove_tree(self.output_dir, self._candidate_dir(slot))
        try:
            return self._finish(slots, scheduler, seconds)
        finally:
            if getattr(self, "_writer", None) is not None:
                self._writer.close()

    def _open_scheduler(self, ranks, names: list[str], resume: bool) -> StageScheduler:
        """The selection's scheduler: new, or the one a resume continues, after checking that it is a selection of
        the same candidates and budget. Rank 0 keeps it on disk; the other ranks keep a copy in memory and take rank
        0's decisions."""
        state_dir = self.output_dir / "selection_state"
        manifest_file = self.output_dir / "selection.json"
        existed = state_dir.exists()  # every rank looks before any rank writes, so all raise alike
        ranks.wait_for_everyone()
        if existed and not resume:
            raise SelectionError(f"{state_dir} holds an earlier selection; pass resume=True to continue it, or "
                                 "choose another output_dir")
        if resume and manifest_file.is_file():
            saved = read_json(manifest_file, what="the selection manifest",
                              hint="it is rewritten from the arguments if you delete it, and the selection state "
                                   "beside it is kept")
            if not isinstance(saved, dict) or saved.get("candidates") != names or saved.get("budget") != self.budget:
                raise SelectionError(f"{manifest_file} is a selection of other candidates or another budget; "
                                     "cannot resume it with these arguments")
        ranks.wait_for_everyone()
        self._main = ranks.is_main_process
        policy = self.policy
        if self._main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(manifest_file, {"candidates": names, "budget": self.budget,
                                              "policy": policy.describe(), "metric": self.metric}, indent=2)
            storage = DirectoryStorage(state_dir, poll=0.05)
            if existed:
                storage.check()  # a damaged state file ends the resume here, named, before anything trains
            scheduler = StageScheduler(policy, names, self.budget, storage=storage)
        else:
            scheduler = StageScheduler(policy, names, self.budget)
        # every rank starts from rank 0's selection: after a resume, a copy that knew less would resume its
        # candidates from other stages than rank 0, and the ranks' collectives would no longer match
        known = from_rank_zero(scheduler.state_dict)
        if not self._main:
            scheduler.load_state_dict(known)
        return scheduler

    @staticmethod
    def _stuck(asked: dict[str, int], scheduler: StageScheduler) -> str:
        """Every live candidate waits for a decision that needs a report no running candidate can give."""
        waits = "; ".join(f"{n} at step {s} (waiting for {', '.join(scheduler.missing(s)) or 'nobody'})"
                          for n, s in sorted(asked.items()))
        where = getattr(scheduler.storage, "path", "memory")
        return (f"the selection cannot go on: {waits}. The state in {where} does not match the "
                "candidates that are running; resume with the same candidates, or start again in another output_dir")

    # ---------------------------------------------------------------- one candidate's greenlet
    def _train(self, slot: _Slot, scheduler: StageScheduler, gate: TurnGate, resume: bool) -> None:
        name = slot.candidate.name
        try:
            if resume and name not in scheduler.alive:  # already out in the run we resume
                reported = [step for step, by in scheduler.reports(include_dropped=True).items() if name in by]
                slot.steps = max(reported, default=0)  # it trained up to the stage it stopped at: the report counts it
                gate.finish(name)
                return
            gate.acquire(name)
            began = time.perf_counter()
            slot.callback = FineSelectionCallback(scheduler, name, metric=self.metric,
                                                  greater_is_better=self.greater_is_better, gate=gate,
                                                  save_stages=self.config.save_stages)
            slot.callback.mark_holding()
            self._build(slot)
            checkpoint = self._latest_checkpoint(slot) if resume else None
            if checkpoint is not None:
                done = checkpoint_step(checkpoint)  # a complete checkpoint is always named for its step
                reported = {step for step, by in scheduler.reports(include_dropped=True).items() if name in by}
                if done in scheduler.stage_ends and done not in reported:
                    checkpoint = None  # written just before a crash cut its stage's report: train the stage again
            if checkpoint is not None:
                for step, by_candidate in scheduler.reports().items():
                    if name in by_candidate and step <= done:  # stages already reported before the crash
                        slot.callback.curve[step] = by_candidate[name]
            if checkpoint is not None and done in scheduler.stage_ends and not slot.callback.await_verdict(done).go_on:
                slot.steps = done  # pruned at the stage it had reported before the crash
                slot.seconds = time.perf_counter() - began
                self._free(slot)
                return
            if checkpoint is not None and done >= self.budget:
                self._restore_finished(slot.trainer, checkpoint)
            else:
                slot.trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
            slot.steps = int(slot.trainer.state.global_step)
            slot.seconds = time.perf_counter() - began
            if self._bar is not None and slot.steps < self.budget:
                self._bar.total -= self.budget - slot.steps
                self._bar.refresh()
            if any(not v.go_on for _, v in slot.callback.verdicts):
                self._free(slot)
        except Exception as exc:  # noqa: BLE001 - one candidate's failure never stops the others
            slot.error = str(exc) if isinstance(exc, CandidateError | SelectionError) else (
                f"{type(exc).__name__}: {exc}")
            logger.warning("candidate %s dropped: %s", name, slot.error)
            scheduler.drop(name, slot.error)
            if slot.trainer is not None:
                slot.steps = int(slot.trainer.state.global_step)
            self._free(slot)
        finally:
            gate.finish(name)

    def _build(self, slot: _Slot) -> None:
        """The candidate's model, its processed splits and its Trainer, into ``slot``."""
        from transformers import set_seed

        # a new head is initialised from the global generator: seed it, so a candidate starts the same whatever ran
        # before it in this process (a cache build, other candidates)
        set_seed(self.args.seed)
        slot.prepared = prepare(slot.candidate, self.train_dataset, self.eval_dataset, self.columns,
                                max_length=self.config.max_length, image_size=self.config.image_size,
                                trust_remote_code=self.config.trust_remote_code, allow_pickle=self.config.allow_pickle)
        slot.trainer = self._trainer(slot)

    def _trainer(self, slot: _Slot):
        from transformers import Trainer

        stage = min(self.stage_ends[0], max(1, self.args.logging_steps or 1))
        if self._main:  # checkpoints land in a real folder of ours, whatever was planted under its name
            real_folder(self.output_dir, self._candidate_dir(slot))
        args = dataclasses.replace(  # checkpoints are kept to the newest complete one by mark_complete
            self.args, output_dir=str(self._candidate_dir(slot)), max_steps=self.budget, eval_strategy="no",
            save_strategy="no", save_total_limit=None, load_best_model_at_end=False, report_to=[],
            remove_unused_columns=False, logging_steps=stage, push_to_hub=False,
            # without an accelerator the Trainer joins the job's CPU process group (and trains data-parallel under
            # several processes) only when it is told it runs on the CPU
            use_cpu=self.args.use_cpu or not has_accelerator(),
        )
        if self._bar is not None:
            args = dataclasses.replace(args, disable_tqdm=True)
        p = slot.prepared
        callbacks = [c for c in (slot.callback, _LogLines(slot.candidate.name)) if c is not None] + (
            [_StepProgress(self._bar, slot.candidate.name)] if self._bar else [])
        kwargs = dict(model=p.model, args=args, train_dataset=p.train_dataset, eval_dataset=p.eval_dataset,
                      data_collator=p.data_collator, compute_metrics=self.compute_metrics, callbacks=callbacks,
                      processing_class=p.processing if p.kind == "text-classifier" else None)
        if self.config.save_stages:
            trainer = BackgroundCheckpointTrainer(**kwargs, checkpoint_writer=self._writer,
                                                  writer_key=slot.candidate.name,
                                                  background=self.config.background_checkpoints)
        else:
            trainer = Trainer(**kwargs)
        if self._bar is not None:
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)  # the shared bar replaces the per-Trainer log lines
        return trainer

    @staticmethod
    def _restore_finished(trainer, checkpoint: Path) -> None:
        """Load a candidate that had trained its whole budget before the crash, without calling `train`.

        Resumed from its last checkpoint, `Trainer.train` would take one step beyond `max_steps` whenever the budget
        is not a whole number of epochs (it skips the epoch's first batches and steps before it checks the budget).
        """
        from transformers.trainer import TRAINER_STATE_NAME
        from transformers.trainer_callback import TrainerState

        trainer._load_from_checkpoint(str(checkpoint))
        trainer.state = TrainerState.load_from_json(str(checkpoint / TRAINER_STATE_NAME))

    def new_slot(self, name: str) -> _Slot:
        """A fresh slot for the candidate called ``name`` (how a Ray trial holds its one candidate)."""
        return _Slot(next(c for c in self.candidates if c.name == name))

    def _candidate_dir(self, slot: _Slot) -> Path:
        return self.output_dir / "candidates" / folder_name(slot.candidate.name)

    def _latest_checkpoint(self, slot: _Slot) -> Path | None:
        """The newest complete checkpoint: one cut short by a crash lacks the marker written last."""
        return latest_complete(self._candidate_dir(slot))

    def _free(self, slot: _Slot) -> None:
        """A pruned or failed candidate gives back its memory and its disk at once (ray #4287)."""
        try:
            self._writer.wait(slot.candidate.name)  # a write still queued would bring the folder back
        except Exception as exc:  # noqa: BLE001 - the checkpoint is being removed anyway
            logger.info("candidate %s: a stage checkpoint failed to write (%s); it is removed anyway",
                        slot.candidate.name, exc)
        try:
            remove_tree(self.output_dir, self._candidate_dir(slot))
        except (OSError, UnsafePathError) as exc:  # what is left on disk costs space, never the selection
            logger.warning("candidate %s: its folder could not be removed (%s)", slot.candidate.name, exc)
        slot.trainer = None
        slot.prepared = None
        if torch.cuda.is_available():  # accelerator memory is the scarce kind: reclaim it now, cycles included
            gc.collect()
            torch.cuda.empty_cache()

    # ---------------------------------------------------------------- the end
    def _finish(self, slots: dict[str, _Slot], scheduler: StageScheduler, seconds: float) -> SelectionResult:
        run = scheduler
        reports = scheduler.reports()
        dropped = scheduler.dropped()
        winner = run.winner if run.winner and slots[run.winner].trainer is not None else None
        out = []
        for name, slot in slots.items():
            curve = {s: r[name] for s, r in sorted(reports.items()) if name in r}
            last = next((d for d in reversed(run.decisions) if d.candidate == name), None)
            if name in dropped:
                status, reason, note = "dropped", dropped[name], ""
            elif name == winner:
                status, reason, note = "winner", last.reason if last else "", ""
            elif last is not None:
                status, reason, note = last.action, last.reason, last.note
            else:
                status, reason, note = "failed", slot.error or "", ""
            out.append(CandidateReport(name=name, status=status, reason=reason, note=note, curve=curve,
                                       steps_trained=slot.steps, seconds=round(slot.seconds, 3),
                                       stopped_at=max(curve) if curve and status != "winner" else None))
        if winner is None:
            reasons = "; ".join(f"{c.name}: {c.reason}" for c in out)
            raise SelectionError(f"no candidate finished the selection ({reasons})")
        report = SelectionReport(candidates=out, winner=winner, budget=self.budget, stage_ends=self.stage_ends,
                                 metric=self.metric, policy=self.policy.describe(), seconds=seconds,
                                 winner_score=reports.get(self.budget, {}).get(winner))
        if self.columns.label_maps():
            report.extra["labels"] = list(self.columns.class_names)  # as the winner's id2label names them
        if self.metric == "eval_accuracy":  # what always answering the most common class would score
            counts = np.bincount(np.asarray(self.eval_dataset[self.columns.label], dtype=np.int64))
            report.extra["majority_baseline"] = round(float(counts.max() / max(1, counts.sum())), 4)
        slot = slots[winner]
        winner_dir = self.output_dir / "winner"
        if self._main:  # a link planted at winner/ or below it is replaced, never written through
            real_folder(self.output_dir, winner_dir)
        distributed = several_ranks()
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            # writing the weights releases the GIL: the report and its plot are drawn meanwhile. Under several
            # ranks the save stays on this thread, with the ranks' own order of work.
            saving = None if distributed else pool.submit(self._save_winner, slot, winner_dir)
            if distributed:
                self._save_winner(slot, winner_dir)
            if self.on_report is not None:
                self.on_report(report)
            files = report.save(self.output_dir) if self._main else {}
            if saving is not None:
                saving.result()  # a failed save raises here, after the report is on disk
        return SelectionResult(winner=winner, model=slot.trainer.model, processing=slot.prepared.processing,
                               trainer=slot.trainer, report=report, output_dir=self.output_dir,
                               files={**files, "winner": winner_dir}, workers=self.workers)

    def _save_winner(self, slot: _Slot, folder: Path) -> None:
        if self._main:  # saved before (a finished selection resumed): its weights are links into the checkpoint
            unshare_weights(folder)
        save_trained(slot.prepared, slot.trainer, folder, main=self._main, label_names=self.columns.class_names)
        if self._main:  # the winner's last checkpoint stays as the resume point, without a second copy of the weights
            share_identical_weights(folder, self._latest_checkpoint(slot))
