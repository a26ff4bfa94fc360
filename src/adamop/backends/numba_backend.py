"""The fused multi-threaded CPU backend: Numba ``prange`` kernels (:mod:`.numba_kernels`).

Same contract as :mod:`adamop.reference` (NumPy arrays of one dtype, any strides, ``out`` may be
the same view as an input; rules handed in) and bit-identical to it. This module prepares views:
arrays that cannot be seen as 1-D (dense) or 2-D ``(rows, row_length)`` (row_sparse) without a
copy are copied to contiguous buffers and written back in the reference's order (mean, var, out).

Threads follow Numba's controls (``numba.set_num_threads``, ``NUMBA_NUM_THREADS``); the kernels
compile on first use and are cached on disk (``NUMBA_CACHE_DIR`` moves the cache). Calls from
several Python threads run one at a time: each kernel already uses every core, and Numba's
``workqueue`` threading layer (what it picks where neither OpenMP nor TBB is installed) aborts
the process when two threads launch parallel kernels at once.
"""
from __future__ import annotations

import threading
from itertools import repeat
from operator import is_
from types import SimpleNamespace
from typing import Any, Sequence

import numba
import numpy as np

from ..params import Scalars
from ..reference import PathRule
from . import numba_kernels as _k

__all__ = ["adam_dense", "adam_rows", "adam_dense_batch", "mp_adam_dense", "mp_adam_dense_batch",
           "info"]

_HALF = np.dtype(np.float16)
_CHUNK = _k._CHUNK
_LAUNCH = threading.Lock()   # one parallel kernel at a time (see the module docstring)
# Waking Numba's sleeping threads costs ~30 us on the 2-core machine (OMP_WAIT_POLICY=PASSIVE),
# while one core updates 64K cached float32 elements in ~14 us: up to this much work a kernel
# runs on the calling thread alone (same compiled code; measured 64K: 37 -> 14 us, 4K: 32 ->
# 4 us; with threads still spinning from a previous kernel, 64K costs 6 -> 13 us).
ONE_THREAD_UP_TO = 1 << 16


def launch(kernel, elements: int, *args) -> None:
    """``kernel(*args)`` for ``elements`` elements of work, one launch at a time; small work
    runs on this thread alone (``numba.set_num_threads`` is per thread and is restored)."""
    with _LAUNCH:
        if elements > ONE_THREAD_UP_TO:
            kernel(*args)
            return
        threads = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            kernel(*args)
        finally:
            numba.set_num_threads(threads)


def _raw(a: np.ndarray) -> np.ndarray:
    """float16 arrays travel as their uint16 bits (a view, no copy)."""
    return a.view(np.uint16) if a.dtype == _HALF else a


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a is b or (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
                      and a.strides == b.strides)


def _flat_views(arrays: Sequence[np.ndarray]) -> list[np.ndarray] | None:
    """1-D views pairing the arrays' elements in the same order, or None if that needs a copy."""
    if all(a.flags.c_contiguous for a in arrays):
        return [a if a.ndim == 1 else a.reshape(-1) for a in arrays]
    if all(a.flags.f_contiguous for a in arrays):
        return [a.T.reshape(-1) for a in arrays]
    if arrays[0].ndim == 1:
        return list(arrays)   # any 1-D strides (a[::2], a[::-1]) compile as a strided variant
    return None


def _row_views(arrays: Sequence[np.ndarray]) -> list[np.ndarray] | None:
    """2-D ``(rows, row_length)`` views without a copy, or None."""
    out = []
    for a in arrays:
        if a.ndim == 1:
            out.append(a[:, None])
        elif a.ndim == 2:
            out.append(a)
        elif a.flags.c_contiguous:
            out.append(a.reshape(a.shape[0], -1))
        else:
            return None
    return out


