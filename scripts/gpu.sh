#!/usr/bin/env bash
# The GPU run as one prepared command, for a machine with a CUDA device (borrowed rarely, for
# minutes): the versions and the device, then tests/test_gpu*.py, then `adamop bench --device
# cuda`. Every step, every test and every benchmark case has its own time limit, and a failed
# step does not stop the next one. Nothing is installed: adamop runs from src/ as it is.
#
#   OUT=/some/dir bash scripts/gpu.sh            # the run: at most GPU_TOTAL_S (450 s) + 10 s
#   ADAMOP_GPU_REHEARSAL=1 bash scripts/gpu.sh   # the same steps here, without a GPU: the GPU
#                                                # tests skip, the bench runs on CPU tensors
#
# Writes to $OUT (default benchmarks/gpu), each file as soon as it has something: gpu.log (all
# output), pytest.xml (JUnit), results.md, results.csv, dense_gbps.png.
# To rerun a part: GPU_STEPS="tests" or "bench"; GPU_TESTS (pytest arguments, default
# tests/test_gpu*.py); GPU_CASES (benchmark case patterns, default all);
# GPU_TEST_WORKERS (pytest processes, default 4; 0: one, without xdist). Limits in seconds:
# GPU_TOTAL_S (the run, 450), GPU_TEST_S (pytest, 180), GPU_TEST_EACH_S (one test, 90),
# GPU_CASE_S (one benchmark case, 100); the benchmark gets what is left.
# Exit code 0 if every step passed, else 1.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-benchmarks/gpu}
REHEARSAL=${ADAMOP_GPU_REHEARSAL:-0}
STEPS=${GPU_STEPS:-tests bench}
TOTAL_S=${GPU_TOTAL_S:-450}
TEST_S=${GPU_TEST_S:-180}
TEST_EACH_S=${GPU_TEST_EACH_S:-90}
TEST_WORKERS=${GPU_TEST_WORKERS:-4}
CASE_S=${GPU_CASE_S:-100}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
failed=()

# step NAME LIMIT_S: run the function NAME under a time limit (at most what is left of
# GPU_TOTAL_S; 'rest': all of it), say how it ended, go on
step() {
    local name=$1 limit=$2 t0=$SECONDS rc left=$((TOTAL_S - SECONDS))
    if [ "$limit" = rest ] || [ "$limit" -gt "$left" ]; then limit=$left; fi
    if [ "$left" -lt 20 ]; then
        echo "=== $name: NOT RUN, ${left} s left of GPU_TOTAL_S=${TOTAL_S}"
        failed+=("$name")
        return 0
    fi
    echo "=== $name: limit ${limit} s, started $(date -u +%H:%M:%S)"
    STEP_S=$limit timeout -k 10 "$limit" bash -c "$name"
    rc=$?
    case $rc in
        0) echo "=== $name: ok after $((SECONDS - t0)) s" ;;
        124|137) echo "=== $name: TIMED OUT after $((SECONDS - t0)) s"; failed+=("$name") ;;
        *) echo "=== $name: FAILED (exit code $rc) after $((SECONDS - t0)) s"; failed+=("$name") ;;
    esac
    return 0
}

versions() {
    "$PYTHON" - <<'EOF'
import importlib, platform, sys
print("python", platform.python_version(), sys.executable)
for name in ("torch", "triton", "numpy", "numba", "jax", "optax", "pytest", "xdist",
             "pytest_timeout", "matplotlib", "mxnet"):
    try:
        print(f"{name:15}", getattr(importlib.import_module(name), "__version__", "present"))
    except Exception as exc:
        print(f"{name:15} not importable ({type(exc).__name__}: {exc})")
import torch
print("cuda available", torch.cuda.is_available(), "| built for CUDA", torch.version.cuda)
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"device {i}: {p.name}, {p.total_memory / 2**30:.1f} GiB, sm_{p.major}{p.minor}, "
          f"{p.multi_processor_count} SMs")
EOF
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory,power.limit \
        --format=csv 2>&1 || echo "nvidia-smi: not available"
    echo "source: $(git rev-parse --short HEAD 2>/dev/null || echo 'no git checkout'), digest" \
         "$(find src tests scripts -name '*.py' -o -name '*.sh' | sort | xargs cat | sha256sum)"
    "$PYTHON" -m adamop info
}

tests() {
    # -v: each test's result is in the log as it ends, even if the step is cut short
    local args=(-p no:cacheprovider -v -rfEs --durations=15 --junitxml="$OUT/pytest.xml")
    local method=signal
    if [ "$TEST_WORKERS" -gt 0 ] && "$PYTHON" -c 'import xdist' 2>/dev/null; then
        # workers: a test that hangs or crashes costs its worker, which xdist replaces
        args+=(-n "$TEST_WORKERS")
        method=thread   # ends a worker stuck in a CUDA call, where a signal would wait
    fi
    if "$PYTHON" -c 'import pytest_timeout' 2>/dev/null; then
        args+=(--timeout "$TEST_EACH_S" -o timeout_method="$method")
    fi
    # shellcheck disable=SC2086  # GPU_TESTS is a list of pytest arguments
    "$PYTHON" -m pytest "${args[@]}" ${GPU_TESTS:-tests/test_gpu.py tests/test_gpu_async.py tests/test_gpu_optimizer.py tests/test_gpu_ckpt.py tests/test_gpu_torch_optim.py}
}

bench() {
    local args=(--device cuda --case-timeout "$CASE_S" --budget "$((STEP_S - 15))"
                --csv "$OUT/results.csv" --markdown "$OUT/results.md")
    [ "$REHEARSAL" = 1 ] && args+=(--rehearse)
    "$PYTHON" -c 'import matplotlib' 2>/dev/null && args+=(--plot "$OUT/dense_gbps.png")
    # shellcheck disable=SC2086  # GPU_CASES is a list of patterns
    [ -n "${GPU_CASES:-}" ] && args+=(--cases ${GPU_CASES})
    "$PYTHON" -m adamop bench "${args[@]}"
}

main() {
    echo "=== adamop GPU run, $(date -u +%Y-%m-%dT%H:%M:%SZ), rehearsal=$REHEARSAL, steps: $STEPS"
    step versions 60
    [[ " $STEPS " == *" tests "* ]] && step tests "$TEST_S"
    [[ " $STEPS " == *" bench "* ]] && step bench rest
    echo "=== done after $SECONDS s; failed steps: ${failed[*]:-none}"
    ls -l "$OUT"
    [ ${#failed[@]} -eq 0 ]
}

export -f versions tests bench
export PYTHON OUT REHEARSAL TEST_EACH_S TEST_WORKERS CASE_S
main 2>&1 | tee "$OUT/gpu.log"
exit "${PIPESTATUS[0]}"
