"""Concurrency: many threads calling adamop at once, on every CPU backend and every Numba
threading layer that can be loaded here, give results bitwise equal to a sequential run.

The work (``tests/threadwork.py``): sixteen independent jobs (dense NumPy and torch arrays of each
float dtype, strided views, lazy and standard row_sparse updates, ``adam_update_multi`` and a
symbolic executor), each on its own arrays, on eight threads at once. The README's "Threads"
section says what may be shared. A Numba threading layer is chosen per process
(``NUMBA_THREADING_LAYER``), so each layer runs in a subprocess.

Budget: about 15 s in process plus about 10 s per threading layer.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import threadwork

from adamop import dispatch

TESTS = Path(__file__).resolve().parent
THREADS = 8


def test_many_threads_match_a_sequential_run(backend):
    want = threadwork.sequential(backend)
    got = threadwork.threaded(backend, THREADS)
    assert threadwork.differing(got, want) == []


def _numba_reason() -> str | None:
    spec = next(s for s in dispatch.registry() if s.name == "numba")
    return spec.unavailable_reason()


# The workqueue layer is what Numba picks where neither OpenMP nor TBB can be loaded. It is not
# thread-safe: two threads launching parallel kernels at once abort the process ("Concurrent
# access has been detected"), which the numba backend prevents by launching one kernel at a time.
@pytest.mark.parametrize("layer", ["omp", "tbb", "workqueue"])
def test_numba_threading_layer_in_a_subprocess(layer):
    reason = _numba_reason()
    if reason is not None:
        pytest.skip(f"backend numba unavailable: {reason}")
    env = dict(os.environ, NUMBA_THREADING_LAYER=layer)
    # pip's tbb puts libtbb in <prefix>/lib, which the loader does not search by itself
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (os.path.join(sys.prefix, "lib"), os.environ.get("LD_LIBRARY_PATH")) if p)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, str(TESTS / "threadwork.py"), "numba", str(THREADS)],
                          env=env, capture_output=True, text=True, timeout=600)
    if "No threading layer could be loaded" in proc.stderr:
        pytest.skip(f"Numba's {layer} threading layer cannot be loaded here "
                    f"({'pip install tbb' if layer == 'tbb' else 'see numba -s'})")
    assert proc.returncode == 0, (f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n"
                                  f"{proc.stderr[-4000:]}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info == {"differing_jobs": [], "threading_layer": layer}
