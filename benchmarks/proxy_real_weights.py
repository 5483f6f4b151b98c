"""Real pre-trained weights against random weights of the same architecture, on real packaged data.

LEEP of the packaged ImageNet EfficientNet-Lite0/1/2 on scikit-learn's digits, and the feature path
(LogME) of all-MiniLM-L6-v2 on Rotten Tomatoes snippets; each next to the same model with random weights.

    python benchmarks/proxy_real_weights.py [--image-samples 500] [--text-samples 2000]
"""

from __future__ import annotations

import argparse

import torch
import transformers as tf

from hf_twophase.inputs.packaged import digits_dataset, efficientnet_lite, minilm_path, rotten_tomatoes_snippets
from hf_twophase.proxy import LEEPScorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-samples", type=int, default=500)
    parser.add_argument("--text-samples", type=int, default=2000)
    args = parser.parse_args()
    print("| model | weights | data | method (path) | score | samples | seconds | samples/s |")
    print("|---|---|---|---|---|---|---|---|")

    def row(name, weights, data, r):
        print(f"| {name} | {weights} | {data} | {r.method} ({r.path}) | {r.score:.4f} | {r.n_samples} | "
              f"{r.seconds:.1f} | {r.samples_per_second:.0f} |")

    digits = digits_dataset()
    scorer = LEEPScorer(progress=False, use_cache=False, max_samples=args.image_samples, batch_size=50)
    for variant in (0, 1, 2):
        torch.manual_seed(0)
        for pretrained in (True, False):
            r = scorer.score(efficientnet_lite(variant, pretrained=pretrained), digits)
            row(f"EfficientNet-Lite{variant}", "ImageNet" if pretrained else "random", "digits (10 classes)", r)
    snippets = rotten_tomatoes_snippets()
    scorer = LEEPScorer(progress=False, use_cache=False, max_samples=args.text_samples, batch_size=64)
    row("all-MiniLM-L6-v2", "pre-trained", "Rotten Tomatoes (2 classes)", scorer.score(str(minilm_path()), snippets))
    torch.manual_seed(0)
    random_model = tf.AutoModel.from_config(tf.AutoConfig.from_pretrained(minilm_path()))
    r = scorer.score(random_model, snippets, tokenizer=tf.AutoTokenizer.from_pretrained(minilm_path()))
    row("all-MiniLM-L6-v2 shape", "random", "Rotten Tomatoes (2 classes)", r)


if __name__ == "__main__":
    main()
