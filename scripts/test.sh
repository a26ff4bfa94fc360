#!/usr/bin/env bash
# Installs adamop with its test dependencies into .venv and MXNet 1.9.1 (the oracle of the
# differential tests, which needs numpy<1.24) into .mxnet, then runs the test suite.
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

if ! .mxnet/bin/python -c 'import mxnet' >/dev/null 2>&1; then
    rm -rf .mxnet
    "$PYTHON" -m venv .mxnet
    .mxnet/bin/python -m pip install -q 'mxnet==1.9.1' 'numpy<1.24'
fi

exec .venv/bin/python -m pytest "$@"
