"""Why stage checkpoints are written in place when training runs on the CPU: a writer thread beside it costs more.

A small embedding model (the shape of the tiny overhead benchmark's candidates) trains a fixed number of AdamW steps
on the CPU, alone, then while a second thread writes 16 MB files without a pause (raw writes, `torch.save`,
safetensors), first with torch's default intra-op threads, then with one thread fewer. The writer releases the GIL
for its raw writes, so what it takes from training is the cores: the intra-op threads meet at a barrier after every
parallel op, and one of them descheduled by the writer holds up the rest.

    python benchmarks/writer_contention.py [--steps 150] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time

import torch
from safetensors.torch import save_file


def _writer(kind: str, folder: str, tensors: dict, stop: threading.Event, count: list) -> None:
    i = 0
    while not stop.is_set():
        path = os.path.join(folder, f"{kind}{i}")
        if kind == "torch.save":
            torch.save(tensors, path)
        elif kind == "safetensors":
            save_file(tensors, path)
        else:
            with open(path, "wb") as f:
                for t in tensors.values():
                    f.write(t.numpy().data)
        if i:  # the previous checkpoint is removed once the next one is whole, as the coordinator does
            os.unlink(os.path.join(folder, f"{kind}{i - 1}"))
        i += 1
    count.append(i)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(30522, 64), torch.nn.Linear(64, 64), torch.nn.Linear(64, 2))
    optimizer = torch.optim.AdamW(model.parameters())
    tensors = {f"t{i}": torch.randn(1 << 20) for i in range(4)}  # 16 MB: the Adam moments of a 2M-parameter model

    def train() -> float:
        start = time.perf_counter()
        for _ in range(args.steps):
            model(torch.randint(0, 30522, (16, 32))).sum().backward()
            optimizer.step()
            optimizer.zero_grad()
        return time.perf_counter() - start

    default = torch.get_num_threads()
    folder = tempfile.mkdtemp()
    print(f"{os.cpu_count()} cores; {args.steps} training steps per row")
    for threads in sorted({default, max(1, default - 1)}, reverse=True):
        torch.set_num_threads(threads)
        train()  # warm-up
        for _ in range(args.repeats):
            row = [f"alone {train():.2f} s"]
            for kind in ("raw writes", "torch.save", "safetensors"):
                stop, count = threading.Event(), []
                thread = threading.Thread(target=_writer, args=(kind, folder, tensors, stop, count))
                thread.start()
                seconds = train()
                stop.set()
                thread.join()
                row.append(f"beside {kind} {seconds:.2f} s ({count[0]} files)")
            print(f"torch threads {threads}: " + ", ".join(row))
    torch.set_num_threads(default)
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