def adam_dense(weight, grad, mean, var, out, s: Scalars, rule: PathRule) -> None:
    """The dense update (reference.adam_dense)."""
    if weight.size == 0:
        return
    square_first = rule.v_square_first(s.clip)
    views = _flat_views((weight, grad, mean, var, out))
    if views is None:
        _via_contiguous(_k.dense, (weight, grad, mean, var, out), (), s, square_first)
        return
    w, g, m, v, o = (_raw(a) for a in views)
    if _same(o, w):
        launch(_k.dense_inplace, w.size, w, g, m, v, s.vector, s.clip, square_first)
    else:
        launch(_k.dense, w.size, w, g, m, v, o, s.vector, s.clip, square_first)


def _via_contiguous(kernel, arrays, sparse, s: Scalars, square_first: bool) -> None:
    """Run ``kernel`` on contiguous copies, then write mean, var and out back in that order."""
    w, g, m, v, out = (None if a is None else np.ascontiguousarray(a) for a in arrays)
    m, v, o = m.copy(), v.copy(), out.copy()   # fresh buffers: the kernel sees no aliasing
    if kernel is _k.dense:
        launch(kernel, w.size, *(_raw(a).reshape(-1) for a in (w, g, m, v, o)), s.vector,
               s.clip, square_first)
    else:
        gd, idx = sparse
        n = w.size // w.shape[0]
        rw, rm, rv, ro = (_raw(a).reshape(a.shape[0], n) for a in (w, m, v, o))
        launch(kernel, _row_work(kernel, rw, idx), rw,
               _raw(np.ascontiguousarray(gd)).reshape(gd.shape[0], n), idx, rm, rv, ro, s.vector,
               s.clip, square_first)
    arrays[2][...] = m
    arrays[3][...] = v
    arrays[4][...] = o


def adam_rows(weight, grad_data, grad_indices, mean, var, out, s: Scalars,
              rule: PathRule) -> None:
    """A row_sparse update (reference.adam_rows): the lazy or the standard kernel."""
    lazy = rule.rows == "stored"
    if weight.size == 0 or (lazy and grad_indices.shape[0] == 0):
        return
    idx = np.ascontiguousarray(grad_indices, dtype=np.int64)
    if not _k.indices_ok(idx, weight.shape[0]):
        raise ValueError(f"grad indices are no longer ascending, unique and in [0, "
                         f"{weight.shape[0]}): they were changed after the RowSparseArray was "
                         f"built; nothing was written")
    kernel = _k.lazy if lazy else _k.std
    square_first = rule.v_square_first(s.clip)
    views = _row_views((weight, mean, var, out))
    if views is None:
        _via_contiguous(kernel, (weight, None, mean, var, out), (grad_data, idx), s,
                        square_first)
        return
    w, m, v, o = (_raw(a) for a in views)
    gd = _raw(np.ascontiguousarray(grad_data).reshape(grad_data.shape[0], w.shape[1]))
    launch(kernel, _row_work(kernel, w, idx), w, gd, idx, m, v, w if _same(o, w) else o,
           s.vector, s.clip, square_first)


def _row_work(kernel, w: np.ndarray, idx: np.ndarray) -> int:
    """Elements a row kernel updates: the grad's rows (lazy) or the whole table (standard)."""
    return idx.shape[0] * w.shape[1] if kernel is _k.lazy else w.size


