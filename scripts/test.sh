#!/usr/bin/env bash
# Installs adamop with its test dependencies into .venv, MXNet 1.9.1 (the oracle of the
# differential tests, which needs numpy<1.24) into .mxnet and Triton 3.6 (the GPU machine's, for
# the compile-only PTX checks) into .triton36, then runs the test suite.
# Extra arguments go to pytest. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q -e '.[test]' 'torch==2.13.0'
# Triton's CPU interpreter checks the GPU kernels' arithmetic where there is no GPU; without a
# wheel for this platform those tests skip, saying why.
.venv/bin/python -m pip install -q 'triton==3.9.0' \
    || echo "triton could not be installed: the Triton interpreter tests will skip"
# Triton 3.6, the GPU machine's version, in a side venv of its own: tests/test_triton_ptx.py
# compiles the kernels with it for sm_90 (no GPU needed) and checks the PTX.
if ! .triton36/bin/python -c 'import triton; assert triton.__version__ == "3.6.0"' 2>/dev/null
then
    rm -rf .triton36
    "$PYTHON" -m venv .triton36
    .triton36/bin/python -m pip install -q 'triton==3.6.0' \
        || echo "triton 3.6.0 could not be installed: its PTX checks skip here and fail in CI"
fi

if ! .mxnet/bin/python -c 'import mxnet' >/dev/null 2>&1; then
    rm -rf .mxnet
    "$PYTHON" -m venv .mxnet
    .mxnet/bin/python -m pip install -q 'mxnet==1.9.1' 'numpy<1.24'
fi

exec .venv/bin/python -m pytest "$@"
