"""``RowSparseArray``: MXNet's ``row_sparse`` storage, validated and canonical on construction.

A row-sparse array of shape ``(n, *rest)`` stores a subset of its rows: ``indices`` (1-D int64,
ascending) names them and ``data`` (shape ``(nnz, *rest)``) holds them; every other row is zero.
Unsorted indices are sorted together with their rows when the array is built (MXNet's std update
silently mixes rows up otherwise: SPEC A.5). Duplicate indices are kept but flagged: the update
refuses them (in MXNet they race), and :meth:`RowSparseArray.coalesce` sums them on request.

A validated array stays valid whatever its caller does next. It keeps a private int64 copy of the
indices (one copy of ``nnz`` integers; read-only for NumPy) and its own view of ``data``: the
rows' memory is shared with the caller (no copy of the data) but their shape, strides and dtype
belong to the array. The properties hand out fresh views (torch indices: a copy, as torch has no
read-only tensors), so changing what they return cannot reach the array either.

(About 390 lines: the class and its checked conversions from and to torch belong together.)
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import _arrays

__all__ = ["RowSparseArray"]

_INT64_MAX = 2**63 - 1


def _as_shape(shape: Any) -> tuple[int, ...]:
    """A shape as a tuple of non-negative ints (a bare integer is a 1-D shape, as in NumPy)."""
    hint = "pass a tuple of non-negative integers, e.g. (6, 3)"
    single = _arrays.as_integer(shape)
    try:
        items = (shape,) if single is not None else tuple(shape)
    except TypeError:
        raise TypeError(f"RowSparseArray: shape must be a tuple of integers, got "
                        f"{type(shape).__name__} {shape!r}; {hint}") from None
    dims = tuple(_arrays.as_integer(d) for d in items)
    for d, dim in zip(items, dims):
        if dim is None:
            raise TypeError(f"RowSparseArray: shape {shape!r} holds {d!r}, a "
                            f"{type(d).__name__}, not an integer; {hint}")
    if not dims:
        raise ValueError("RowSparseArray: shape () has no dimension; a row_sparse array needs at "
                         "least one (its rows)")
    if any(d < 0 for d in dims):
        raise ValueError(f"RowSparseArray: shape {dims} has a negative size; {hint}")
    if int(np.prod(dims, dtype=object)) > _INT64_MAX:
        raise ValueError(f"RowSparseArray: shape {dims} has more than 2**63 - 1 elements")
    return dims


def _own_view(data: Any) -> Any:
    """A new array object over data's memory: later changes to the caller's object (its shape,
    strides or dtype) cannot reach it."""
    if isinstance(data, np.ndarray):
        return data.view(np.ndarray)
    return data.view(data.shape)


def _private_int64(indices: Any) -> Any:
    """A new C-contiguous int64 copy of an integer index array or tensor."""
    if isinstance(indices, np.ndarray):
        return np.array(indices, dtype=np.int64, order="C", copy=True)
    import torch
    return indices.to(torch.int64, copy=True).contiguous()


def _check_range(indices: Any, given: Any, shape: tuple[int, ...]) -> None:
    """Every row index in ``[0, shape[0])``; the error names the caller's own value (a uint64
    of 2**63 or more wraps negative in ``indices``, never in ``given``)."""
    if not indices.shape[0]:
        return
    low, high = int(indices.min()), int(indices.max())
    if low >= 0 and high < shape[0]:
        return
    at = int(indices.argmin() if low < 0 else indices.argmax())
    raise ValueError(f"RowSparseArray: row index {given[at].item()} is out of range for shape "
                     f"{shape} (expected 0 <= index < {shape[0]})")


def _empty_list(x: Any) -> bool:
    """``[]`` or ``()``: no indices (NumPy would make them float64)."""
    return isinstance(x, (list, tuple)) and not x


def _frozen(indices: Any) -> Any:
    """Mark a private NumPy index array read-only (torch has no read-only tensors)."""
    if isinstance(indices, np.ndarray):
        indices.flags.writeable = False
    return indices


class RowSparseArray:
    """A row-sparse array over NumPy arrays or PyTorch tensors (CPU or CUDA).

    Args:
        data: the stored rows, shape ``(nnz,) + shape[1:]``. Their memory is shared, not copied.
        indices: 1-D integer row indices, in ``[0, shape[0])``, in any order (copied).
        shape: the full (dense) shape.

    Raises:
        TypeError: data or indices of an unsupported type, non-integer indices or sizes.
        ValueError: indices that are 2-D, negative or out of range, data rows that do not match
            the indices or the shape, or negative sizes.

    Examples:
        >>> import numpy as np
        >>> from adamop import RowSparseArray
        >>> g = RowSparseArray(np.ones((2, 3), np.float32), np.array([4, 1]), shape=(6, 3))
        >>> g.indices
        array([1, 4])
        >>> g.todense().sum(axis=1)
        array([0., 3., 0., 0., 3., 0.], dtype=float32)
    """

    __slots__ = ("_data", "_indices", "_shape", "_duplicates", "__weakref__")

    def __init__(self, data: Any, indices: Any, shape: Sequence[int]):
        shape = _as_shape(shape)
        lib = _arrays.library(data)
        if lib is None:
            if isinstance(data, (list, tuple)):
                data = np.asarray(data)
                lib = "numpy"
            else:
                raise TypeError(f"RowSparseArray: data must be a numpy.ndarray or torch.Tensor, "
                                f"got {_arrays.describe(data)}")
        if lib == "torch" and _arrays.torch_layout(data) != "strided":
            raise TypeError("RowSparseArray: data must be a dense torch tensor; for a sparse COO "
                            "tensor use RowSparseArray.from_torch(tensor)")
        given = self._given_indices(indices, lib, data)
        nnz = int(given.shape[0])
        want = (nnz,) + shape[1:]
        if tuple(data.shape) != want:
            raise ValueError(f"RowSparseArray: data has shape {tuple(data.shape)}, expected {want} "
                             f"({nnz} indices, rows of shape {shape[1:]}); give one data row per "
                             f"index")
        indices = _private_int64(given)
        _check_range(indices, given, shape)
        if nnz > 1 and not bool((indices[1:] > indices[:-1]).all()):
            order = (np.argsort(indices, kind="stable") if lib == "numpy"
                     else indices.argsort(stable=True))
            indices, data = indices[order], data[order]   # both new arrays: private already
        else:
            data = _own_view(data)
        self._data, self._indices, self._shape = data, _frozen(indices), shape
        self._duplicates = None
        if nnz > 1:
            same = indices[1:] == indices[:-1]
            if bool(same.any()):
                dup = np.unique(_arrays.numpy_view(indices[1:][same].cpu()) if lib == "torch"
                                else indices[1:][same])
                self._duplicates = tuple(int(i) for i in dup)

    @staticmethod
    def _given_indices(indices: Any, lib: str, data: Any) -> Any:
        """The caller's indices as an array of data's library, checked for kind and rank."""
        if lib == "numpy":
            if _arrays.library(indices) == "torch":
                raise TypeError("RowSparseArray: data is a numpy array but indices is a torch "
                                "tensor; use the same library for both")
            try:
                indices = np.asarray(indices) if not _empty_list(indices) else np.zeros(0, np.int64)
            except (TypeError, ValueError):
                raise TypeError(f"RowSparseArray: indices must be a 1-D integer array, got "
                                f"{_arrays.describe(indices)}") from None
            if indices.dtype.kind not in "iu":
                raise TypeError(f"RowSparseArray: indices must be integers, got dtype "
                                f"{indices.dtype}; convert with indices.astype(np.int64)")
            if indices.ndim != 1:
                raise ValueError(f"RowSparseArray: indices must be 1-D, got shape {indices.shape}")
            return indices
        import torch
        if not isinstance(indices, torch.Tensor):
            try:
                indices = torch.as_tensor(np.asarray(indices) if not _empty_list(indices) else
                                          np.zeros(0, np.int64), device=data.device)
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(f"RowSparseArray: indices must be a 1-D integer tensor, got "
                                f"{_arrays.describe(indices)}") from None
        if (indices.dtype.is_floating_point or indices.dtype.is_complex
                or indices.dtype == torch.bool):
            raise TypeError(f"RowSparseArray: indices must be integers, got dtype {indices.dtype}; "
                            f"convert with indices.long()")
        if indices.layout != torch.strided:
            raise TypeError(f"RowSparseArray: indices must be a dense tensor, got layout "
                            f"{indices.layout}")
        if indices.dim() != 1:
            raise ValueError(f"RowSparseArray: indices must be 1-D, got shape "
                             f"{tuple(indices.shape)}")
        if indices.device != data.device:
            raise ValueError(f"RowSparseArray: indices are on {indices.device} but data is on "
                             f"{data.device}; move both to one device")
        return indices

    @classmethod
    def _canonical(cls, data: Any, indices: Any, shape: tuple[int, ...]) -> "RowSparseArray":
        """An array from rows already known to be canonical (int64 indices sorted, unique, in
        range; data matching), without the checks, which would read the indices. The caller
        hands both over: nothing else may hold them."""
        self = cls.__new__(cls)
        self._data, self._indices, self._shape = data, _frozen(indices), shape
        self._duplicates = None
        return self

    # ---- properties -------------------------------------------------------------------------
    @property
    def data(self) -> Any:
        """The stored rows, shape ``(nnz,) + shape[1:]``, in index order: a view (writing its
        elements writes this array's rows)."""
        return _own_view(self._data)

    @property
    def indices(self) -> Any:
        """The stored row indices: 1-D int64, ascending (NumPy: a read-only view; torch: a
        copy, as torch has no read-only tensors)."""
        if isinstance(self._indices, np.ndarray):
            return self._indices.view()
        return self._indices.clone()

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> Any:
        return self._data.dtype

    @property
    def nnz(self) -> int:
        """Number of stored rows."""
        return int(self._indices.shape[0])

    @property
    def stype(self) -> str:
        return "row_sparse"

    @property
    def library(self) -> str:
        """'numpy' or 'torch': the library of ``data`` and ``indices``."""
        return _arrays.library(self._data)

    @property
    def device(self) -> str:
        return _arrays.device(self._data)

    @property
    def duplicates(self) -> tuple[int, ...]:
        """Row indices stored more than once (empty for a coalesced array)."""
        return self._duplicates or ()

    def is_coalesced(self) -> bool:
        return self._duplicates is None

    def stores_all_rows(self) -> bool:
        return self._duplicates is None and self.nnz == self._shape[0]

    # ---- conversions ------------------------------------------------------------------------
    def coalesce(self) -> "RowSparseArray":
        """A new array with duplicate rows summed (self, if there are none)."""
        if self._duplicates is None:
            return self
        if self.library == "numpy":
            rows, inverse = np.unique(self._indices, return_inverse=True)
            summed = np.zeros((rows.shape[0],) + self._shape[1:], dtype=self._data.dtype)
            np.add.at(summed, inverse, self._data)
        else:
            import torch
            rows, inverse = torch.unique(self._indices, return_inverse=True)
            summed = torch.zeros((rows.shape[0],) + self._shape[1:], dtype=self._data.dtype,
                                 device=self._data.device)
            summed.index_add_(0, inverse, self._data)
        return RowSparseArray._canonical(summed, rows, self._shape)   # unique: sorted, in range

    def todense(self) -> Any:
        """The dense array (same library and device as ``data``); duplicate rows are summed."""
        src = self.coalesce()
        if self.library == "numpy":
            dense = np.zeros(self._shape, dtype=self._data.dtype)
        else:
            import torch
            dense = torch.zeros(self._shape, dtype=self._data.dtype, device=self._data.device)
        dense[src._indices] = src._data
        return dense

    asnumpy = todense

    def copy(self) -> "RowSparseArray":
        return RowSparseArray(self._data.copy() if self.library == "numpy" else self._data.clone(),
                              self._indices, self._shape)

    @classmethod
    def from_dense(cls, dense: Any, *, all_rows: bool = False) -> "RowSparseArray":
        """Rows of a dense array that hold a non-zero (MXNet's ``tostype('row_sparse')``), or all
        rows with ``all_rows=True`` (what a row_sparse *weight* must store). The rows are copied."""
        lib = _arrays.library(dense)
        if lib is None:
            raise TypeError(f"from_dense: expected a numpy.ndarray or torch.Tensor, got "
                            f"{_arrays.describe(dense)}")
        if dense.ndim < 1:
            raise ValueError("from_dense: a row_sparse array needs at least one dimension")
        n, row = dense.shape[0], int(np.prod(dense.shape[1:], dtype=np.int64))
        if lib == "numpy":   # the row length is explicit: reshape(n, -1) fails on 0 elements
            keep = np.arange(n) if all_rows else np.flatnonzero(dense.reshape(n, row).any(axis=1))
            return cls(dense[keep], keep, dense.shape)
        import torch
        keep = (torch.arange(n, device=dense.device) if all_rows
                else torch.nonzero(dense.reshape(n, row).any(dim=1)).flatten())
        return cls(dense[keep], keep, tuple(dense.shape))

    @classmethod
    def from_torch(cls, tensor: Any) -> "RowSparseArray":
        """From a torch sparse COO tensor (``nn.Embedding(sparse=True)`` makes them) or a dense one.

        A COO tensor's value sums its duplicate entries, so it is coalesced first: the result
        holds the same numbers as ``tensor.to_dense()``. In host memory its indices are checked
        (torch checks them only when asked), for every sparse dimension.
        """
        if not _arrays.is_torch_tensor(tensor):
            raise TypeError(f"from_torch: expected a torch.Tensor, got {_arrays.describe(tensor)}")
        layout = _arrays.torch_layout(tensor)
        if layout == "strided":
            return cls.from_dense(tensor)
        if layout != "sparse_coo":
            raise TypeError(f"from_torch: {layout} tensors are not supported (adamop supports "
                            f"dense and row_sparse storage; csr is out of scope); convert with "
                            f".to_dense() or .to_sparse_coo()")
        t = tensor.detach()
        shape = _as_shape(tuple(t.shape))
        trusted = t.is_coalesced() and t.sparse_dim() == 1 and t.device.type != "cpu"
        _check_coo(t, shape, check_range=not trusted)
        if trusted:
            # On a GPU a coalesced tensor's indices are taken as torch keeps them (sorted, unique,
            # in range; its own sparse ops assume as much): checking them would read them back
            # to the host and synchronise the update, which then could not be captured in a CUDA
            # graph. In host memory they are checked, which costs no synchronisation. Either way
            # the array keeps its own copy of them, so later changes to the tensor cannot reach it.
            return cls._canonical(t.values(), t.indices()[0].clone(), shape)
        if t.sparse_dim() == 0:   # one dense value (or none): every row is stored
            return cls.from_dense(t.to_dense(), all_rows=t._nnz() > 0)
        t = t.coalesce()
        if t.sparse_dim() == 1:   # checked again: a tensor may claim to be coalesced wrongly
            return cls(t.values(), t.indices()[0], shape)
        import torch
        idx = t.indices()
        rows, inverse = torch.unique(idx[0], return_inverse=True)
        data = torch.zeros((rows.shape[0],) + shape[1:], dtype=t.dtype, device=t.device)
        # accumulate: entries a wrongly 'coalesced' tensor repeats are summed, as to_dense() does
        data.index_put_((inverse,) + tuple(idx[1:]), t.values(), accumulate=True)
        return cls._canonical(data, rows, shape)   # torch.unique: sorted, unique, in range

    def to_torch(self) -> Any:
        """A coalesced torch sparse COO tensor with one sparse dimension (rows); its indices are
        a copy, its values share this array's memory."""
        import torch
        src = self.coalesce()
        data = src._data if src.library == "torch" else torch.from_numpy(src._data)
        idx = (src._indices.clone() if src.library == "torch"
               else torch.from_numpy(src._indices.copy()))
        # the indices were checked when this array was built (in range, sorted, unique)
        return torch.sparse_coo_tensor(idx.reshape(1, -1), data, self._shape, is_coalesced=True,
                                       check_invariants=False)

    def _set_rows(self, data: Any, indices: Any) -> None:
        """Replace the stored rows in place (the update's write-back into row_sparse states);
        the caller hands both over (canonical, and held by nothing else)."""
        self._data, self._indices, self._duplicates = data, _frozen(indices), None

    def __repr__(self) -> str:
        idx = self._indices if self.library == "numpy" else self._indices.cpu().numpy()
        shown = np.array2string(idx, threshold=8, edgeitems=3, separator=", ")
        dev = "" if self.device == "cpu" else f", device={self.device}"
        dup = f", duplicates={list(self.duplicates)}" if self._duplicates else ""
        dt = str(self.dtype).replace("torch.", "")
        return (f"RowSparseArray(shape={self._shape}, dtype={dt}, nnz={self.nnz}, "
                f"indices={shown}, library={self.library}{dev}{dup})")


def _check_coo(t: Any, shape: tuple[int, ...], *, check_range: bool) -> None:
    """A COO tensor's parts agree with its shape (torch's unsafe constructors skip this) and, with
    ``check_range``, every index of every sparse dimension is in ``[0, size)`` (a negative one
    would wrap). Reading the indices synchronises a GPU, hence the option."""
    sparse_dim, idx, values = t.sparse_dim(), t._indices(), t._values()
    nnz = int(values.shape[0]) if values.dim() else -1
    if tuple(idx.shape) != (sparse_dim, nnz) or tuple(values.shape[1:]) != shape[sparse_dim:]:
        raise ValueError(f"from_torch: a COO tensor of shape {shape} with {sparse_dim} sparse "
                         f"dimension(s) has indices of shape {tuple(idx.shape)} and values of "
                         f"shape {tuple(values.shape)}; expected ({sparse_dim}, nnz) and "
                         f"(nnz,) + {shape[sparse_dim:]}")
    if not check_range or not nnz:
        return
    low, high = idx.min(dim=1).values.tolist(), idx.max(dim=1).values.tolist()
    for d, (lo, hi) in enumerate(zip(low, high)):
        if lo < 0 or hi >= shape[d]:
            bad = lo if lo < 0 else hi
            what = f"row index {bad}" if d == 0 else f"index {bad} of dimension {d}"
            raise ValueError(f"from_torch: {what} is out of range for shape {shape} "
                             f"(expected 0 <= index < {shape[d]}); "
                             f"torch.sparse_coo_tensor(..., check_invariants=True) catches this "
                             f"where the tensor is built")
