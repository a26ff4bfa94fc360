"""The fused multi-threaded CPU backend: Numba ``prange`` kernels (:mod:`.numba_kernels`).

Same contract as :mod:`adamop.reference` (NumPy arrays of one dtype, any strides, ``out`` may be
the same view as an input) and bit-identical to it. This module prepares views: arrays that
cannot be seen as 1-D (dense) or 2-D ``(rows, row_length)`` (row_sparse) without a copy are
copied to contiguous buffers and written back in the reference's order (mean, var, then out).

Threads follow Numba's controls (``numba.set_num_threads``, ``NUMBA_NUM_THREADS``); the kernels
compile on first use and are cached on disk (``NUMBA_CACHE_DIR`` moves the cache).
"""
from __future__ import annotations

import functools
from itertools import chain, repeat
from operator import is_, itemgetter
from typing import Sequence

import numpy as np

from ..params import Scalars
from . import numba_kernels as _k

__all__ = ["adam_dense", "adam_lazy", "adam_std", "adam_dense_multi", "info"]

_HALF = np.dtype(np.float16)
_CHUNK = _k._CHUNK
_FEW = 4


@functools.lru_cache(maxsize=1024)   # Scalars hash their bits: -0.0 and 0.0 stay apart
def _scalars(s: Scalars) -> tuple[np.ndarray, bool]:
    """The kernel's scalar vector (float32 for float16 arrays, where every value is exact); read
    only, as it is shared by every call with these scalars."""
    ctype = np.float32 if s.dtype == _HALF else s.dtype
    vector = np.array([s.lr, s.beta1, s.beta2, s.epsilon, s.wd, s.rescale_grad, s.clip_gradient,
                       s.one_minus_beta1, s.one_minus_beta2], dtype=ctype)
    vector.flags.writeable = False
    return vector, bool(s.clip)


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


def adam_dense(weight, grad, mean, var, out, s: Scalars) -> None:
    """The dense update (reference.adam_dense)."""
    if weight.size == 0:
        return
    sc, clip = _scalars(s)
    views = _flat_views((weight, grad, mean, var, out))
    if views is None:
        _via_contiguous(_k.dense, (weight, grad, mean, var, out), (), sc, clip)
        return
    w, g, m, v, o = (_raw(a) for a in views)
    if _same(o, w):
        _k.dense_inplace(w, g, m, v, sc, clip)
    else:
        _k.dense(w, g, m, v, o, sc, clip)


def _via_contiguous(kernel, arrays, sparse, sc, clip) -> None:
    """Run ``kernel`` on contiguous copies, then write mean, var and out back in that order."""
    w, g, m, v, out = (None if a is None else np.ascontiguousarray(a) for a in arrays)
    m, v, o = m.copy(), v.copy(), out.copy()   # fresh buffers: the kernel sees no aliasing
    if kernel is _k.dense:
        kernel(*(_raw(a).reshape(-1) for a in (w, g, m, v, o)), sc, clip)
    else:
        gd, idx = sparse
        n = w.size // w.shape[0]
        rows = [_raw(a).reshape(a.shape[0], n) for a in (w, m, v, o)]
        kernel(rows[0], _raw(np.ascontiguousarray(gd)).reshape(gd.shape[0], n), idx, rows[1],
               rows[2], rows[3], sc, clip)
    arrays[2][...] = m
    arrays[3][...] = v
    arrays[4][...] = o


def _row_sparse(kernel, weight, grad_data, grad_indices, mean, var, out, s: Scalars) -> None:
    sc, clip = _scalars(s)
    idx = np.ascontiguousarray(grad_indices, dtype=np.int64)
    views = _row_views((weight, mean, var, out))
    if views is None:
        _via_contiguous(kernel, (weight, None, mean, var, out), (grad_data, idx), sc, clip)
        return
    w, m, v, o = (_raw(a) for a in views)
    gd = _raw(np.ascontiguousarray(grad_data).reshape(grad_data.shape[0], w.shape[1]))
    kernel(w, gd, idx, m, v, w if _same(o, w) else o, sc, clip)


def adam_lazy(weight, grad_data, grad_indices, mean, var, out, s: Scalars) -> None:
    """The lazy row_sparse update (reference.adam_lazy): only the grad's rows change."""
    if grad_indices.shape[0] == 0 or weight.size == 0:
        return
    _row_sparse(_k.lazy, weight, grad_data, grad_indices, mean, var, out, s)


def adam_std(weight, grad_data, grad_indices, mean, var, out, s: Scalars) -> None:
    """The standard row_sparse update (reference.adam_std): every row changes."""
    if weight.size == 0:
        return
    _row_sparse(_k.std, weight, grad_data, grad_indices, mean, var, out, s)


