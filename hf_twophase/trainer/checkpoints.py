"""Stage checkpoints written behind the training, so that being able to resume costs little while nothing crashes.

The coordinator checkpoints every live candidate at every stage end, and nobody reads those checkpoints unless the
selection dies. Written in place, each one stalls the candidate, and the accelerator with it, for the whole write
of its weights and optimizer state (two Adam moments per parameter): on the tiny CPU benchmark that is more than
everything else the coordinator adds, and it grows with the model. Here the Trainer's own code still decides what
a checkpoint holds and where it goes; `BackgroundCheckpointTrainer` only hands it a host copy of the weights and
optimizer state taken at the stage end, and one worker thread does the writing (safetensors and `torch.save`
release the GIL while they write).

Crash safety does not depend on the timing: a checkpoint counts only once its marker file exists, written after
everything else in it, and the candidate's older checkpoints are removed only then. A crash at any moment leaves
the previous complete checkpoint in place.

The checkpoint at the end of the budget leaves out the optimizer and scheduler state: nothing trains after it. No
stage checkpoint holds the tokenizer: a resume loads it from the candidate itself, and the winner's own folder gets
it when the winner is saved.
"""

from __future__ import annotations

import collections
import concurrent.futures
import copy
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "hf_twophase_complete"
"""Written last into a checkpoint folder: its presence means every other file there is whole."""

_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None))


def host_copy(obj: Any, _memo: dict | None = None) -> Any:
    """A copy of `obj` whose tensors live in host memory and no longer change with training.

    Tensors that share storage (tied weights) stay shared in the copy, so the saved file is the one the Trainer
    would have written.
    """
    memo = {} if _memo is None else _memo
    if isinstance(obj, torch.Tensor):
        key = (obj.untyped_storage().data_ptr(), obj.storage_offset(), tuple(obj.shape), tuple(obj.stride()),
               obj.dtype, obj.device)
        if key not in memo:
            memo[key] = obj.detach().to("cpu", copy=True)
        return memo[key]
    if isinstance(obj, dict):  # an OrderedDict stays one (state dicts are); other mappings become plain dicts
        items = {k: host_copy(v, memo) for k, v in obj.items()}
        return collections.OrderedDict(items) if isinstance(obj, collections.OrderedDict) else items
    if isinstance(obj, list | tuple) and not hasattr(obj, "_fields"):
        return type(obj)(host_copy(v, memo) for v in obj)
    if isinstance(obj, _IMMUTABLE):
        return obj
    return copy.deepcopy(obj)


def mark_complete(folder: str | Path) -> None:
    """Declare `folder` whole, then remove its older sibling checkpoints (the newest complete one is enough)."""
    folder = Path(folder)
    (folder / COMPLETE_MARKER).touch()
    step = checkpoint_step(folder)
    for sibling in folder.parent.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        older = checkpoint_step(sibling)
        if sibling != folder and older is not None and older < step:
            shutil.rmtree(sibling, ignore_errors=True)


def latest_complete(folder: str | Path) -> Path | None:
    """The newest checkpoint under `folder` that carries the marker; None if there is none."""
    found = [p for p in Path(folder).glob(f"{PREFIX_CHECKPOINT_DIR}-*")
             if checkpoint_step(p) is not None and (p / COMPLETE_MARKER).is_file()]
    return max(found, key=checkpoint_step) if found else None


def share_identical_weights(saved: str | Path, checkpoint: str | Path | None) -> None:
    """Store the weights that a saved model folder and a checkpoint both hold once: the checkpoint's copy becomes a
    hard link to the saved one.

    The winner's last checkpoint stays as the resume point of a finished selection, next to the winner's own folder,
    and for a transformers model both hold the very same `model.safetensors`. Only byte-identical files are linked,
    each swapped in with an atomic rename, so the checkpoint is whole at every moment; a file system without hard
    links keeps both copies. Before the saved folder is written again, `unshare_weights` takes the links out.
    """
    if checkpoint is None:
        return
    for file in Path(saved).glob("*.safetensors"):
        twin = Path(checkpoint) / file.name
        if not twin.is_file() or twin.stat().st_size != file.stat().st_size or os.path.samefile(twin, file):
            continue
        if not _same_bytes(file, twin):
            continue
        link = twin.with_name(twin.name + ".link")
        try:
            link.unlink(missing_ok=True)
            os.link(file, link)
            os.replace(link, twin)
        except OSError as exc:
            link.unlink(missing_ok=True)
            logger.info("could not hard-link %s to %s (%s); both copies stay", twin, file, exc)


def unshare_weights(saved: str | Path) -> None:
    """Remove the saved folder's weights that are hard links, so that writing the folder again can never rewrite the
    checkpoint they are shared with in place (safetensors writes a new file today, but nothing promises it)."""
    for file in Path(saved).glob("*.safetensors"):
        if file.stat().st_nlink > 1:
            file.unlink()


def _same_bytes(a: Path, b: Path, chunk: int = 1 << 24) -> bool:
    """Byte equality in large reads: the reads release the GIL, so the report drawn meanwhile is not held up
    (`filecmp` compares in 8 KiB steps of Python)."""
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(chunk), fb.read(chunk)
            if x != y:
                return False
            if not x:
                return True


def checkpoint_step(folder: Path) -> int | None:
    """The training step a `checkpoint-N` folder was written at; None for any other name."""
    try:
        return int(folder.name.rsplit("-", 1)[-1])
    except ValueError:
        return None


