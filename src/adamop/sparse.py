"""MXNet-style constructors for row_sparse arrays (``mx.nd.sparse.row_sparse_array``)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import _arrays
from .storage import RowSparseArray

__all__ = ["row_sparse_array", "RowSparseArray"]


def row_sparse_array(arg: Any, shape: Sequence[int] | None = None, dtype: Any = None
                     ) -> RowSparseArray:
    """Build a :class:`RowSparseArray` as ``mx.nd.sparse.row_sparse_array`` does.

    Args:
        arg: ``(data, indices)``, a dense array (its non-zero rows are kept), or a
            ``RowSparseArray`` (copied).
        shape: the dense shape; required with ``(data, indices)`` when rows may be missing at the
            end (defaults to ``(max(indices) + 1,) + data.shape[1:]``, as MXNet infers it).
        dtype: cast the data to this dtype (NumPy data only).

    Examples:
        >>> import numpy as np
        >>> from adamop.sparse import row_sparse_array
        >>> row_sparse_array((np.ones((1, 2)), [3]), shape=(5, 2)).shape
        (5, 2)
    """
    if isinstance(arg, RowSparseArray):
        out = arg.copy()
    elif isinstance(arg, tuple) and len(arg) == 2:
        data, indices = arg
        if _arrays.library(data) is None:
            data = np.asarray(data, dtype=dtype if dtype is not None else np.float32)
        if shape is None:
            idx = np.asarray(indices.cpu() if _arrays.is_torch_tensor(indices) else indices)
            if idx.size == 0:
                raise ValueError("row_sparse_array: shape is required when there are no indices")
            shape = (int(idx.max()) + 1,) + tuple(data.shape[1:])
        out = RowSparseArray(data, indices, shape)
    elif _arrays.library(arg) is not None or isinstance(arg, (list, np.generic)):
        dense = arg if _arrays.library(arg) else np.asarray(arg, dtype=np.float32)
        out = RowSparseArray.from_dense(dense)
        if shape is not None and tuple(shape) != out.shape:
            raise ValueError(f"row_sparse_array: shape {tuple(shape)} does not match the dense "
                             f"array's shape {out.shape}")
    else:
        raise TypeError(f"row_sparse_array: expected (data, indices), a dense array or a "
                        f"RowSparseArray, got {_arrays.describe(arg)}")
    if dtype is not None and out.library == "numpy" and out.dtype != np.dtype(dtype):
        out = RowSparseArray(out.data.astype(dtype), out.indices, out.shape)
    return out
