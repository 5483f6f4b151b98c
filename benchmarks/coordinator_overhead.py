"""Coordinator overhead: its wall time minus the time plain Trainers take for the same candidate-steps.

Both sides load each candidate, encode the data, train the same number of steps with the same
arguments and evaluate at the same stage ends; the coordinator adds turn-taking, pausing (random-number
state, host/device moves), the shared state on disk, decisions, the report and (with --save-stages) a
checkpoint per live candidate per stage.

    python benchmarks/coordinator_overhead.py [--candidates 4] [--budget 60] [--stage 15] [--repeats 3] [--parts]
        [--save-stages [--background-checkpoints auto|on|off] [--plain-saves]]

With --plain-saves, the plain Trainers also write a checkpoint at every (candidate, step) where the coordinator
wrote one (the stock Trainer's checkpoint code, older ones rotated away): what a user of plain Trainers pays to be
able to resume, so the difference left is the coordinator's own work. The stock checkpoints also hold the
tokenizer, which the coordinator's stage checkpoints leave out.

With --parts, each repeat also prints the seconds spent in the pieces the coordinator adds (report, plot,
freeing pruned candidates, saving the winner, the shared state), in its finish (everything after the last
step: the report, its plot and the winner's save, which runs on a worker thread meanwhile), and on both sides in
`Trainer.training_step`, in stage checkpoints (the part written on the training's own thread) and in the full
`gc.collect()` the Trainer runs at the start of every `train`.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import transformers as tf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.timed_parts import PARTS, time_parts  # noqa: E402
from hf_twophase.inputs.columns import detect_columns  # noqa: E402
from hf_twophase.trainer.candidates import Candidate, accuracy, prepare  # noqa: E402
from hf_twophase.trainer.config import SelectionConfig  # noqa: E402
from hf_twophase.trainer.coordinator import SelectionCoordinator  # noqa: E402
from hf_twophase.trainer.report import SelectionReport  # noqa: E402
from hf_twophase.trainer.storage import DirectoryStorage  # noqa: E402
from tests.coordinator_helpers import make_candidates, make_data, training_args  # noqa: E402


class StopAt(tf.TrainerCallback):
    def __init__(self, step: int, save_at: frozenset = frozenset()):
        self.step, self.save_at = step, save_at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.save_at:
            control.should_save = True
        if state.global_step >= self.step:
            control.should_training_stop = True


SAVED: set = set()  # (candidate folder name, step) of every checkpoint the coordinator wrote


def _record_saves() -> None:
    original = tf.Trainer._save_checkpoint

    def recorded(self, model, trial):
        SAVED.add((Path(self.args.output_dir).name, self.state.global_step))
        return original(self, model, trial)

    tf.Trainer._save_checkpoint = recorded


CUDA = False
BATCH = 16


def plain(names, steps, stage, budget, train, ev, folder, saves=frozenset()) -> float:
    columns = detect_columns(train)
    start = time.perf_counter()
    for name in names:
        p = prepare(Candidate.of(name), train, ev, columns)
        save_at = frozenset(step for who, step in saves if who == name.replace("/", "--"))
        args = training_args(folder / Path(name).name, max_steps=budget, eval_strategy="steps", eval_steps=stage,
                             save_strategy="no", save_total_limit=1, logging_steps=stage, use_cpu=not CUDA,
                             per_device_train_batch_size=BATCH)
        trainer = tf.Trainer(model=p.model, args=args, train_dataset=p.train_dataset, eval_dataset=p.eval_dataset,
                             data_collator=p.data_collator, compute_metrics=accuracy,
                             processing_class=p.processing if p.kind == "text-classifier" else None,
                             callbacks=[StopAt(steps[name], save_at)])
        trainer.train()
    return time.perf_counter() - start


TIMED = [  # (owner, method, label)
    (tf.Trainer, "training_step", "training_step"), (SelectionReport, "save", "report (with plot)"),
    (SelectionReport, "plot", "plot"), (SelectionCoordinator, "_free", "free pruned"),
    (SelectionCoordinator, "_save_winner", "save winner"), (SelectionCoordinator, "_finish", "finish"),
    (tf.Trainer, "_save_checkpoint", "stage checkpoints"), (DirectoryStorage, "add_report", "state"),
    (DirectoryStorage, "add_record", "state"), (DirectoryStorage, "reports", "state"),
    (gc, "collect", "gc.collect"),  # the Trainer's own, at the start of every `train` (accelerator.free_memory)
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--stage", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--save-stages", action="store_true")
    parser.add_argument("--background-checkpoints", choices=["auto", "on", "off"], default="auto",
                        help="with --save-stages: write them behind the training (auto: on an accelerator only)")
    parser.add_argument("--plain-saves", action="store_true",
                        help="with --save-stages: the plain Trainers write the same checkpoints")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--parts", action="store_true", help="also time the pieces the coordinator adds")
    args = parser.parse_args()
    if args.plain_saves and not args.save_stages:
        parser.error("--plain-saves compares against the coordinator's stage checkpoints: add --save-stages")
    if args.parts:
        time_parts(TIMED)
    if args.plain_saves:
        _record_saves()
    global CUDA, BATCH
    CUDA, BATCH = args.device == "cuda", args.batch_size
    work = Path(tempfile.mkdtemp())
    names = make_candidates(work / "cands", hidden=(64, 48, 32, 80, 96, 40, 56, 72)[: args.candidates],
                            layers=args.layers)
    train, ev = make_data(1024, 0), make_data(256, 1)
    rows = []
    background = {"auto": None, "on": True, "off": False}[args.background_checkpoints]
    def coordinate(r: int) -> tuple[float, dict[str, int]]:
        start = time.perf_counter()
        result = SelectionCoordinator(names, train, ev, training_args(work / f"sel{r}", max_steps=args.budget,
                                                                      logging_steps=args.stage, use_cpu=not CUDA,
                                                                      per_device_train_batch_size=BATCH),
                                      SelectionConfig(stage_steps=args.stage, save_stages=args.save_stages,
                                                      background_checkpoints=background)).run()
        return time.perf_counter() - start, {c.name: c.steps_trained for c in result.report.candidates}

    _, steps = coordinate(-1)  # warm-up: imports, allocator and caches, so repeat 0 is not an outlier
    saves = frozenset(SAVED) if args.plain_saves else frozenset()  # the same decisions every repeat (fixed seed)
    def timed_plain(r: int, steps: dict[str, int]) -> tuple[float, dict]:
        PARTS.clear()
        return plain(names, steps, args.stage, args.budget, train, ev, work / f"plain{r}", saves), dict(PARTS)

    def timed_coordinator(r: int) -> tuple[float, dict[str, int], dict]:
        PARTS.clear()
        return *coordinate(r), dict(PARTS)

    for r in range(args.repeats):
        # alternate which side runs first, so a slow drift of the machine does not favour either side
        if r % 2:
            baseline, plain_parts = timed_plain(r, steps)
            coordinated, steps, coordinator_parts = timed_coordinator(r)
        else:
            coordinated, steps, coordinator_parts = timed_coordinator(r)
            baseline, plain_parts = timed_plain(r, steps)
        if args.parts:
            print(f"  parts, coordinator: {', '.join(f'{k} {v:.3f} s' for k, v in sorted(coordinator_parts.items()))}"
                  f"; plain Trainers: gc.collect {plain_parts.get('gc.collect', 0.0):.3f} s, "
                  f"training_step {plain_parts.get('training_step', 0.0):.3f} s, "
                  f"stage checkpoints {plain_parts.get('stage checkpoints', 0.0):.3f} s")
        rows.append((coordinated, baseline, sum(steps.values())))
        print(f"repeat {r}: coordinator {coordinated:.2f} s, plain Trainers {baseline:.2f} s, "
              f"{sum(steps.values())} candidate-steps, overhead {100 * (coordinated - baseline) / coordinated:.1f}%")
    c = statistics.median(x[0] for x in rows)
    b = statistics.median(x[1] for x in rows)
    print(f"median: coordinator {c:.2f} s, plain {b:.2f} s, overhead {100 * (c - b) / c:.1f}% "
          f"(device={args.device}, save_stages={args.save_stages}, "
          f"background_checkpoints={args.background_checkpoints}, plain_saves={args.plain_saves})")
    if len(rows) > 1:  # repeats are paired (same machine state, alternating order): differences are less noisy
        paired = [100 * (x[0] - x[1]) / x[0] for x in rows]
        error = statistics.stdev(paired) / len(paired) ** 0.5
        print(f"paired over {len(paired)} repeats: median {statistics.median(paired):.1f}%, "
              f"mean {statistics.mean(paired):.1f}% +- {error:.1f}% (standard error)")
    shutil.rmtree(work, ignore_errors=True)  # at the end only: the repeats are timed as they always were


if __name__ == "__main__":
    main()
