"""Checks on the arrays of one update: kinds, libraries, devices, dtypes, shapes, storage and
aliasing. Each raises a ``TypeError``/``ValueError`` that names the input, what was received,
what was expected and the fix; none writes anything.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import _arrays
from .storage import RowSparseArray

INPUTS = ("weight", "grad", "mean", "var")
_SUPPORTED = "numpy.ndarray, torch.Tensor or adamop.RowSparseArray"


def classify(name: str, x: Any) -> tuple[str, Any]:
    """('default' | 'row_sparse', the array) or TypeError. torch COO grads become RowSparseArray."""
    if isinstance(x, RowSparseArray):
        return "row_sparse", x
    lib = _arrays.library(x)
    if lib == "torch":
        layout = _arrays.torch_layout(x)
        if layout == "strided":
            return "default", x
        if layout == "sparse_coo" and name == "grad":
            return "row_sparse", RowSparseArray.from_torch(x)
        if layout == "sparse_coo":
            raise TypeError(f"{name}: a torch sparse COO tensor cannot be updated in place; pass "
                            f"a dense tensor or adamop.RowSparseArray.from_torch({name})")
        raise TypeError(f"{name}: torch layout {layout} is not supported (csr storage is out of "
                        f"scope); convert it with .to_dense(), or use a RowSparseArray")
    if lib == "numpy":
        return "default", x
    if type(x).__module__.startswith("scipy.sparse"):
        raise TypeError(f"{name}: scipy sparse matrices ({type(x).__name__}) are not supported "
                        f"(csr storage is out of scope); pass {name}.toarray() or a RowSparseArray")
    raise TypeError(f"{name}: expected a {_SUPPORTED}, got {_arrays.describe(x)}; convert it with "
                    f"numpy.asarray({name})")


def lib_of(stype: str, x: Any) -> str:
    return x.library if stype == "row_sparse" else _arrays.library(x)


def device_of(stype: str, x: Any) -> str:
    return x.device if stype == "row_sparse" else _arrays.device(x)


def device_name(stype: str, x: Any) -> str:
    """'cpu', 'cuda:0', 'cuda:1', ...: the device including its index."""
    t = buffer(stype, x)
    return str(t.device) if _arrays.is_torch_tensor(t) else "cpu"


def dtype_of(x: Any) -> Any:
    return _arrays.dtype(x.data if isinstance(x, RowSparseArray) else x)


def shape_of(x: Any) -> tuple:
    return tuple(x.shape)


def buffer(stype: str, x: Any) -> Any:
    """The memory the kernel writes for x (a RowSparseArray's data), or None."""
    return x.data if stype == "row_sparse" else x


def check_common(items: list[tuple[str, str, Any]]) -> tuple[str, str, np.dtype, tuple]:
    """Same library, device, dtype and shape for every (name, stype, array)."""
    name0, st0, x0 = items[0]
    lib, dev = lib_of(st0, x0), device_of(st0, x0)
    for name, st, x in items[1:]:
        if lib_of(st, x) != lib:
            raise TypeError(f"{name} is a {lib_of(st, x)} array but {name0} is a {lib} array; "
                            f"pass every array from one library")
        if device_name(st, x) != device_name(st0, x0):   # with the index: cuda:0 != cuda:1
            raise ValueError(f"{name} is on {device_name(st, x)} but {name0} is on "
                             f"{device_name(st0, x0)}; move all arrays to one device (adamop "
                             f"never copies between devices)")
    for name, st, x in items:
        dt = dtype_of(x)
        if dt not in _arrays.FLOAT_DTYPES:
            raise TypeError(f"{name} has dtype {dt}; adam_update supports float16, float32 and "
                            f"float64 (MXNet: 'only support floating point types'); convert it "
                            f"with .astype(numpy.float32) or .float()")
    dtype = dtype_of(x0)
    for name, st, x in items[1:]:
        if dtype_of(x) != dtype:
            raise TypeError(f"{name} has dtype {dtype_of(x)} but {name0} has {dtype}; all inputs "
                            f"and out must share one dtype (there is no mixed precision)")
    shape = shape_of(x0)
    for name, st, x in items[1:]:
        if shape_of(x) != shape:
            raise ValueError(f"{name} has shape {shape_of(x)} but {name0} has shape {shape}; all "
                             f"inputs and out must have the same shape")
    return lib, dev, dtype, shape


def check_writeable(name: str, x: Any) -> None:
    if not _arrays.writeable(x):
        raise ValueError(f"{name} is read-only, but adam_update writes it in place; pass a "
                         f"writeable array (e.g. {name}.copy())")


def storage_path(stypes: tuple[str, str, str, str], lazy_update: bool) -> str:
    """SPEC B §3: which kernel MXNet's storage dispatch picks."""
    w, g, m, v = stypes
    if m != v:
        raise ValueError(f"mean has storage {m} but var has {v}; the two states must share a "
                         f"storage type (MXNet: 'Inconsistent storage types detected in state')")
    if stypes == ("default",) * 4:
        return "dense"
    if g == "row_sparse" and m == "default" and w == "default":
        return "lazy" if lazy_update else "std"
    if stypes == ("row_sparse",) * 4:
        return "lazy" if lazy_update else "std"
    if w == g == "row_sparse" and m == "default":
        return "std"
    return "fallback"


def check_aliasing(named: list[tuple[str, Any]], out: Any, out_name: str, path: str,
                    out_is_weight: bool) -> None:
    """Arrays the kernel reads and writes may alias only as whole identical views (SPEC B §2)."""
    views = [(n, _arrays.address_view(b)) for n, b in named if b is not None]
    for i, (na, a) in enumerate(views):
        for nb, b in views[i + 1:]:
            if _arrays.overlap(a, b) and not ({na, nb} == {"weight", "grad"}
                                               and _arrays.same_view(a, b)):
                raise ValueError(f"{na} and {nb} share memory; adam_update reads {na} after "
                                 f"writing {nb} (or the reverse), so they must be separate arrays")
    if out is None:
        return
    o = _arrays.address_view(out)
    for n, b in views:
        if not _arrays.overlap(o, b):
            continue
        if path == "lazy" and not out_is_weight:
            raise ValueError(f"{out_name} shares memory with {n}; with a row_sparse grad and "
                             f"lazy_update=True, out must be weight itself or a separate array")
        if not _arrays.same_view(o, b):
            raise ValueError(f"{out_name} partly overlaps {n}; out may be one of the inputs "
                             f"exactly (out=weight is the usual call) or a separate array")


def check_disjoint(batch: list[tuple[Sequence[Any], Sequence[Any]]]) -> None:
    """No update of a batch writes memory that another update of it reads or writes.

    ``batch`` holds each update's (arrays read, arrays written), as NumPy arrays over their
    addresses (:func:`adamop._arrays.address_view`). The backends run a batch in parallel, so
    such a pair would race (in MXNet too); the same array passed for two parameters is the usual
    cause. Arrays that own their memory overlap only when identical, which ids settle in one
    pass; views are compared by their byte ranges.
    """
    if len(batch) < 2:
        return
    every = [a for reads, writes in batch for a in (*reads, *writes)]
    if any(a.base is not None for a in every):
        _check_disjoint_views(batch)
        return
    writer: dict[int, int] = {}
    for t, (_, writes) in enumerate(batch):
        for a in writes:
            if writer.setdefault(id(a), t) != t:
                _conflict(writer[id(a)], t)
    for t, (reads, _) in enumerate(batch):
        for a in reads:
            if writer.get(id(a), t) != t:
                _conflict(*sorted((writer[id(a)], t)))


def _check_disjoint_views(batch: list[tuple[Sequence[Any], Sequence[Any]]]) -> None:
    arrays = [(t, a, w) for t, (reads, writes) in enumerate(batch)
              for w, group in ((False, reads), (True, writes)) for a in group if a.size]
    spans = sorted((*_arrays.byte_bounds(a), t, w, i) for i, (t, a, w) in enumerate(arrays))
    for k, (lo, hi, t, w, i) in enumerate(spans):
        for lo2, hi2, t2, w2, j in spans[k + 1:]:
            if lo2 >= hi:
                break
            if t2 != t and (w or w2) and _arrays.overlap(arrays[i][1], arrays[j][1]):
                _conflict(min(t, t2), max(t, t2))


def _conflict(first: int, second: int) -> None:
    raise ValueError(f"updates [{first}] and [{second}] share memory that one of them writes "
                     f"(the same mean, var or out array passed for two parameters?); every "
                     f"parameter needs its own states and output")
