"""Tiny text candidates and data for the coordinator tests (also run in a subprocess by the resume test)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers as tf

from hf_twophase.inputs.packaged import minilm_path

HIDDEN = (32, 8, 16, 24)


def make_data(n: int, seed: int) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    pos, neg = ["good", "great", "fine", "superb"], ["bad", "awful", "dull", "poor"]
    labels = rng.integers(0, 2, n)
    texts = [" ".join(rng.choice(pos if y else neg, 3)) + " " + " ".join(rng.choice(pos + neg, 2)) for y in labels]
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(num_classes=2)})
    if os.environ.get("HF_TWOPHASE_FILE_BACKED"):  # some datasets/pyarrow/dill trios cannot hash in-memory tables
        import tempfile

        import pandas as pd

        folder = tempfile.mkdtemp()
        pd.DataFrame({"text": texts, "label": labels}).to_parquet(f"{folder}/data.parquet")
        return datasets.load_dataset("parquet", data_files=f"{folder}/data.parquet", split="train",
                                     features=features, cache_dir=folder)
    return datasets.Dataset.from_dict({"text": texts, "label": labels.tolist()}, features=features)


def make_candidates(folder: Path, hidden=HIDDEN, layers: int = 1, num_labels: int = 2) -> list[str]:
    tok = tf.AutoTokenizer.from_pretrained(os.environ.get("HF_TWOPHASE_TEST_TOKENIZER") or minilm_path())
    paths = []
    for i, h in enumerate(hidden):
        path = folder / (f"cand{i}-h{h}-l{layers}" + (f"-c{num_labels}" if num_labels != 2 else ""))
        if not path.exists():
            torch.manual_seed(i)
            config = tf.BertConfig(vocab_size=tok.vocab_size, hidden_size=h, num_hidden_layers=layers,
                                   num_attention_heads=2, intermediate_size=2 * h, num_labels=num_labels)
            tf.BertForSequenceClassification(config).save_pretrained(path)
            tok.save_pretrained(path)
        paths.append(str(path))
    return paths


def training_args(output_dir: Path, max_steps: int = 40, **kw) -> tf.TrainingArguments:
    settings = {"use_cpu": True, "per_device_train_batch_size": 16, "per_device_eval_batch_size": 64,
                "learning_rate": 3e-3, "seed": 0, "report_to": [], "disable_tqdm": True, **kw}
    return tf.TrainingArguments(output_dir=str(output_dir), max_steps=max_steps, **settings)


if __name__ == "__main__":  # the process the resume test kills mid-selection
    from hf_twophase.trainer.config import SelectionConfig
    from hf_twophase.trainer.coordinator import SelectionCoordinator

    folder, out = Path(sys.argv[1]), Path(sys.argv[2])
    background = os.environ.get("HF_TWOPHASE_TEST_BACKGROUND_CHECKPOINTS") == "1"  # else the default (in place on CPU)
    config = SelectionConfig(stage_steps=10, background_checkpoints=background or None)
    coordinator = SelectionCoordinator(make_candidates(folder), make_data(256, 0), make_data(64, 1),
                                       training_args(out), config)
    coordinator.run(resume=len(sys.argv) > 3)