def _launch_tables(batch: Any, scalars: Sequence[Scalars], rule: PathRule) -> tuple:
    """(chunk table, scalar row of each task, scalar rows, clip flags, square-first flags) of a
    batch. The chunk table is built once per batch and kept with it."""
    items = batch.prepared.get("numba")
    if items is None:
        nchunks = (batch.sizes + _CHUNK - 1) // _CHUNK
        task = np.repeat(np.arange(len(batch.sizes), dtype=np.int64), nchunks)
        first = np.cumsum(nchunks) - nchunks
        start = (np.arange(task.shape[0], dtype=np.int64) - first[task]) * _CHUNK
        items = batch.prepared["numba"] = np.ascontiguousarray(
            np.stack([task, start, np.minimum(start + _CHUNK, batch.sizes[task])], axis=1))
    first_s = scalars[0]
    if all(map(is_, scalars, repeat(first_s))):   # the usual call: one set of hyperparameters
        kept = batch.prepared.get("numba scalars")
        if kept is not None and kept[0] is first_s:   # the same step again: the same tables
            return kept[1]
        rows, distinct = np.zeros(len(scalars), np.int64), [first_s]
    else:   # one scalar row per distinct Scalars object (C-level maps: no Python per task)
        ids = np.fromiter(map(id, scalars), np.int64, len(scalars))
        unique, rows = np.unique(ids, return_inverse=True)
        by_id = dict(zip(map(id, scalars), scalars))
        distinct = [by_id[i] for i in unique.tolist()]
    tables = (items, rows, np.stack([s.vector for s in distinct]),
              np.array([s.clip for s in distinct], np.int8),
              np.array([rule.v_square_first(s.clip) for s in distinct], np.int8))
    if len(distinct) == 1 and rows is not None and not rows.any():
        batch.prepared["numba scalars"] = (first_s, tables)
    return tables


def adam_dense_batch(batch: Any, scalars: Sequence[Scalars], rule: PathRule) -> None:
    """A plan's batch of contiguous dense updates (:class:`adamop.plan.DenseBatch`) in one
    parallel loop over fixed-size chunks of every tensor: one kernel launch, whatever the number
    of tensors. ``scalars[t]`` belongs to update t."""
    if not len(batch.sizes):
        return
    like = np.empty(0, np.uint16 if batch.dtype == _HALF else batch.dtype)
    tables = _launch_tables(batch, scalars, rule)   # the plan's caller keeps the arrays alive
    launch(_k.dense_multi, batch.elements, batch.addresses, *tables, like)


def mp_adam_dense_batch(batch: Any, scalars: Sequence[Scalars], rule: PathRule) -> None:
    """A batch of ``mp_adam_update`` (roles: float16 weight, grad, mean, var, float32 master,
    float16 out) in one parallel loop, as :func:`adam_dense_batch`."""
    if not len(batch.sizes):
        return
    glike = np.empty(0, np.uint16 if batch.dtypes[1] == _HALF else batch.dtypes[1])
    tables = _launch_tables(batch, scalars, rule)
    launch(_k.mp_multi, batch.elements, batch.addresses, *tables, glike)


def mp_adam_dense(weight, grad, mean, var, weight32, out, s: Scalars, rule: PathRule) -> None:
    """One ``mp_adam_update`` of any layout: through contiguous copies, written back in the
    reference's order (mean, var, weight32, out)."""
    copies = [np.ascontiguousarray(a) for a in (grad, mean, var, weight32, out)]
    copies[1:] = [c.copy() for c in copies[1:]]   # fresh: the kernel sees no aliasing
    g, m, v, w32, o = copies
    dtypes = (weight.dtype, g.dtype, m.dtype, v.dtype, w32.dtype, o.dtype)
    batch = SimpleNamespace(addresses=np.array(
        [[a.__array_interface__["data"][0] for a in (o, g, m, v, w32, o)]], np.int64),
        sizes=np.array([o.size], np.int64), elements=o.size, dtypes=dtypes, prepared={})
    mp_adam_dense_batch(batch, [s], rule)
    for target, copy in zip((mean, var, weight32, out), (m, v, w32, o)):
        target[...] = copy


def info() -> dict:
    """Threads and threading layer, for ``adamop info`` (compiles nothing)."""
    import numba
    try:
        layer = numba.threading_layer()   # known only after a parallel kernel has run
    except ValueError:
        layer = f"not started yet (configured: {numba.config.THREADING_LAYER})"
    return {"numba": numba.__version__, "threads": numba.get_num_threads(),
            "max_threads": numba.config.NUMBA_NUM_THREADS, "threading_layer": layer,
            "cache_dir": numba.config.CACHE_DIR or "next to the module (__pycache__)"}
