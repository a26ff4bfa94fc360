#!/usr/bin/env bash
# The GPU half of the checks, for a machine with a CUDA device and torch + triton installed (CI
# has no GPU, so its run skips these): the GPU tests with their skip reasons shown, then
# `adamop bench --device cuda`, whose tables go to $OUT (default: benchmarks/gpu). Extra
# arguments go to the benchmark (e.g. --quick, --cases dense).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-benchmarks/gpu}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"   # no install: use the checkout as it is
"$PYTHON" -c 'import torch, triton; assert torch.cuda.is_available(), "no CUDA device"'
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$PYTHON" -m pytest -q -rs -m gpu tests/test_gpu.py
mkdir -p "$OUT"
plot=()
"$PYTHON" -c 'import matplotlib' 2>/dev/null && plot=(--plot "$OUT/dense_gbps.png")
"$PYTHON" -m adamop bench --device cuda --csv "$OUT/results.csv" --markdown "$OUT/results.md" \
    "${plot[@]}" "$@"
