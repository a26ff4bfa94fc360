"""Arrays to and from NDArray records: NumPy, :class:`RowSparseArray`, scipy csr and torch.

A record (:class:`adamop._ndfile.Record`) holds little-endian NumPy arrays in MXNet's layout; here
they become what users hold, and back, with MXNet's dtype flags and the checks MXNet skips
(row indices in range, csr offsets that describe the matrix).
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from . import _arrays
from . import _ndfile as F
from .storage import RowSparseArray

_FLAG_OF = {"<f4": 0, "<f8": 1, "<f2": 2, "|u1": 3, "<i4": 4, "|i1": 5, "<i8": 6, "|b1": 7,
            "<i2": 8, "<u2": 9, "<u4": 10, "<u8": 11}
_TORCH_DTYPES = {"float32": 0, "float64": 1, "float16": 2, "uint8": 3, "int32": 4, "int8": 5,
                 "int64": 6, "bool": 7, "bfloat16": 12}
_STORED = "float32/64/16, uint8, int8, int32, int64, bool and bfloat16"


def to_value(rec: F.Record, where: str, as_torch: bool = False) -> Any:
    """The array a record holds (NumPy / RowSparseArray / scipy, or torch)."""
    if rec.stype == F.DEFAULT:
        return torch_dense(rec.data, rec.flag) if as_torch else rec.data
    if rec.stype == F.ROW_SPARSE:
        indices = rec.aux[0].astype(np.int64, copy=False)
        data = rec.data
        if indices.size > 1 and not bool((indices[1:] > indices[:-1]).all()):
            order = np.argsort(indices, kind="stable")    # RowSparseArray keeps rows ascending
            indices, data = indices[order], data[order]
            rec.layout.row_order = np.argsort(order)
        if as_torch:
            data, indices = torch_dense(data, rec.flag), torch_dense(indices, F.INT64)
        try:
            return RowSparseArray(data, indices, rec.shape)
        except ValueError as exc:
            raise ValueError(f"{where}: invalid row_sparse array: {exc}") from None
    indptr, indices = (a.astype(np.int64, copy=False) for a in rec.aux)
    check_csr(indptr, indices, rec.shape, where)
    if as_torch:
        import torch
        with warnings.catch_warnings():      # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(torch.from_numpy(indptr), torch.from_numpy(indices),
                                           torch_dense(rec.data, rec.flag), rec.shape,
                                           check_invariants=False)   # check_csr checked them
    try:
        import scipy.sparse
    except ImportError:
        raise ImportError(f"{where} is a csr matrix, which loads as a scipy.sparse.csr_matrix: "
                          f"install scipy (pip install scipy), or load with as_torch=True"
                          ) from None
    return scipy.sparse.csr_matrix((rec.data, indices, indptr), shape=rec.shape)


def check_csr(indptr: np.ndarray, indices: np.ndarray, shape: tuple, where: str) -> None:
    """Refuse csr index arrays that do not describe a matrix of ``shape``."""
    nnz = indices.shape[0]
    if indptr.shape != (shape[0] + 1,) or indptr[0] != 0 or indptr[-1] != nnz \
            or bool((indptr[1:] < indptr[:-1]).any()):
        raise ValueError(f"{where}: invalid csr indptr (expected {shape[0] + 1} non-decreasing "
                         f"offsets from 0 to {nnz})")
    if nnz and (int(indices.min()) < 0 or int(indices.max()) >= shape[1]):
        raise ValueError(f"{where}: csr column index out of range for {shape[1]} columns")


def torch_dense(a: np.ndarray, flag: int) -> Any:
    try:
        import torch
    except ImportError:
        raise ImportError("as_torch=True needs PyTorch (pip install torch)") from None
    if not a.flags.writeable:       # torch has no read-only tensors (RowSparseArray's indices)
        a = a.copy()
    if flag == 12:
        return torch.from_numpy(a.view("<i2")).view(torch.bfloat16)
    return torch.from_numpy(a)


def is_array(x: Any) -> bool:
    return (isinstance(x, (np.ndarray, np.generic, RowSparseArray)) or _arrays.is_torch_tensor(x)
            or type(x).__module__.startswith("scipy.sparse"))


def dtype_flag(dtype: Any, where: str) -> int:
    """MXNet's type flag of a NumPy or torch dtype that MXNet 1.9.1 can store."""
    if not isinstance(dtype, np.dtype):                     # a torch dtype
        name = str(dtype).replace("torch.", "")
        if name in _TORCH_DTYPES:
            return _TORCH_DTYPES[name]
    elif dtype == F.BFLOAT16 or dtype.name == "bfloat16":   # MXNet's or ml_dtypes' bfloat16
        return 12
    elif dtype.str.replace(">", "<") in _FLAG_OF:
        flag = _FLAG_OF[dtype.str.replace(">", "<")]
        if flag in F.MXNET_READS:
            return flag
        raise TypeError(f"{where} has dtype {dtype.name}, which MXNet 1.9.1 cannot read (type "
                        f"flag {flag}: 'Unknown type enum'); cast it, e.g. to int32 or int64")
    raise TypeError(f"{where} has dtype {dtype}, which MXNet cannot store (it stores {_STORED})")


