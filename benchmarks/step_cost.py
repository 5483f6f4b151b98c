"""What one training step and one evaluation cost for the embedded EfficientNets, at their own resolution and at the
resolution the embedded repository uses (64 px), on this machine's CPU.

    python benchmarks/step_cost.py [--repeats 3]

A training step is forward, backward and an AdamW update on a batch of 16; an evaluation is a forward pass over 64
images without gradients. The first step is a warm-up and is not timed.
"""

from __future__ import annotations

import argparse
import time

import torch

from hf_twophase.inputs.packaged import efficientnet_lite

CASES = [(0, 224), (0, 64), (2, 260), (2, 64)]  # (variant, pixels): Lite0 and Lite2 at their own size and at 64 px


def measure(variant: int, pixels: int, repeats: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = efficientnet_lite(variant, num_classes=10)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    x, y = torch.randn(16, 3, pixels, pixels), torch.randint(0, 10, (16,))
    seconds = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad()
        if i:
            seconds.append(time.perf_counter() - start)
    model.eval()
    with torch.no_grad():
        batch = torch.randn(64, 3, pixels, pixels)
        model(batch)
        start = time.perf_counter()
        model(batch)
        evaluation = time.perf_counter() - start
    return sum(seconds) / len(seconds), evaluation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}\n")
    print("| model | pixels | training step (batch 16) | evaluation (64 images) |")
    print("|---|---|---|---|")
    for variant, pixels in CASES:
        step, evaluation = measure(variant, pixels, args.repeats)
        print(f"| EfficientNet-Lite{variant} | {pixels} | {step:.2f} s | {evaluation:.2f} s |")


if __name__ == "__main__":
    main()
