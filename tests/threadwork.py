"""The work of the concurrency tests: independent training jobs, run in sequence or on many
threads at once, whose final states are compared byte for byte.

Used in process by ``test_threads.py`` and, per Numba threading layer, in a subprocess:
``python tests/threadwork.py BACKEND THREADS`` prints a JSON line and exits 0 when the threaded
run is bitwise equal to the sequential one (1 when not; a crash is whatever the crash gives).
"""
from __future__ import annotations

import json
import sys
import threading
from typing import Callable

import numpy as np

import adamop
from adamop import RowSparseArray, sym

STEPS = 12
# ~100K elements: large enough that the Numba kernels use all their threads inside each call
DENSE = 100_003


def _dense(seed: int, backend: str, dtype, lib: str) -> list[bytes]:
    rng = np.random.default_rng(seed)
    w, g, m, v = (rng.standard_normal(DENSE).astype(dtype) for _ in range(4))
    v = np.abs(v)
    if lib == "torch":
        import torch
        w, g, m, v = (torch.from_numpy(a) for a in (w, g, m, v))
    for step in range(STEPS):
        adamop.adam_update(w, g, m, v, lr=0.01 * (step + 1), wd=1e-4, clip_gradient=2.0, out=w,
                           backend=backend)
    return [np.asarray(a).tobytes() for a in (w, m, v)]


def _strided(seed: int, backend: str) -> list[bytes]:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((4, 300, 200))
    w, g, m, v = (base[i, ::-1, ::2] for i in range(4))   # negative and non-unit strides
    m[...] = 0.0
    v[...] = 0.0
    for _ in range(STEPS):
        adamop.adam_update(w, g, m, v, lr=0.003, out=w, backend=backend)
    return [base.tobytes()]


def _row_sparse(seed: int, backend: str, lazy: bool) -> list[bytes]:
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((5000, 32)).astype(np.float32)
    m, v = np.zeros_like(table), np.zeros_like(table)
    for step in range(STEPS):
        rows = rng.choice(5000, 400, replace=False)
        grad = RowSparseArray(rng.standard_normal((400, 32)).astype(np.float32), rows,
                              table.shape)
        adamop.adam_update(table, grad, m, v, lr=0.01, lazy_update=lazy, out=table,
                           backend=backend)
    return [table.tobytes(), m.tobytes(), v.tobytes()]


def _multi(seed: int, backend: str) -> list[bytes]:
    rng = np.random.default_rng(seed)
    shapes = [(7,), (300, 40), (1,), (33, 3, 5), (20_000,), (64, 64)]
    ws = [rng.standard_normal(s).astype(np.float16) for s in shapes]
    gs = [rng.standard_normal(s).astype(np.float16) for s in shapes]
    ms = [np.zeros_like(w) for w in ws]
    vs = [np.zeros_like(w) for w in ws]
    for _ in range(STEPS):
        adamop.adam_update_multi(ws, gs, ms, vs, lr=[0.01 * (i + 1) for i in range(len(ws))],
                                 out=ws, backend=backend)
    return [a.tobytes() for a in ws + ms + vs]


def _executor(seed: int, backend: str) -> list[bytes]:
    rng = np.random.default_rng(seed)
    names = ["fc1", "fc2"]
    graph = sym.Group([sym.adam_update(sym.var(p), sym.var(p + "_g"), sym.var(p + "_m"),
                                       sym.var(p + "_v"), lr=0.05, wd=1e-3, name=p + "_adam")
                       for p in names])
    args = {}
    for p in names:
        args[p] = rng.standard_normal((50, 40)).astype(np.float32)
        args[p + "_g"] = rng.standard_normal((50, 40)).astype(np.float32)
    aux = {f"{p}_{k}": np.zeros((50, 40), np.float32) for p in names for k in ("m", "v")}
    ex = graph.bind(args=args, aux_states=aux, backend=backend)
    for _ in range(STEPS):
        outs = ex.forward()
        for p, new in zip(names, outs):
            ex.arg_dict[p][...] = new
    return [np.asarray(a).tobytes() for a in list(ex.arg_dict.values()) + list(aux.values())]


def jobs(backend: str) -> list[Callable[[], list[bytes]]]:
    """Eight kinds of work, two of each with different data: sixteen independent jobs."""
    kinds = [
        lambda s: _dense(s, backend, np.float32, "numpy"),
        lambda s: _dense(s, backend, np.float16, "torch"),
        lambda s: _dense(s, backend, np.float64, "numpy"),
        lambda s: _strided(s, backend),
        lambda s: _row_sparse(s, backend, lazy=True),
        lambda s: _row_sparse(s, backend, lazy=False),
        lambda s: _multi(s, backend),
        lambda s: _executor(s, backend),
    ]
    return [lambda k=k, s=seed: k(s) for seed in (1, 2) for k in kinds]


def sequential(backend: str) -> list[list[bytes]]:
    return [job() for job in jobs(backend)]


def threaded(backend: str, threads: int) -> list[list[bytes]]:
    """Every job on its own thread, ``threads`` at a time, all started together."""
    work = jobs(backend)
    results: list = [None] * len(work)
    errors: list = []
    start = threading.Barrier(min(threads, len(work)))

    def worker(indices: list[int]) -> None:
        try:
            start.wait()
            for i in indices:
                results[i] = work[i]()
        except BaseException as exc:   # reported by the caller
            errors.append(exc)
    groups = [list(range(t, len(work), threads)) for t in range(min(threads, len(work)))]
    pool = [threading.Thread(target=worker, args=(g,)) for g in groups]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return results


def differing(a: list[list[bytes]], b: list[list[bytes]]) -> list[int]:
    return [i for i, (x, y) in enumerate(zip(a, b)) if x != y]


if __name__ == "__main__":
    backend, threads = sys.argv[1], int(sys.argv[2])
    want = sequential(backend)
    got = threaded(backend, threads)
    info = {"differing_jobs": differing(got, want)}
    if backend == "numba":
        import numba
        info["threading_layer"] = numba.threading_layer()
    print(json.dumps(info))
    sys.exit(1 if info["differing_jobs"] else 0)
