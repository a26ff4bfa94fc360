"""Run real MXNet 1.9.1 in its side venv, in a subprocess, as the oracle for differential tests.

MXNet 1.9.1 needs ``numpy<1.24`` and cannot share this interpreter, so each test writes a small
script for the MXNet side (``tests/mxnet_side/``), hands it arrays in an ``.npz`` file and reads the
results back from another. The venv is found at ``$ADAMOP_MXNET_PYTHON`` or ``<repo>/.mxnet``;
``.ci/run`` creates it. Without it the tests skip with the reason, except in CI (``CI=true``), where
a missing oracle is a failure.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SIDE = Path(__file__).resolve().parent / "mxnet_side"


def mxnet_python() -> str | None:
    """Path of a Python interpreter that imports mxnet 1.9.1, or None."""
    candidates = [os.environ.get("ADAMOP_MXNET_PYTHON"), str(REPO / ".mxnet" / "bin" / "python")]
    for c in candidates:
        if c and Path(c).exists():
            return c
    return None


def require_mxnet() -> str:
    """The MXNet interpreter, or skip (fail in CI, where the oracle must run)."""
    py = mxnet_python()
    if py is None:
        reason = ("MXNet 1.9.1 side venv not found: python3 -m venv .mxnet && "
                  ".mxnet/bin/pip install mxnet==1.9.1 'numpy<1.24' (or set ADAMOP_MXNET_PYTHON)")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return py


def run_mxnet(script: str, arrays: Mapping[str, np.ndarray], meta: Any = None,
              timeout: float = 600) -> tuple[dict[str, np.ndarray], Any]:
    """Run ``tests/mxnet_side/<script>`` under MXNet with ``arrays`` and JSON ``meta``.

    The script is called as ``python script in.npz out.npz``; ``in.npz`` holds the arrays plus
    ``__meta__`` (JSON text). It writes ``out.npz`` (arrays plus an optional ``__meta__``).
    Returns (arrays, meta) read back.
    """
    py = require_mxnet()
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, __meta__=np.array(json.dumps(meta)), **arrays)
        env = dict(os.environ, MXNET_STORAGE_FALLBACK_LOG_VERBOSE="0", OMP_NUM_THREADS="1")
        proc = subprocess.run([py, str(SIDE / script), str(src), str(dst)], env=env,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"MXNet side script {script} failed:\n{proc.stderr[-4000:]}")
        with np.load(dst, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files if k != "__meta__"}
            out_meta = json.loads(str(z["__meta__"])) if "__meta__" in z.files else None
    return out, out_meta


if __name__ == "__main__":   # `python tests/mxnet_oracle.py` says whether the oracle is usable
    print(mxnet_python() or "not found")
    sys.exit(0 if mxnet_python() else 1)
