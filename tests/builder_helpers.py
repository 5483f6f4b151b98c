"""Two synthetic text benchmarks and tiny models for the matrix-builder tests (run in a subprocess too)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hf_twophase.matrix_build.benchmarks import BenchmarkSpec  # noqa: E402
from hf_twophase.matrix_build.builder import BuildConfig, build_matrix  # noqa: E402
from tests.coordinator_helpers import make_candidates, make_data  # noqa: E402

BENCHMARKS = [
    BenchmarkSpec(f"syn-{i}", "text", text="text", loader=lambda i=i: make_data(300, 10 + i), validation_split=None,
                  test_split=None, train_subset=160, eval_subset=40)
    for i in range(2)
]
CONFIG = BuildConfig(epochs=2, learning_rate=3e-3, evals_per_epoch=2, use_cpu=True)

if __name__ == "__main__":  # python tests/builder_helpers.py MODELS_DIR OUT [I/N]
    shard = tuple(int(x) for x in sys.argv[3].split("/")) if len(sys.argv) > 3 else None
    build_matrix(make_candidates(Path(sys.argv[1]), hidden=(32, 8, 16)), BENCHMARKS, Path(sys.argv[2]), CONFIG,
                 progress=False, shard=shard)