class CheckpointWriter:
    """One worker thread that writes checkpoints in the order they were taken.

    Writes are grouped by a key (the candidate): `wait(key)` returns once that candidate's writes are on disk and
    raises the first error among them, so a failed write reaches the candidate that made it.
    """

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-twophase-ckpt")
        self._pending: dict[str, list[concurrent.futures.Future]] = {}

    def submit(self, key: str, fn: Callable, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        future = self._pool.submit(fn, *args, **kwargs)
        self._pending.setdefault(key, []).append(future)
        return future

    def wait(self, key: str) -> None:
        errors = [f.exception() for f in self._pending.pop(key, [])]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first

    def wait_all(self) -> dict[str, BaseException]:
        """Wait for every write; return the errors by key instead of raising (the caller decides what they mean)."""
        errors = {}
        for key in list(self._pending):
            try:
                self.wait(key)
            except Exception as exc:  # noqa: BLE001 - reported to the caller, per candidate
                errors[key] = exc
        return errors

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class _WithoutProcessing:
    """The Trainer as `Trainer._save` sees it when writing a stage checkpoint: the same in all but its tokenizer.

    `Trainer._save` writes the `processing_class`, or else the data collator's tokenizer, next to the weights. A
    stage checkpoint is only a resume point, and resuming reads neither (a large vocabulary's tokenizer files weigh
    megabytes, rewritten at every stage). Hiding them on a view rather than on the Trainer itself leaves the
    training, which goes on using the collator while a background write runs, untouched.
    """

    processing_class = None
    data_collator = None

    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trainer, name)


class BackgroundCheckpointTrainer(Trainer):
    """A `Trainer` whose checkpoints are written by a `CheckpointWriter` while it trains on.

    Only the checkpoint's two large writes (the model, the optimizer state) move to the worker; the Trainer's own
    `_save` and file names are kept, so `resume_from_checkpoint` reads them as usual. Where the Trainer shards or
    gathers state across processes (several ranks, DeepSpeed, FSDP), it saves synchronously as always. Either way
    the checkpoint is marked complete last, and `args.save_total_limit` is left to `mark_complete`.

    `background=None` (the default) writes behind only when the model trains on an accelerator. On the CPU, torch's
    intra-op threads meet at a barrier after every parallel op, and a writer thread that takes one of their cores
    holds them all up, so training beside a busy writer is several times slower (benchmarks/writer_contention.py).
    Giving the writer a core of its own (one intra-op thread fewer) saves too little to be worth changing torch's
    thread count under the user (docs/benchmarks.md has both measurements).
    """

    def __init__(self, *args: Any, checkpoint_writer: CheckpointWriter, writer_key: str,
                 background: bool | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._writer, self._writer_key = checkpoint_writer, writer_key
        self._background = background
        self._deferring = False
        self._in_checkpoint = False

    def _in_background(self) -> bool:
        if self._background is False or self.args.world_size != 1 or self.is_deepspeed_enabled \
                or self.is_fsdp_enabled:
            return False
        if self._background is None:
            first = next(self.model.parameters(), None)
            return first is not None and first.device.type != "cpu"
        return True

    def _evaluate(self, trial, ignore_keys_for_eval, skip_scheduler: bool = False):
        """At a stage end the checkpoint is written before the evaluation whose score is reported, so a stage that
        others may already have acted on is never lost to a crash (the Trainer itself saves after evaluating)."""
        if self.control.should_save:
            self._save_checkpoint(self.model, trial)
            self.control = self.callback_handler.on_save(self.args, self.state, self.control)
        return super()._evaluate(trial, ignore_keys_for_eval, skip_scheduler=skip_scheduler)

    def _save_checkpoint(self, model, trial) -> None:
        folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        self._in_checkpoint = True
        try:
            self._write_checkpoint(model, trial, folder)
        finally:
            self._in_checkpoint = False

    def _write_checkpoint(self, model, trial, folder: str) -> None:
        if not self._in_background():
            super()._save_checkpoint(model, trial)
            if self.args.should_save:
                mark_complete(folder)
            return
        self._writer.wait(self._writer_key)  # one checkpoint in flight per candidate; a failed write raises here
        self._deferring = True
        try:
            super()._save_checkpoint(model, trial)  # small files now, the two large ones queued
        finally:
            self._deferring = False
        self._writer.submit(self._writer_key, mark_complete, folder)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        trainer = _WithoutProcessing(self) if self._in_checkpoint else self  # the winner's own save keeps it
        if not self._deferring:
            return Trainer._save(trainer, output_dir, state_dict)
        snapshot = host_copy(self.model.state_dict() if state_dict is None else state_dict)
        self._writer.submit(self._writer_key, Trainer._save, trainer, output_dir, snapshot)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if self.state.global_step >= self.state.max_steps > 0:
            # The checkpoint at the end of the budget: no step is left to take, so a resume needs only the
            # weights, the RNG and the Trainer state (the Trainer skips optimizer and scheduler files that are not
            # there). The optimizer state is two Adam moments per parameter, two thirds of a checkpoint's bytes.
            return
        if not self._deferring:
            return super()._save_optimizer_and_scheduler(output_dir)
        from transformers.trainer import OPTIMIZER_NAME, SCHEDULER_NAME

        optimizer = host_copy(self.optimizer.state_dict())
        scheduler = host_copy(self.lr_scheduler.state_dict())

        def write() -> None:
            os.makedirs(output_dir, exist_ok=True)
            torch.save(optimizer, os.path.join(output_dir, OPTIMIZER_NAME))
            torch.save(scheduler, os.path.join(output_dir, SCHEDULER_NAME))

        self._writer.submit(self._writer_key, write)
