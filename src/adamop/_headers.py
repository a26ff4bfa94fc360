"""NumPy array headers read in bulk: address, size, flags, dtype and shape of many arrays at once.

A whole model's update is checked on every step, so the metadata of thousands of arrays is read
per call. ``__array_interface__`` costs ~4 us per array; reading NumPy's public
``PyArrayObject_fields`` struct in one compiled loop costs ~20 ns. That needs Numba; without it
(or on an interpreter whose layout does not match, checked once against ``__array_interface__``)
the same table is built in Python.
"""
from __future__ import annotations

import importlib.util
from typing import Sequence

import numpy as np

__all__ = ["read", "COLUMNS", "MAX_DIMS", "C_CONTIGUOUS", "ALIGNED", "WRITEABLE"]

MAX_DIMS = 8                      # arrays with more dimensions read as unusable (flags 0)
# columns of the table: data address, size, flags, id of the dtype, ndim, then the dims
ADDRESS, SIZE, FLAGS, DESCR, NDIM, DIMS = range(6)
COLUMNS = DIMS + MAX_DIMS
C_CONTIGUOUS, ALIGNED, WRITEABLE = 0x1, 0x100, 0x400   # NumPy's NPY_ARRAY_* flag bits

_HEAD = object.__basicsize__      # bytes before PyArrayObject_fields.data (16 on 64-bit CPython)
_reader = None                    # the compiled reader, once it passed the layout check


def _read_python(arrays: Sequence[np.ndarray]) -> np.ndarray:
    table = np.zeros((len(arrays), COLUMNS), np.int64)
    for i, a in enumerate(arrays):
        nd = a.ndim
        flags = ((C_CONTIGUOUS if a.flags.c_contiguous else 0) | (ALIGNED if a.flags.aligned
                 else 0) | (WRITEABLE if a.flags.writeable else 0)) if nd <= MAX_DIMS else 0
        table[i, :DIMS] = (a.__array_interface__["data"][0], a.size, flags, id(a.dtype), nd)
        table[i, DIMS:DIMS + min(nd, MAX_DIMS)] = a.shape[:MAX_DIMS]
    return table


def _compile():
    from llvmlite import ir
    from numba import njit, types
    from numba.extending import intrinsic

    @intrinsic
    def peek(typingctx, address, width):
        """The integer of ``width`` (a literal 4 or 8) bytes stored at ``address``."""
        bits = width.literal_value * 8 if isinstance(width, types.IntegerLiteral) else 64
        result = types.int64 if bits == 64 else types.int32

        def codegen(context, builder, sig, args):
            return builder.load(builder.inttoptr(args[0], ir.IntType(bits).as_pointer()))
        return result(address, width), codegen

    @njit(cache=True)
    def read_headers(ids, head, max_dims, columns):
        """The table of :func:`read` from the arrays' ``id()`` (the caller keeps them alive):
        ``data``, ``nd``, ``dimensions`` and ``descr``/``flags`` of PyArrayObject_fields."""
        table = np.zeros((ids.shape[0], columns), np.int64)
        for i in range(ids.shape[0]):
            obj = ids[i]
            nd = peek(obj + head + 8, 4)
            dims = peek(obj + head + 16, 8)
            size = 1
            for d in range(nd):
                size *= peek(dims + 8 * d, 8)
            table[i, 0] = peek(obj + head, 8)
            table[i, 1] = size
            table[i, 2] = (peek(obj + head + 48, 4) & 0x501) if nd <= max_dims else 0
            table[i, 3] = peek(obj + head + 40, 8)
            table[i, 4] = nd
            for d in range(min(nd, max_dims)):
                table[i, 5 + d] = peek(dims + 8 * d, 8)
        return table

    return read_headers


def _layout_ok(reader) -> bool:
    """True if the struct read gives what ``__array_interface__`` says, on this interpreter."""
    probe = [np.zeros((3, 5), np.float32), np.zeros(7)[::2], np.zeros((2, 3)).T,
             np.zeros(0, np.float16), np.zeros((), np.float64), np.ones(4, np.float16)[1:]]
    probe[3].flags.writeable = False
    got = reader(np.array([id(a) for a in probe], np.int64), _HEAD, MAX_DIMS, COLUMNS)
    return bool(np.array_equal(got, _read_python(probe)))


def read(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """int64 table ``[len(arrays), COLUMNS]`` of the arrays' headers (see the column constants).

    ``flags`` keeps only C_CONTIGUOUS, ALIGNED and WRITEABLE, and is 0 for arrays of more than
    MAX_DIMS dimensions. Every element of ``arrays`` must be a ``numpy.ndarray``.
    """
    global _reader
    if _reader is None:
        _reader = False
        if importlib.util.find_spec("numba") is not None:
            try:
                compiled = _compile()
                if _layout_ok(compiled):
                    _reader = compiled
            except Exception:   # an unusual interpreter or a broken numba: the portable path
                _reader = False
    if _reader is False:
        return _read_python(arrays)
    ids = np.fromiter(map(id, arrays), np.int64, len(arrays))
    return _reader(ids, _HEAD, MAX_DIMS, COLUMNS)
