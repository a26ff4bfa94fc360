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
import weakref
from collections.abc import Mapping
from typing import Any, Union

import numpy as np

from . import _ndfile as F
from . import _ndvalues as V
from ._files import write_atomically

__all__ = ["NDArrayDict", "NDArrayList", "load", "load_frombuffer", "save", "save_tobuffer"]

class _Loaded:
    """What a loaded file remembers: each array's :class:`~adamop._ndfile.Layout`, by identity
    (an array replaced by another one is written as a new array), and whether it was np-shape.
    Arrays are held weakly where they can be, so dropping an entry frees its memory."""
    np_shape: bool = False

    def _remember(self, value: Any, layout: F.Layout) -> None:
        if "_layouts" not in self.__dict__:
            self._layouts: dict[int, tuple[Any, F.Layout, Any]] = {}
        # rows that were not ascending in the file go back in file order while they are the
        # rows loaded (RowSparseArray hands out fresh index arrays: compared by value)
        rows = V.host(value.indices, F.INT64).copy() if layout.row_order is not None else None
        try:
            ref = weakref.ref(value)
        except TypeError:          # no weak references (RowSparseArray): held as it is
            ref = (lambda v: lambda: v)(value)
        self._layouts[id(value)] = (ref, layout, rows)

    def _layout_of(self, value: Any) -> F.Layout | None:
        entry = self.__dict__.get("_layouts", {}).get(id(value))
        if entry is None or entry[0]() is not value:
            return None
        layout, rows = entry[1], entry[2]
        if rows is not None and not np.array_equal(V.host(value.indices, F.INT64), rows):
            layout = dataclasses.replace(layout, row_order=None)    # other rows now
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
        An :class:`NDArrayDict` (a file with names, in file order; a repeated name keeps its
        last array, as ``mx.nd.load`` does) or :class:`NDArrayList` (a file without names).

    Raises:
        ValueError: the file is not a well-formed MXNet NDArray file (the message names the file,
            the record and what is wrong).
        ImportError: a csr array needs scipy (or ``as_torch=True``), or as_torch needs torch.

    Examples:
        >>> import numpy as np, adamop.nd, tempfile, os
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = os.path.join(folder.name, "w.params")
        >>> adamop.nd.save(path, {"fc1_weight": np.ones((2, 3), np.float32)})
        >>> adamop.nd.load(path)["fc1_weight"].shape
        (2, 3)
        >>> folder.cleanup()
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
    values = [V.to_value(rec, f"{reader.source}: {label}", as_torch)
              for rec, label in zip(records, labels)]
    out: Loaded = NDArrayDict(zip(names, values)) if names else NDArrayList(values)
    out.np_shape = bool(records) and all(r.layout.version == F.V3 for r in records)
    for value, rec in zip(values, records):
        out._remember(value, rec.layout)
    return out


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
    write_atomically(path, lambda f: F.write_file(f.write, records, names))


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
        for name in names:
            try:
                name.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(f"save: name {name!r} cannot be written as UTF-8 ({exc.reason})"
                                 ) from None
        values, labels = list(data.values()), [repr(k) for k in names]
    elif isinstance(data, (list, tuple)):
        names, values = None, list(data)
        labels = [f"item {i}" for i in range(len(values))]
    elif V.is_array(data):
        names, values, labels = None, [data], ["the array"]
    else:
        raise TypeError(f"save: expected a dict of name -> array, a list of arrays or one array, "
                        f"got {type(data).__name__}")
    known = data._layout_of if isinstance(data, _Loaded) else (lambda v: None)
    records = [V.to_record(v, f"save: {label}", known(v)) for v, label in zip(values, labels)]
    if np_shape is not None:
        version, why = (F.V3 if np_shape else F.V2), "np_shape=True"
    elif isinstance(data, _Loaded):
        version, why = (F.V3 if data.np_shape else F.V2), "the file it came from is np-shape"
    else:
        version = F.V3 if any(r.stype == F.DEFAULT and (r.data.ndim == 0 or r.data.size == 0)
                              for r in records) else F.V2
        why = "another array is 0-d or zero-size"
    for rec, value, label in zip(records, values, labels):
        if np_shape is not None or known(value) is None:
            rec.layout = dataclasses.replace(rec.layout, version=version)
        _check_version(rec, label, why)
    return records, names


def _check_version(rec: F.Record, label: str, why: str) -> None:
    v = rec.layout.version
    if v == F.V3 and rec.stype != F.DEFAULT:
        raise ValueError(f"save: {label} is {F.STYPE_NAMES[rec.stype]}, which MXNet cannot store "
                         f"under np-shape (V3: {why}); save it in a separate file or densify it")
    if v == F.V2 and rec.stype == F.DEFAULT and rec.data.ndim == 0:
        raise ValueError(f"save: {label} is 0-d, which MXNet loads only from np-shape (V3) files; "
                         f"save with np_shape=True (or reshape it to (1,))")
    if v == F.LEGACY and any(d >= 2 ** 32 for d in rec.shape):
        rec.layout = dataclasses.replace(rec.layout, version=F.V2)


