"""Scale: one update of more than 2**31 elements on the CPU (float16, so four arrays fit in about
16 GiB), bit-identical to the reference where the index passes 2**31, and with no hidden copy of
a weight-sized array: the peak resident memory of the update itself is measured.

The work runs in a subprocess (``python tests/test_scale.py``), so that its peak memory
(``ru_maxrss``) is its own and the 16 GiB are returned when it ends. Each input is a fixed
pattern of 1,000,003 values repeated, so any element's inputs are known without storing them; the
reference (``backend="numpy"``, checked against MXNet elsewhere) recomputes the elements around
0, 2**31 and the end from those. The row_sparse kernels index rows times row length: a lazy and a
standard update over the same memory seen as a (2**25 + 2**14, 64) table check rows past 2**31
elements too. The fast backend runs the updates; the reference is a definition that makes
temporaries, so its memory is not measured.

Cost: about a minute and 16.1 GiB of memory, so it is marked slow; it skips (saying why) where
less memory is available.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

N = 2**31 + 2**20                      # float16 elements per array: 4 GiB + 2 MiB
ROW = 64                               # row length of the table view
PERIOD = 1_000_003                     # the input patterns repeat with this period
NEEDED = 4 * 2 * N + 2 * 2**30         # the four arrays, plus interpreter, Numba and margin
SLACK = 256 * 2**20                    # an update may add this to the peak (a copy adds 4 GiB)
KW = dict(lr=0.01, wd=1e-3, rescale_grad=0.5, clip_gradient=1.0)


def _available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


@pytest.mark.slow
def test_update_beyond_2_31_elements_without_hidden_copies():
    pytest.importorskip("numba")
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/meminfo and ru_maxrss in kilobytes (Linux)")
    if _available() < NEEDED:
        pytest.skip(f"needs {NEEDED / 2**30:.1f} GiB of available memory, "
                    f"{_available() / 2**30:.1f} GiB available")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(Path(__file__).parent), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print("peak growth in bytes:", {k: r["peak_growth"] for k, r in report.items()})
    for step in ("dense", "lazy", "std"):
        assert report[step]["mismatch"] is None, (step, report[step]["mismatch"])
        assert report[step]["peak_growth"] < SLACK, (step, report)


# ---- the subprocess ----------------------------------------------------------------------------
def _pattern(seed: int, positive: bool = False) -> np.ndarray:
    p = np.random.default_rng(seed).standard_normal(PERIOD).astype(np.float16)
    return np.abs(p) if positive else p


PATTERNS = {"w": (1, False), "g": (2, False), "m": (3, False), "v": (4, True)}


def _filled(name: str) -> np.ndarray:
    """An N-element array holding its pattern repeated (copied in blocks: no N-sized temporary)."""
    pattern = _pattern(*PATTERNS[name])
    out = np.empty(N, np.float16)
    block = np.tile(pattern, 64)
    for start in range(0, N, block.shape[0]):
        stop = min(N, start + block.shape[0])
        out[start:stop] = block[:stop - start]
    return out


def _inputs_at(idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: _pattern(*PATTERNS[k])[idx % PERIOD] for k in PATTERNS}


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _windows() -> np.ndarray:
    """Element indices around the start, around 2**31 and at the end."""
    return np.concatenate([np.arange(0, 4096), np.arange(2**31 - 4096, 2**31 + 4096),
                           np.arange(N - 4096, N)])


def main() -> dict:
    import adamop
    from adamop import RowSparseArray
    from adamop.bitwise import mismatch

    small = [np.ones(1000, np.float16) for _ in range(4)]          # compile before measuring
    adamop.adam_update(*small, out=small[0], backend="numba", **KW)
    w, g, m, v = (_filled(k) for k in ("w", "g", "m", "v"))
    report = {}

    before = _peak()
    adamop.adam_update(w, g, m, v, out=w, backend="numba", **KW)
    growth = _peak() - before
    idx = _windows()
    want = _inputs_at(idx)
    adamop.adam_update(want["w"], want["g"], want["m"], want["v"], out=want["w"],
                       backend="numpy", **KW)
    report["dense"] = {"peak_growth": growth, "mismatch": next(
        (f"{k}: {e}" for k, e in (("w", mismatch(w[idx], want["w"])),
                                  ("m", mismatch(m[idx], want["m"])),
                                  ("v", mismatch(v[idx], want["v"]))) if e), None)}
    del g

    # the same memory as a table, rows past 2**31 elements included
    table, tm, tv = (a.reshape(-1, ROW) for a in (w, m, v))
    n_rows = table.shape[0]
    rows = np.array([3, 2**31 // ROW - 1, 2**31 // ROW, 2**31 // ROW + 7, n_rows - 1])
    gdata = np.random.default_rng(5).standard_normal((rows.shape[0], ROW)).astype(np.float16)
    for step, lazy in (("lazy", True), ("std", False)):
        check = np.array([0, 3, 4, 2**31 // ROW - 1, 2**31 // ROW, 2**31 // ROW + 1,
                          2**31 // ROW + 7, n_rows - 2, n_rows - 1])   # rows with and without grad
        expect = [a[check].copy() for a in (table, tm, tv)]
        in_grad = np.flatnonzero(np.isin(check, rows))
        small_grad = RowSparseArray(gdata[np.searchsorted(rows, check[in_grad])], in_grad,
                                    (check.shape[0], ROW))
        grad = RowSparseArray(gdata, rows, table.shape)
        before = _peak()
        adamop.adam_update(table, grad, tm, tv, out=table, lazy_update=lazy, backend="numba",
                           **KW)
        growth = _peak() - before
        adamop.adam_update(expect[0], small_grad, expect[1], expect[2], out=expect[0],
                           lazy_update=lazy, backend="numpy", **KW)
        report[step] = {"peak_growth": growth, "mismatch": next(
            (f"{k}: {e}" for k, e in (("w", mismatch(table[check], expect[0])),
                                      ("m", mismatch(tm[check], expect[1])),
                                      ("v", mismatch(tv[check], expect[2]))) if e), None)}
    return report


if __name__ == "__main__":
    print(json.dumps(main()))
