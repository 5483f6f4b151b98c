"""Add fine selection to a plain, existing Trainer script that fine-tunes several models.

Each model is trained by its own ordinary Trainer; one extra line adds the callback, and the runs share a state
folder. Run the models one after another (`--mode async`, ASHA-style: a model goes on while it stays among the best
of those that already reached the same stage), or at the same time, each in its own process as separate scripts or
cluster jobs would be (`--mode sync`: each stage waits for every live model):

    python examples/callback_in_your_trainer.py --models M1 M2 M3 --state-dir runs/state --mode async
    python examples/callback_in_your_trainer.py --mode sync

With no --models it makes three tiny BERT classifiers and a small sentiment dataset, offline.
"""

from __future__ import annotations

import os
import sys

# examples/select.py is named like the standard library's `select` module, and Python puts a script's folder first on
# the import path: take this folder off, or `import subprocess` (deep inside every library) would import select.py.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import transformers as tf  # noqa: E402

from hf_twophase import FineSelectionCallback, StageSchedule, StageScheduler, SuccessiveHalving  # noqa: E402
from hf_twophase.trainer.candidates import accuracy  # noqa: E402
from hf_twophase.trainer.storage import directory_scheduler  # noqa: E402


def demo_models(folder: Path) -> list[str]:
    from hf_twophase.inputs.packaged import minilm_path

    tok = tf.AutoTokenizer.from_pretrained(minilm_path())
    paths = []
    for i, hidden in enumerate((32, 8, 16)):
        config = tf.BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=2 * hidden, num_labels=2)
        path = folder / f"tiny-bert-{i}"
        tf.BertForSequenceClassification(config).save_pretrained(path)
        tok.save_pretrained(path)
        paths.append(str(path))
    return paths


def demo_data():
    import datasets

    rng = np.random.default_rng(0)
    pos, neg = ["good", "great", "fine", "superb"], ["bad", "awful", "dull", "poor"]
    labels = rng.integers(0, 2, 320)
    texts = [" ".join(rng.choice(pos if y else neg, 3)) for y in labels]
    ds = datasets.Dataset.from_dict({"text": texts, "label": labels.tolist()})
    return ds.select(range(256)), ds.select(range(256, 320))


def fine_tune(name: str, state: StageScheduler, args: argparse.Namespace, work: Path) -> str:
    """An ordinary fine-tuning script for one model, plus the callback."""
    train, evaluation = demo_data()
    tokenizer = tf.AutoTokenizer.from_pretrained(name)
    model = tf.AutoModelForSequenceClassification.from_pretrained(name, num_labels=2)

    def encode(batch):
        return tokenizer(batch["text"], truncation=True)

    trainer = tf.Trainer(
        model=model,
        args=tf.TrainingArguments(output_dir=str(work / Path(name).name), max_steps=args.max_steps,
                                  per_device_train_batch_size=16, learning_rate=3e-3, report_to=[],
                                  use_cpu=True, disable_tqdm=True, log_level="error"),
        train_dataset=train.map(encode, batched=True), eval_dataset=evaluation.map(encode, batched=True),
        processing_class=tokenizer, compute_metrics=accuracy,
    )
    callback = FineSelectionCallback(state, name)  # the one added line...
    trainer.add_callback(callback)  # ...and its registration
    trainer.train()
    stopped = next((f"stopped at step {s}: {v.reason}" for s, v in callback.verdicts if not v.go_on),
                   "trained to the end")
    return f"{name}: {stopped}; curve {callback.curve}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--state-dir", default=None)
    parser.add_argument("--mode", choices=["sync", "async"], default="async")
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--stage-steps", type=int, default=10)
    parser.add_argument("--only", default=None, help="train this one model (how --mode sync starts each run)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hf-twophase-example-"))
    models = args.models or demo_models(work)
    state_dir = Path(args.state_dir or work / "state")
    # --- the selection: one shared scheduler for every Trainer (kept in a folder, so other processes can join)
    state = directory_scheduler(state_dir, SuccessiveHalving(StageSchedule(args.stage_steps)), models,
                                budget=args.max_steps, mode=args.mode)
    if args.only is not None:
        print(fine_tune(args.only, state, args, work), flush=True)
    elif args.mode == "async":  # one run after another, in this process
        for name in models:
            print(fine_tune(name, state, args, work), flush=True)
    else:  # every run at the same time, each its own process, all sharing the state folder
        common = ["--models", *models, "--state-dir", str(state_dir), "--mode", "sync", "--max-steps",
                  str(args.max_steps), "--stage-steps", str(args.stage_steps)]
        runs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), *common, "--only", name])
                for name in models]
        codes = [run.wait() for run in runs]
        if any(codes):
            sys.exit(f"{sum(c != 0 for c in codes)} run(s) failed")


if __name__ == "__main__":
    main()
