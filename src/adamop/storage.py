"""``RowSparseArray``: MXNet's ``row_sparse`` storage, validated and canonical on construction.

A row-sparse array of shape ``(n, *rest)`` stores a subset of its rows: ``indices`` (1-D int64,
ascending) names them and ``data`` (shape ``(nnz, *rest)``) holds them; every other row is zero.
Unsorted indices are sorted together with their rows when the array is built (MXNet's std update
silently mixes rows up otherwise: SPEC A.5). Duplicate indices are kept but flagged: the update
refuses them (in MXNet they race), and :meth:`RowSparseArray.coalesce` sums them on request.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import _arrays

__all__ = ["RowSparseArray"]


def _as_shape(shape: Any) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in shape)
    except TypeError:
        raise TypeError(f"RowSparseArray: shape must be a tuple of ints, got {shape!r}") from None
    if not dims or any(d < 0 for d in dims) or any(int(d) != d for d in shape):
        raise ValueError(f"RowSparseArray: shape must have at least one dimension and no negative "
                         f"sizes, got {shape!r}")
    return dims


class RowSparseArray:
    """A row-sparse array over NumPy arrays or PyTorch tensors (CPU or CUDA).

    Args:
        data: the stored rows, shape ``(nnz,) + shape[1:]``.
        indices: 1-D integer row indices, in ``[0, shape[0])``, in any order.
        shape: the full (dense) shape.

    Raises:
        TypeError: data or indices of an unsupported type, or non-integer indices.
        ValueError: indices that are 2-D, negative or out of range, or data rows that do not
            match the indices or the shape.

    Examples:
        >>> import numpy as np
        >>> from adamop import RowSparseArray
        >>> g = RowSparseArray(np.ones((2, 3), np.float32), np.array([4, 1]), shape=(6, 3))
        >>> g.indices
        array([1, 4])
        >>> g.todense().sum(axis=1)
        array([0., 3., 0., 0., 3., 0.], dtype=float32)
    """

    __slots__ = ("_data", "_indices", "_shape", "_duplicates")

    def __init__(self, data: Any, indices: Any, shape: Sequence[int]):
        shape = _as_shape(shape)
        lib = _arrays.library(data)
        if lib is None:
            if isinstance(data, (list, tuple)):
                data = np.asarray(data)
                lib = "numpy"
            else:
                raise TypeError(f"RowSparseArray: data must be a numpy.ndarray or torch.Tensor, "
                                f"got "
                                f"{_arrays.describe(data)}")
        if lib == "torch" and _arrays.torch_layout(data) != "strided":
            raise TypeError("RowSparseArray: data must be a dense torch tensor; for a sparse COO "
                            "tensor use RowSparseArray.from_torch(tensor)")
        indices = self._as_indices(indices, lib, data)
        nnz = int(indices.shape[0])
        want = (nnz,) + shape[1:]
        if tuple(data.shape) != want:
            raise ValueError(f"RowSparseArray: data has shape {tuple(data.shape)}, expected {want} "
                             f"({nnz} indices, rows of shape {shape[1:]}); give one data row per "
                             f"index")
        if nnz:
            low, high = int(indices.min()), int(indices.max())
            if low < 0 or high >= shape[0]:
                bad = low if low < 0 else high
                raise ValueError(f"RowSparseArray: row index {bad} is out of range for shape "
                                 f"{shape} (expected 0 <= index < {shape[0]})")
        if nnz > 1 and not bool((indices[1:] > indices[:-1]).all()):
            order = (np.argsort(indices, kind="stable") if lib == "numpy"
                     else indices.argsort(stable=True))
            indices, data = indices[order], data[order]
        self._data, self._indices, self._shape = data, indices, shape
        self._duplicates = None
        if nnz > 1:
            same = indices[1:] == indices[:-1]
            if bool(same.any()):
                dup = np.unique(_arrays.numpy_view(indices[1:][same].cpu()) if lib == "torch"
                                else indices[1:][same])
                self._duplicates = tuple(int(i) for i in dup)

    @staticmethod
    def _as_indices(indices: Any, lib: str, data: Any) -> Any:
        if lib == "numpy":
            if _arrays.library(indices) == "torch":
                raise TypeError("RowSparseArray: data is a numpy array but indices is a torch "
                                "tensor; use the same library for both")
            indices = np.asarray(indices)
            if indices.dtype.kind not in "iu" or indices.dtype == np.bool_:
                raise TypeError(f"RowSparseArray: indices must be integers, got dtype "
                                f"{indices.dtype}; convert with indices.astype(np.int64)")
            if indices.ndim != 1:
                raise ValueError(f"RowSparseArray: indices must be 1-D, got shape {indices.shape}")
            return np.ascontiguousarray(indices, dtype=np.int64)
        import torch
        if not isinstance(indices, torch.Tensor):
            indices = torch.as_tensor(np.asarray(indices), device=data.device)
        if (indices.dtype.is_floating_point or indices.dtype.is_complex
                or indices.dtype == torch.bool):
            raise TypeError(f"RowSparseArray: indices must be integers, got dtype {indices.dtype}; "
                            f"convert with indices.long()")
        if indices.dim() != 1:
            raise ValueError(f"RowSparseArray: indices must be 1-D, got shape "
                             f"{tuple(indices.shape)}")
        if indices.device != data.device:
            raise ValueError(f"RowSparseArray: indices are on {indices.device} but data is on "
                             f"{data.device}; move both to one device")
        return indices.to(torch.int64).contiguous()

    @classmethod
    def _canonical(cls, data: Any, indices: Any, shape: tuple[int, ...]) -> "RowSparseArray":
        """An array from rows already known to be canonical (int64 indices sorted, unique, in
        range; data matching), without the checks, which would read the indices."""
        self = cls.__new__(cls)
        self._data, self._indices, self._shape, self._duplicates = data, indices, shape, None
        return self

    # ---- properties -------------------------------------------------------------------------
    @property
    def data(self) -> Any:
        """The stored rows, shape ``(nnz,) + shape[1:]``, in index order."""
        return self._data

    @property
    def indices(self) -> Any:
        """The stored row indices: 1-D int64, ascending."""
        return self._indices

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
        return RowSparseArray(summed, rows, self._shape)

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
        rows with ``all_rows=True`` (what a row_sparse *weight* must store)."""
        lib = _arrays.library(dense)
        if lib is None:
            raise TypeError(f"from_dense: expected a numpy.ndarray or torch.Tensor, got "
                            f"{_arrays.describe(dense)}")
        if dense.ndim < 1:
            raise ValueError("from_dense: a row_sparse array needs at least one dimension")
        n = dense.shape[0]
        if lib == "numpy":
            keep = (np.arange(n) if all_rows
                    else np.flatnonzero(dense.reshape(n, -1).any(axis=1)) if n else np.arange(0))
            return cls(dense[keep], keep, dense.shape)
        import torch
        keep = (torch.arange(n, device=dense.device) if all_rows
                else torch.nonzero(dense.reshape(n, -1).any(dim=1)).flatten())
        return cls(dense[keep], keep, tuple(dense.shape))

    @classmethod
    def from_torch(cls, tensor: Any) -> "RowSparseArray":
        """From a torch sparse COO tensor (``nn.Embedding(sparse=True)`` makes them) or a dense one.

        A COO tensor's value sums its duplicate entries, so it is coalesced first: the result
        holds the same numbers as ``tensor.to_dense()``.
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
        shape = tuple(t.shape)
        if t.is_coalesced() and t.sparse_dim() == 1 and t.device.type != "cpu":
            # On a GPU a coalesced tensor's indices are taken as torch keeps them (sorted, unique,
            # in range; its own sparse ops assume as much): checking them would read them back
            # to the host and synchronise the update, which then could not be captured in a CUDA
            # graph. In host memory they are checked, which costs no synchronisation.
            return cls._canonical(t.values(), t.indices()[0], shape)
        t = t.coalesce()
        if t.sparse_dim() == 1:
            return cls(t.values(), t.indices()[0], shape)
        import torch
        rows, inverse = torch.unique(t.indices()[0], return_inverse=True)
        data = torch.zeros((rows.shape[0],) + shape[1:], dtype=t.dtype, device=t.device)
        data[(inverse,) + tuple(t.indices()[1:])] = t.values()
        return cls(data, rows, shape)

    def to_torch(self) -> Any:
        """A coalesced torch sparse COO tensor with one sparse dimension (rows)."""
        import torch
        src = self.coalesce()
        data = src._data if src.library == "torch" else torch.from_numpy(src._data)
        idx = src._indices if src.library == "torch" else torch.from_numpy(src._indices)
        # the indices were checked when this array was built (in range, sorted, unique)
        return torch.sparse_coo_tensor(idx.reshape(1, -1), data, self._shape, is_coalesced=True,
                                       check_invariants=False)

    def _set_rows(self, data: Any, indices: Any) -> None:
        """Replace the stored rows in place (the update's write-back into row_sparse states)."""
        self._data, self._indices, self._duplicates = data, indices, None

    def __repr__(self) -> str:
        idx = self._indices if self.library == "numpy" else self._indices.cpu().numpy()
        shown = np.array2string(idx, threshold=8, edgeitems=3, separator=", ")
        dev = "" if self.device == "cpu" else f", device={self.device}"
        dup = f", duplicates={list(self.duplicates)}" if self._duplicates else ""
        dt = str(self.dtype).replace("torch.", "")
        return (f"RowSparseArray(shape={self._shape}, dtype={dt}, nnz={self.nnz}, "
                f"indices={shown}, library={self.library}{dev}{dup})")
