#!/usr/bin/env bash
# Coordinator overhead on a GPU machine (carried wheels in .whl/, a BERT tokenizer in .bench_assets/).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export HF_TWOPHASE_TEST_TOKENIZER=.bench_assets/minilm_tokenizer HF_TWOPHASE_FILE_BACKED=1
nvidia-smi --query-gpu=name --format=csv,noheader
python3 benchmarks/coordinator_overhead.py --device cuda --layers 4 --batch-size 64 --budget 200 --stage 50 \
  --repeats 3 2>&1 | grep -E "^repeat|^median|^paired|Error|error" | tail -8
# the default stage checkpoints, written behind the training (auto, on a GPU) and in place
for mode in auto off; do
  python3 benchmarks/coordinator_overhead.py --device cuda --layers 4 --batch-size 64 --budget 200 --stage 50 \
    --repeats 3 --save-stages --background-checkpoints $mode 2>&1 | grep -E "^median|^paired|Error|error" | tail -4
done
# the coordinator's own work once plain Trainers write the same checkpoints
python3 benchmarks/coordinator_overhead.py --device cuda --layers 4 --batch-size 64 --budget 200 --stage 50 \
  --repeats 3 --save-stages --plain-saves 2>&1 | grep -E "^median|^paired|Error|error" | tail -4
