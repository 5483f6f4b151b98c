"""What the coordinator's stage checkpoints cost, written in place or behind the training, against none at all.

Paired repeats of the same selection (successive halving, tiny BERT candidates on the CPU), one per mode, in an
order that alternates every repeat so that a drift of the machine favours no mode:

- `none`: `save_stages=False`, no checkpoint (a crash loses the selection's training);
- `in-place`: the default on the CPU, each checkpoint written on the training's own thread;
- `behind`: `background_checkpoints=True`, written by a worker thread from a host copy while training goes on;
- `behind-free-core`: as `behind`, and while a write is in flight torch's intra-op threads are one fewer, so the
  writer has a core of its own (a design tried here, not in the library: see benchmarks/writer_contention.py).

Prints, per mode, the median selection time, the paired difference to `none` (mean +- standard error, median) and
the time the checkpoints held up the training's own thread.

    python benchmarks/checkpoint_modes.py [--budget 60] [--stage 15] [--repeats 25] [--modes in-place behind ...]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers as tf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hf_twophase.trainer.checkpoints as checkpoints  # noqa: E402
from benchmarks.timed_parts import PARTS, time_parts  # noqa: E402
from hf_twophase.trainer.config import SelectionConfig  # noqa: E402
from hf_twophase.trainer.coordinator import SelectionCoordinator  # noqa: E402
from tests.coordinator_helpers import make_candidates, make_data, training_args  # noqa: E402


@contextlib.contextmanager
def _free_core():
    """One intra-op thread fewer from a background submit until the training thread sees the writes done."""
    submit, step = checkpoints.CheckpointWriter.submit, tf.Trainer.training_step
    default, in_flight = torch.get_num_threads(), []

    def fewer_threads(self, key, fn, *args, **kwargs):
        torch.set_num_threads(max(1, default - 1))
        future = submit(self, key, fn, *args, **kwargs)
        in_flight.append(future)
        return future

    def restore_when_done(self, *args, **kwargs):
        if in_flight and all(f.done() for f in in_flight):
            in_flight.clear()
            torch.set_num_threads(default)
        return step(self, *args, **kwargs)

    checkpoints.CheckpointWriter.submit, tf.Trainer.training_step = fewer_threads, restore_when_done
    try:
        yield
    finally:
        checkpoints.CheckpointWriter.submit, tf.Trainer.training_step = submit, step
        torch.set_num_threads(default)


MODES = {  # mode: (save_stages, background_checkpoints, context)
    "none": (False, None, contextlib.nullcontext),
    "in-place": (True, False, contextlib.nullcontext),
    "behind": (True, True, contextlib.nullcontext),
    "behind-free-core": (True, True, _free_core),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--stage", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--modes", nargs="+", choices=[m for m in MODES if m != "none"],
                        default=["in-place", "behind", "behind-free-core"])
    args = parser.parse_args()
    time_parts([(tf.Trainer, "_save_checkpoint", "held")])  # on the training's own thread
    work = Path(tempfile.mkdtemp())
    names = make_candidates(work / "cands", hidden=(64, 48, 32, 80))
    train, ev = make_data(1024, 0), make_data(256, 1)
    modes = ["none", *args.modes]

    def select(mode: str, r: int) -> tuple[float, float]:
        save_stages, background, context = MODES[mode]
        PARTS.clear()
        start = time.perf_counter()
        with context():
            SelectionCoordinator(names, train, ev, training_args(work / f"{mode}_{r}", max_steps=args.budget,
                                                                 logging_steps=args.stage),
                                 SelectionConfig(stage_steps=args.stage, save_stages=save_stages,
                                                 background_checkpoints=background)).run()
        seconds = time.perf_counter() - start
        shutil.rmtree(work / f"{mode}_{r}")  # untimed: a hundred selections would otherwise fill /tmp
        return seconds, PARTS["held"]

    for mode in modes:  # warm-up: imports, allocator and caches
        select(mode, -1)
    seconds: dict[str, list[float]] = {m: [] for m in modes}
    held: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(args.repeats):
        for mode in modes if r % 2 == 0 else modes[::-1]:
            s, h = select(mode, r)
            seconds[mode].append(s)
            held[mode].append(h)
    print(f"{args.repeats} paired repeats, 4 candidates x {args.budget} steps, stage {args.stage}, "
          f"{torch.get_num_threads()} intra-op threads")
    for mode in modes:
        diff = [1000 * (x - b) for x, b in zip(seconds[mode], seconds["none"], strict=True)]
        line = f"{mode:17s} median {statistics.median(seconds[mode]):.3f} s"
        if mode != "none":
            error = statistics.stdev(diff) / len(diff) ** 0.5 if len(diff) > 1 else float("nan")
            line += (f"; minus none: mean {statistics.mean(diff):.0f} +- {error:.0f}"
                     f" ms, median {statistics.median(diff):.0f} ms; checkpoints on the training thread: median "
                     f"{1000 * statistics.median(held[mode]):.0f} ms")
        if mode not in ("none", "in-place") and "in-place" in modes:
            versus = [1000 * (x - b) for x, b in zip(seconds[mode], seconds["in-place"], strict=True)]
            error = statistics.stdev(versus) / len(versus) ** 0.5 if len(versus) > 1 else float("nan")
            line += f"; minus in-place: mean {statistics.mean(versus):.0f} +- {error:.0f} ms"
        print(line)


if __name__ == "__main__":
    main()