def adam_dense_multi(tasks: Sequence[tuple]) -> None:
    """Batched dense updates, ``tasks`` = ``[(weight, grad, mean, var, out, s), ...]``.

    The tasks of one dtype run as one parallel loop over fixed-size chunks of every tensor (one
    kernel launch; the Python work per tensor is an ``id()`` per array). Tasks with a
    non-contiguous array run one by one through :func:`adam_dense`.
    """
    if len(tasks) <= _FEW:   # the batch tables cost ~15 us: not worth it for a few tensors
        for task in tasks:
            adam_dense(*task)
        return
    first = tasks[0][5]
    # the usual call shares one Scalars object: an identity pass settles it at C speed
    if all(map(is_, map(itemgetter(5), tasks), repeat(first))):
        groups = {first.dtype: tasks}
    else:
        groups = {}
        for task in tasks:
            groups.setdefault(task[5].dtype, []).append(task)
    for dtype, group in groups.items():
        addr, sizes, ok = _inspect(group)
        for t in np.flatnonzero(~ok):
            adam_dense(*group[t])
        keep = np.flatnonzero(ok & (sizes > 0))
        if keep.shape[0]:
            _multi(dtype, [group[t] for t in keep] if keep.shape[0] < len(group) else group,
                   addr[keep], sizes[keep])


def _inspect_slow(group: list[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    addr = np.array([[a.__array_interface__["data"][0] for a in t[:5]] for t in group],
                    dtype=np.int64).reshape(len(group), 5)
    sizes = np.array([t[0].size for t in group], dtype=np.int64)
    ok = np.array([all(a.flags.c_contiguous and a.flags.aligned for a in t[:5]) for t in group],
                  dtype=bool)
    return addr, sizes, ok


_HEAD = object.__basicsize__   # bytes before PyArrayObject_fields.data (16 on CPython 64-bit)
_struct_ok: bool | None = None


def _struct_layout_ok() -> bool:
    """True if reading NumPy's array struct gives what ``__array_interface__`` says, here."""
    global _struct_ok
    if _struct_ok is None:
        probe = [np.zeros((3, 5), np.float32), np.zeros(7)[::2], np.zeros((2, 3)).T,
                 np.zeros(0, np.float16), np.zeros((), np.float64)]
        rows = [tuple(probe) for _ in range(2)]
        try:
            got = _k.inspect_arrays(np.array([[id(a) for a in r] for r in rows], np.int64), _HEAD)
            want = _inspect_slow([r + (None,) for r in rows])
            sizes_ok = all(got[0][0, j] == want[0][0, j] for j in range(5))
            _struct_ok = bool(sizes_ok and got[1][0] == 15 and not got[2][0])
            single = _k.inspect_arrays(np.array([[id(probe[0])] * 5], np.int64), _HEAD)
            _struct_ok = _struct_ok and bool(single[2][0]) and single[1][0] == 15
        except Exception:   # an unusual interpreter: use the portable path
            _struct_ok = False
    return _struct_ok


def _inspect(group: list[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data addresses (T, 5), sizes (T,), usable (T,)) of each task's five arrays."""
    if not _struct_layout_ok():
        return _inspect_slow(group)
    # id() of every element of every task (C-level iteration), then the Scalars column dropped
    ids = np.fromiter(map(id, chain.from_iterable(group)), np.int64, 6 * len(group))
    return _k.inspect_arrays(np.ascontiguousarray(ids.reshape(len(group), 6)[:, :5]), _HEAD)


def _multi(dtype: np.dtype, group: list[tuple], addr: np.ndarray, sizes: np.ndarray) -> None:
    first_s = group[0][5]
    if all(map(is_, map(itemgetter(5), group), repeat(first_s))):   # one set of hyperparameters
        row_of, distinct = np.zeros(len(group), np.int64), [first_s]
    else:   # one scalar row per distinct Scalars object
        rows: dict[int, int] = {}
        row_of = np.array([rows.setdefault(id(t[5]), len(rows)) for t in group], np.int64)
        by_id = {id(t[5]): t[5] for t in group}
        distinct = [by_id[i] for i in rows]
    packed = [_scalars(s) for s in distinct]
    sc = np.stack([p[0] for p in packed])
    clip = np.array([p[1] for p in packed], dtype=np.int8)
    # items: every task cut into chunks of _CHUNK elements
    nchunks = (sizes + _CHUNK - 1) // _CHUNK
    task = np.repeat(np.arange(len(group), dtype=np.int64), nchunks)
    first = np.cumsum(nchunks) - nchunks
    start = (np.arange(task.shape[0], dtype=np.int64) - first[task]) * _CHUNK
    items = np.stack([task, start, np.minimum(start + _CHUNK, sizes[task]), row_of[task]], axis=1)
    like = np.empty(0, np.uint16 if dtype == _HALF else dtype)
    _k.dense_multi(addr, items, sc, clip, like)   # the caller's tasks keep the arrays alive


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