def host(a: Any, flag: int) -> np.ndarray:
    """A C-contiguous little-endian NumPy copy or view of a NumPy array or torch tensor."""
    if _arrays.is_torch_tensor(a):
        a = a.detach().cpu().contiguous()
        if flag == 12:
            return a.view(_torch().int16).numpy().view(F.BFLOAT16)
        a = a.numpy()
    a = np.asarray(a)
    target = F.BFLOAT16 if flag == 12 else F.DTYPES[flag]
    if a.dtype != target:
        a = a.view("<u2").view(target) if flag == 12 else a.astype(target)
    return np.ascontiguousarray(a) if a.ndim else a.reshape(())


def _torch() -> Any:
    import torch
    return torch


def to_record(value: Any, where: str, layout: F.Layout | None = None) -> F.Record:
    """The record MXNet writes for ``value`` (with ``layout`` if it was loaded from a file)."""
    layout = dataclasses.replace(layout) if layout is not None else F.Layout()
    if _arrays.is_torch_tensor(value):
        kind = _arrays.torch_layout(value)
        if kind == "sparse_coo":
            value = RowSparseArray.from_torch(value)
        elif kind == "sparse_csr":
            t = value.detach().cpu()
            flag = dtype_flag(t.dtype, where)
            return _csr_record(flag, host(t.values(), flag), t.crow_indices().numpy(),
                               t.col_indices().numpy(), tuple(t.shape), where, layout)
        elif kind != "strided":
            raise TypeError(f"{where} is a {kind} torch tensor; MXNet stores dense, row_sparse "
                            f"(sparse COO) and csr (sparse CSR)")
    if isinstance(value, RowSparseArray):
        flag = dtype_flag(value.dtype, where)
        data, indices = host(value.data, flag), host(value.indices, F.INT64)
        if layout.row_order is not None:
            data, indices = data[layout.row_order], indices[layout.row_order]
        layout.row_order = None
        aux = _index_arrays((indices,), layout)
        if layout.storage_shape is not None and F._count(layout.storage_shape) != 0:
            layout.storage_shape = None
        return F.Record(F.ROW_SPARSE, flag, tuple(value.shape), data, aux, layout)
    if type(value).__module__.startswith("scipy.sparse"):
        if getattr(value, "format", None) != "csr":
            raise TypeError(f"{where} is a scipy.sparse {getattr(value, 'format', '?')} matrix; "
                            f"MXNet stores csr: convert it with .tocsr()")
        flag = dtype_flag(value.dtype, where)
        nnz = int(value.indptr[-1]) if value.indptr.size else 0
        return _csr_record(flag, host(value.data[:nnz], flag), value.indptr,
                           value.indices[:nnz], tuple(value.shape), where, layout)
    if isinstance(value, (np.ndarray, np.generic)) or _arrays.is_torch_tensor(value):
        flag = dtype_flag(value.dtype, where)
        data = host(value, flag)
        return F.Record(F.DEFAULT, flag, tuple(data.shape), data, (), layout)
    raise TypeError(f"{where} is {_arrays.describe(value)}; MXNet files hold NumPy arrays, "
                    f"RowSparseArray, scipy csr matrices and torch tensors")


def _csr_record(flag: int, data: np.ndarray, indptr: Any, indices: Any, shape: tuple, where: str,
                layout: F.Layout) -> F.Record:
    indptr, indices = (np.asarray(a).astype(np.int64) for a in (indptr, indices))
    check_csr(indptr, indices, shape, where)
    aux = _index_arrays((indptr, indices), layout)
    if layout.storage_shape is not None and F._count(layout.storage_shape) != 0:
        layout.storage_shape = None
    return F.Record(F.CSR, flag, shape, data, aux, layout)


def _index_arrays(aux: tuple[np.ndarray, ...], layout: F.Layout) -> tuple[np.ndarray, ...]:
    """The index arrays in their recorded types where they still fit, else int64."""
    flags = layout.aux_flags
    if flags is not None and len(flags) == len(aux):
        cast = tuple(a.astype(F.DTYPES[f]) for a, f in zip(aux, flags))
        if all(np.array_equal(c, a) for c, a in zip(cast, aux)):
            return cast
    layout.aux_flags = None
    return aux
