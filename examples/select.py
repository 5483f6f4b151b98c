"""Choose and fine-tune the best model for your classification dataset.

    python examples/select.py                                  # the embedded offline default (MNIST, image models)
    python examples/select.py --task text-classification       # the text default (Rotten Tomatoes snippets)
    accelerate launch --multi_gpu --num_processes 4 examples/select.py --dataset my_data.csv --matrix my-org/matrix
    torchrun --nproc_per_node 4 examples/select.py --dataset my_data.csv --matrix my-org/perf-matrix

The same job as `hf-twophase select`; `--help` lists every option.
"""

import os
import sys

# This file is named like the standard library's `select` module, and Python puts the script's folder first on the
# import path: take it off, or `import subprocess` (deep inside every library) would import this file instead.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from hf_twophase.cli.select import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
