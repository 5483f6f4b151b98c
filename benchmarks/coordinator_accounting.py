"""What the coordinator adds to a real selection, piece by piece: the overhead where a plain-Trainer twin is too noisy.

    python benchmarks/coordinator_accounting.py [select.py arguments, e.g. --k 8 --variant paper]

Runs the main job (`examples/select.py`, the embedded offline default unless told otherwise) in this process and
times every piece of work that the coordinator does and plain Trainers would not: stage checkpoints, the report
and its plot, freeing pruned candidates, saving the winner, the shared state on disk, and the pause/resume
hand-overs of the turn (random-number state, host/device moves). On runs of minutes, one repeat of a plain-Trainer
twin differs by more than these pieces add up to; on the 4 x 60-step benchmark, where both can be measured, the
pieces account for the measured difference (docs/benchmarks.md).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import transformers as tf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.timed_parts import PARTS, time_parts  # noqa: E402
from hf_twophase.cli.select import main as select_main  # noqa: E402
from hf_twophase.trainer.callback import FineSelectionCallback  # noqa: E402
from hf_twophase.trainer.coordinator import SelectionCoordinator  # noqa: E402
from hf_twophase.trainer.report import SelectionReport  # noqa: E402
from hf_twophase.trainer.storage import DirectoryStorage  # noqa: E402

ADDED = [  # (owner, method, label): work the coordinator adds
    (tf.Trainer, "_save_checkpoint", "stage checkpoints"), (SelectionCoordinator, "_finish", "finish"),
    (SelectionCoordinator, "_free", "free pruned"), (DirectoryStorage, "add_report", "state"),
    (DirectoryStorage, "add_record", "state"), (DirectoryStorage, "reports", "state"),
    (FineSelectionCallback, "_release", "pause"), (FineSelectionCallback, "_capture_rng", "pause"),
]
INSIDE = [(SelectionCoordinator, "run", "selection (phase 2)"), (SelectionReport, "save", "of which report")]


def main() -> None:
    time_parts(ADDED + INSIDE)
    start = time.perf_counter()
    code = select_main(sys.argv[1:])
    total = time.perf_counter() - start
    selection = PARTS.pop("selection (phase 2)", 0.0)
    report = PARTS.pop("of which report", 0.0)
    added = sum(PARTS.values())
    print(f"\nwhole job {total:.1f} s, of which fine selection (SelectionCoordinator.run) {selection:.1f} s")
    for label, seconds in sorted(PARTS.items(), key=lambda kv: -kv[1]):
        print(f"  {label:20s} {seconds:7.3f} s")
    print(f"  (the finish includes the report and plot, {report:.3f} s, and the winner's save)")
    print(f"coordinator-added work: {added:.2f} s = {100 * added / selection:.2f}% of the fine selection")
    sys.exit(code)


if __name__ == "__main__":
    main()
