"""MXNet's ``.params`` files without MXNet: ``load``, ``load_frombuffer``, ``save`` as ``mx.nd``'s.

Dense arrays load as NumPy arrays (every dtype MXNet writes; bfloat16 as MXNet's own
``[('bfloat16', '<u2')]`` dtype), row_sparse as :class:`adamop.RowSparseArray`, csr as a
``scipy.sparse.csr_matrix``; or all as torch tensors with ``as_torch=True``. A loaded file is a
:class:`NDArrayDict` or :class:`NDArrayList` that remembers how each array was stored, so saving
it again writes the same bytes. Reads are bounded by the input's size and refuse malformed input
with a ``ValueError``; writes are atomic.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from typing import Any, Union

import numpy as np

from . import _arrays
from . import _ndfile as F
from .storage import RowSparseArray

__all__ = ["NDArrayDict", "NDArrayList", "load", "load_frombuffer", "save", "save_tobuffer"]

_FLAG_OF = {"<f4": 0, "<f8": 1, "<f2": 2, "|u1": 3, "<i4": 4, "|i1": 5, "<i8": 6, "|b1": 7,
            "<i2": 8, "<u2": 9, "<u4": 10, "<u8": 11}
_TORCH_DTYPES = {"float32": 0, "float64": 1, "float16": 2, "uint8": 3, "int32": 4, "int8": 5,
                 "int64": 6, "bool": 7, "bfloat16": 12}
_STORED = "float32/64/16, uint8, int8, int32, int64, bool and bfloat16"


class _Loaded:
    """What a loaded file remembers: each array's :class:`~adamop._ndfile.Layout`, by identity
    (an array replaced by another one is written as a new array), and whether it was np-shape."""
    np_shape: bool = False

    def _remember(self, value: Any, layout: F.Layout) -> None:
        if "_layouts" not in self.__dict__:
            self._layouts: dict[int, tuple[Any, F.Layout, Any]] = {}
        token = value.indices if isinstance(value, RowSparseArray) else None
        self._layouts[id(value)] = (value, layout, token)

    def _layout_of(self, value: Any) -> F.Layout | None:
        value_, layout, token = self.__dict__.get("_layouts", {}).get(id(value), (None,) * 3)
        if value_ is not value:
            return None
        if layout.row_order is not None and token is not value.indices:   # rows were replaced
            layout = dataclasses.replace(layout, row_order=None)
        return layout


class NDArrayDict(_Loaded, dict):
    """A dict of arrays loaded from an MXNet file (names in file order)."""


class NDArrayList(_Loaded, list):
    """A list of arrays loaded from an MXNet file."""


Loaded = Union[NDArrayDict, NDArrayList]


# ---- loading ----------------------------------------------------------------------------------
def load(path: str | os.PathLike, *, as_torch: bool = False) -> Loaded:
    """Load an MXNet NDArray file (``mx.nd.save``, ``save_parameters``, ``-0010.params``).

    Args:
        path: the file.
        as_torch: give torch tensors (dense, sparse COO inside :class:`RowSparseArray`, sparse
            CSR) instead of NumPy arrays / :class:`RowSparseArray` / scipy matrices.

    Returns:
        An :class:`NDArrayDict` (a file with names) or :class:`NDArrayList` (without).

    Raises:
        ValueError: the file is not a well-formed MXNet NDArray file (the message names the file,
            the record and what is wrong).
        ImportError: a csr array needs scipy (or ``as_torch=True``), or as_torch needs torch.

    Examples:
        >>> import numpy as np, adamop.nd, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "w.params")
        >>> adamop.nd.save(path, {"fc1_weight": np.ones((2, 3), np.float32)})
        >>> adamop.nd.load(path)["fc1_weight"].shape
        (2, 3)
    """
    source = os.fspath(path)
    with open(source, "rb") as f:
        reader = F.Reader(str(source), file=f, size=os.fstat(f.fileno()).st_size)
        return _load(reader, as_torch)


def load_frombuffer(buf: bytes | bytearray | memoryview, *, as_torch: bool = False) -> Loaded:
    """:func:`load` from the bytes of a file (``mx.nd.load_frombuffer``); errors say
    ``<bytes>``."""
    if not isinstance(buf, (bytes, bytearray, memoryview)):
        raise TypeError(f"load_frombuffer: expected bytes, got {type(buf).__name__}")
    return _load(F.Reader("<bytes>", buffer=buf), as_torch)


def _load(reader: F.Reader, as_torch: bool, progress: Any = None) -> Loaded:
    records, names = F.read_file(reader, progress)
    labels = [f"record {i} ({n!r})" for i, n in enumerate(names)] if names else \
             [f"record {i}" for i in range(len(records))]
    values = [to_value(rec, f"{reader.source}: {label}", as_torch)
              for rec, label in zip(records, labels)]
    out: Loaded = NDArrayDict(zip(names, values)) if names else NDArrayList(values)
    out.np_shape = bool(records) and all(r.layout.version == F.V3 for r in records)
    for value, rec in zip(values, records):
        out._remember(value, rec.layout)
    return out


def to_value(rec: F.Record, where: str, as_torch: bool = False) -> Any:
    """The array a record holds (NumPy / RowSparseArray / scipy, or torch)."""
    if rec.stype == F.DEFAULT:
        return _torch_dense(rec.data, rec.flag) if as_torch else rec.data
    if rec.stype == F.ROW_SPARSE:
        indices = rec.aux[0].astype(np.int64, copy=False)
        data = rec.data
        if indices.size > 1 and not bool((indices[1:] > indices[:-1]).all()):
            order = np.argsort(indices, kind="stable")    # RowSparseArray keeps rows ascending
            indices, data = indices[order], data[order]
            rec.layout.row_order = np.argsort(order)
        if as_torch:
            data, indices = _torch_dense(data, rec.flag), _torch_dense(indices, F.INT64)
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
                                           _torch_dense(rec.data, rec.flag), rec.shape,
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


def _torch_dense(a: np.ndarray, flag: int) -> Any:
    try:
        import torch
    except ImportError:
        raise ImportError("as_torch=True needs PyTorch (pip install torch)") from None
    if flag == 12:
        return torch.from_numpy(a.view("<i2")).view(torch.bfloat16)
    return torch.from_numpy(a)


# ---- saving -----------------------------------------------------------------------------------
def save(path: str | os.PathLike, data: Any, *, np_shape: bool | None = None) -> None:
    """Save arrays as MXNet 1.9.1's ``mx.nd.save`` writes them, atomically.

    Args:
        path: the file; replaced only once it is completely written.
        data: a dict ``{name: array}`` (saved in its order), a list of arrays, or one array.
            Arrays: NumPy arrays (float32/64/16, uint8, int8, int32, int64, bool, bfloat16),
            :class:`RowSparseArray`, scipy csr matrices, torch tensors (dense, sparse COO,
            sparse CSR). A dict or list from :func:`load` is written back byte for byte.
        np_shape: write np-shape (V3) records, as MXNet does under ``mx.util.np_shape(True)``.
            None (the default): as the loaded file was, else np-shape exactly when some array is
            0-d or has a zero-size dimension (MXNet writes those faithfully only then).

    Raises:
        TypeError: an entry MXNet cannot store (its type or dtype), or a non-str name.
        ValueError: a combination MXNet cannot load (a 0-d array outside np-shape, a sparse
            array under np-shape), or a malformed sparse array.
    """
    records, names = _prepare(data, np_shape)
    F.atomic_write(path, lambda f: F.write_file(f.write, records, names))


def save_tobuffer(data: Any, *, np_shape: bool | None = None) -> bytes:
    """The bytes :func:`save` would write."""
    records, names = _prepare(data, np_shape)
    parts: list = []
    F.write_file(parts.append, records, names)
    return b"".join(bytes(p) for p in parts)


def _prepare(data: Any, np_shape: bool | None) -> tuple[list[F.Record], list[str] | None]:
    """Check and convert everything before anything is written."""
    if isinstance(data, Mapping):
        names = list(data.keys())
        bad = next((k for k in names if not isinstance(k, str)), None)
        if bad is not None:
            raise TypeError(f"save: names must be str, got {type(bad).__name__} {bad!r}")
        values, labels = list(data.values()), [repr(k) for k in names]
    elif isinstance(data, (list, tuple)):
        names, values = None, list(data)
        labels = [f"item {i}" for i in range(len(values))]
    elif _is_array(data):
        names, values, labels = None, [data], ["the array"]
    else:
        raise TypeError(f"save: expected a dict of name -> array, a list of arrays or one array, "
                        f"got {type(data).__name__}")
    known = data._layout_of if isinstance(data, _Loaded) else (lambda v: None)
    records = [to_record(v, f"save: {label}", known(v)) for v, label in zip(values, labels)]
    if np_shape is not None:
        version = F.V3 if np_shape else F.V2
    elif isinstance(data, _Loaded):
        version = F.V3 if data.np_shape else F.V2
    else:
        version = F.V3 if any(r.stype == F.DEFAULT and (r.data.ndim == 0 or r.data.size == 0)
                              for r in records) else F.V2
    for rec, value, label in zip(records, values, labels):
        if np_shape is not None or known(value) is None:
            rec.layout = dataclasses.replace(rec.layout, version=version)
        _check_version(rec, label, np_shape)
    return records, names


def _check_version(rec: F.Record, label: str, np_shape: bool | None) -> None:
    v = rec.layout.version
    if v == F.V3 and rec.stype != F.DEFAULT:
        why = "np_shape=True" if np_shape else "another array is 0-d or zero-size"
        raise ValueError(f"save: {label} is {F.STYPE_NAMES[rec.stype]}, which MXNet cannot store "
                         f"under np-shape (V3: {why}); save it in a separate file or densify it")
    if v == F.V2 and rec.stype == F.DEFAULT and rec.data.ndim == 0:
        raise ValueError(f"save: {label} is 0-d, which MXNet loads only from np-shape (V3) files; "
                         f"save with np_shape=True (or reshape it to (1,))")
    if v == F.LEGACY and any(d >= 2 ** 32 for d in rec.shape):
        rec.layout = dataclasses.replace(rec.layout, version=F.V2)


def _is_array(x: Any) -> bool:
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


def _host(a: Any, flag: int) -> np.ndarray:
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
            return _csr_record(flag, _host(t.values(), flag), t.crow_indices().numpy(),
                               t.col_indices().numpy(), tuple(t.shape), where, layout)
        elif kind != "strided":
            raise TypeError(f"{where} is a {kind} torch tensor; MXNet stores dense, row_sparse "
                            f"(sparse COO) and csr (sparse CSR)")
    if isinstance(value, RowSparseArray):
        flag = dtype_flag(value.dtype, where)
        data, indices = _host(value.data, flag), _host(value.indices, F.INT64)
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
        return _csr_record(flag, _host(value.data[:nnz], flag), value.indptr,
                           value.indices[:nnz], tuple(value.shape), where, layout)
    if isinstance(value, (np.ndarray, np.generic)) or _arrays.is_torch_tensor(value):
        flag = dtype_flag(value.dtype, where)
        data = _host(value, flag)
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
