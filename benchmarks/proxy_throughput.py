"""Throughput of LEEPScorer against a bare batched forward pass of the same model, batch size and samples.

The bare pass runs the model alone on batches that are already encoded and on the device (inference
mode, the same autocast). The scorer runs end to end from a `datasets.Dataset`: stratified sampling,
encoding in DataLoader workers (tokenisation with dynamic padding; image resize and normalisation on the
accelerator when there is one), host-to-device copies, the forward pass and both LEEP passes. Weights are
random (throughput does not depend on them), so no download is needed.

    python benchmarks/proxy_throughput.py --model bert-base --samples 65536 --batch-size 256 --device cuda
    python benchmarks/proxy_throughput.py --model vit-base --samples 32768 --batch-size 256 --device cuda
    python benchmarks/proxy_throughput.py --model minilm --samples 2048 --batch-size 64 --device cpu
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import nullcontext

import datasets
import numpy as np
import torch
import transformers as tf

from hf_twophase.proxy import LEEPScorer


def text_dataset(tokenizer, n: int, seq_len: int, folder: str, seed: int = 0) -> datasets.Dataset:
    """Texts of about `seq_len` word-piece tokens drawn from the vocabulary, with 4 balanced labels.

    Written through `from_generator` (a file-backed table), as a real dataset on disk would be.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    vocab = np.array([w for w in tokenizer.get_vocab() if w.isalpha() and len(w) > 2][:20000])
    words = rng.integers(0, len(vocab), size=(n, seq_len - 2))
    texts = [" ".join(vocab[row]) for row in words]
    path = f"{folder}/texts.parquet"
    pd.DataFrame({"text": texts, "label": np.arange(n) % 4}).to_parquet(path)
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(num_classes=4)})
    return datasets.load_dataset("parquet", data_files=path, split="train", features=features, cache_dir=folder)


def image_dataset(n: int, side: int, folder: str, seed: int = 0) -> datasets.Dataset:
    """PNG-encoded RGB images of `side` px in an `Image` column (resized by the model's own preprocessing)."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    tiles = rng.integers(0, 255, size=(64, side, side, 3), dtype=np.uint8)

    def rows():
        encoded = []
        for tile in tiles:  # 64 distinct images, reused: encoding is not what we measure
            buf = io.BytesIO()
            Image.fromarray(tile).save(buf, format="PNG")
            encoded.append(buf.getvalue())
        for i in range(n):
            yield {"image": {"bytes": encoded[i % 64], "path": None}, "label": i % 10}

    return datasets.Dataset.from_generator(rows, features=features, cache_dir=folder)


def build(name: str, tokenizer_path: str | None):
    if name in ("bert-base", "tiny-bert", "minilm"):
        tok = tf.AutoTokenizer.from_pretrained(tokenizer_path)
        if name == "minilm":
            config = tf.AutoConfig.from_pretrained(tokenizer_path, num_labels=4)
        elif name == "tiny-bert":
            config = tf.BertConfig(vocab_size=tok.vocab_size, hidden_size=64, num_hidden_layers=2,
                                   num_attention_heads=2, intermediate_size=128, num_labels=4)
        else:
            config = tf.BertConfig(vocab_size=tok.vocab_size, num_labels=4)  # bert-base shape
        return tf.BertForSequenceClassification(config), {"tokenizer": tok}, "text"
    if name == "vit-base":
        config = tf.ViTConfig(num_labels=1000)  # ViT-B/16 at 224 px
        proc = tf.ViTImageProcessor(size={"height": 224, "width": 224})
        return tf.ViTForImageClassification(config), {"image_processor": proc}, "image"
    if name == "efficientnet-lite0":
        from hf_twophase.inputs.packaged import efficientnet_lite

        return efficientnet_lite(0, pretrained=False), {}, "image"
    raise SystemExit(f"unknown model {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm",
                        choices=["bert-base", "tiny-bert", "minilm", "vit-base", "efficientnet-lite0"])
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the packaged MiniLM's)")
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--image-side", type=int, default=96, help="stored image size (resized by the model)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--num-workers", type=int, default=None)
    parser.add_argument("--device-preprocess", default="auto", choices=["auto", "yes", "no"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    if args.tokenizer is None and args.model in ("bert-base", "tiny-bert", "minilm"):
        from hf_twophase.inputs.packaged import minilm_path

        args.tokenizer = str(minilm_path())
    torch.manual_seed(0)
    model, extras, modality = build(args.model, args.tokenizer)
    device = torch.device(args.device)
    model.eval().to(device)
    scorer = LEEPScorer(batch_size=args.batch_size, max_samples=None, use_cache=False, progress=False,
                        device=args.device, num_workers=args.num_workers, device_preprocess=args.device_preprocess)
    autocast = scorer._autocast(device)
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        if modality == "text":
            ds = text_dataset(extras["tokenizer"], args.samples, args.seq_len, folder)
            enc = extras["tokenizer"](ds["text"][: args.batch_size], padding="max_length", truncation=True,
                                      max_length=args.seq_len, return_tensors="pt")
            bare_batch = {k: v.to(device) for k, v in enc.items()}
        else:
            ds = image_dataset(args.samples, args.image_side, folder)
            bare_batch = {"pixel_values": torch.randn(args.batch_size, 3, 224, 224, device=device)}
        build_s = time.perf_counter() - t0

        def bare(n_batches: int) -> float:
            sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
            sync()
            start = time.perf_counter()
            with torch.inference_mode(), (autocast if device.type == "cuda" else nullcontext()):
                for _ in range(n_batches):
                    out = model(**bare_batch) if modality == "text" or hasattr(model, "config") else model(
                        bare_batch["pixel_values"])
                    del out
            sync()
            return time.perf_counter() - start

        n_batches = -(-args.samples // args.batch_size)
        bare(min(3, n_batches))  # warm-up (kernels, allocator)
        bare_s = bare(n_batches)
        warm = LEEPScorer(batch_size=args.batch_size, max_samples=args.batch_size * 2, use_cache=False,
                          progress=False, device=args.device, num_workers=0, device_preprocess=args.device_preprocess)
        warm.score(model, ds, **extras)
        result = scorer.score(model, ds, **extras)
    out = {
        "model": args.model, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "samples": args.samples, "batch_size": args.batch_size,
        "seq_len": args.seq_len if modality == "text" else None,
        "bare_samples_per_s": n_batches * args.batch_size / bare_s,
        "scorer_samples_per_s": result.samples_per_second, "leep": result.score, "dataset_build_s": build_s,
    }
    out["ratio"] = out["scorer_samples_per_s"] / out["bare_samples_per_s"]
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['model']} on {out['device']}, batch {args.batch_size}, {args.samples} samples: bare forward "
              f"{out['bare_samples_per_s']:.0f} samples/s, LEEPScorer {out['scorer_samples_per_s']:.0f} samples/s "
              f"({100 * out['ratio']:.0f}%)")


if __name__ == "__main__":
    main()
