#!/usr/bin/env bash
# LEEPScorer vs bare forward on a GPU machine (the figures in docs/benchmarks.md).
# Expects wheels for what the machine lacks in .whl/ and a BERT tokenizer folder in .bench_assets/.
set -uo pipefail
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
else
  export PYTHONPATH=$PWD
fi
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, transformers, datasets; print('torch', torch.__version__, 'transformers', transformers.__version__, 'datasets', datasets.__version__)"
TOK=${TOK:-.bench_assets/minilm_tokenizer}
python3 benchmarks/proxy_throughput.py --model bert-base --tokenizer "$TOK" --samples 65536 --batch-size 256 \
  --seq-len 128 --device cuda --num-workers 8 --json 2>"$OUT/bert.err" | tee "$OUT/bert.json"
python3 benchmarks/proxy_throughput.py --model vit-base --samples 32768 --batch-size 256 --image-side 96 \
  --device cuda --num-workers 8 --json 2>"$OUT/vit.err" | tee "$OUT/vit.json"
tail -n 3 "$OUT/bert.err" "$OUT/vit.err"
