"""Validation in bulk: the dense, contiguous updates of a whole model checked in one pass.

A training step updates thousands of parameters, so their metadata is read with C-level maps
(torch) or one compiled loop over NumPy's array headers (:mod:`adamop._headers`), and every rule is
a vectorised comparison over those tables. An update passes when it is the plain case: dense
arrays of one library, float dtype, shape and device, C-contiguous and aligned, states and output
writeable, overlapping only as the kernel allows (``out`` exactly one of the inputs, ``weight``
exactly ``grad``). Anything else is left to :mod:`adamop.validate`, which accepts or refuses every
input with its message; this module never refuses anything.

The same read is the plan's fingerprint: a plan made from it is valid for any later call whose
arrays read the same (address, layout, dtype, device), which is what :class:`adamop.planner
.Planner` compares before it re-runs one.
"""
from __future__ import annotations

import operator
import sys
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any, Sequence

import numpy as np

from . import _arrays, _headers
from ._arrays import FLOAT_DTYPES

__all__ = ["Bulk", "Fingerprint", "fingerprint", "same", "read", "ROLES", "WRITTEN"]

ROLES = ("weight", "grad", "mean", "var", "out")
WRITTEN = (False, False, True, True, True)   # by role: the kernel writes mean, var and out
# role pairs that may share memory, as identical views only: the kernel reads each element of
# every input before it writes out, and weight and grad are both only read.
_MAY_BE_IDENTICAL = {(0, 1), (0, 4), (1, 4), (2, 4), (3, 4)}
_FLOAT_DESCRS = {id(dt): dt for dt in FLOAT_DTYPES}


@dataclass(slots=True)
class Bulk:
    """What one bulk read found, per update (task) of a batch.

    Attributes:
        library: 'numpy' or 'torch'.
        key: the :class:`Fingerprint` it was read from.
        ok: bool [T]: the update passed every bulk rule.
        addresses: int64 [T, 5]: data address of weight, grad, mean, var and out.
        nbytes: int64 [T]: bytes of each array of the update.
        sizes: int64 [T]: elements.
        dtypes: the numpy dtype of each update (None where not a float dtype).
        devices: the device of each update ('cpu', 'cuda:0', ...).
    """

    library: str
    key: Any
    ok: np.ndarray
    addresses: np.ndarray
    nbytes: np.ndarray
    sizes: np.ndarray
    dtypes: list
    devices: list


@dataclass(slots=True)
class Fingerprint:
    """The cheap part of a bulk read, enough to tell whether a kept plan still applies.

    ``every`` holds the arrays read, role by role; with ``in_place`` the outs are the weights
    themselves and are not read twice."""

    library: str
    key: Any
    every: list
    in_place: bool


def fingerprint(columns: Sequence[Sequence[Any]]) -> Fingerprint | None:
    """Read ``columns`` = (weights, grads, means, vars, outs) in bulk: each array's address,
    layout, dtype and device. None if the arrays are not all plain NumPy arrays, or all plain
    strided torch tensors with storage (the general path then handles every update)."""
    in_place = all(map(operator.is_, columns[4], columns[0]))
    every = list(chain.from_iterable(columns[:4] if in_place else columns))
    kinds = set(map(type, every))
    if kinds == {np.ndarray}:
        return Fingerprint("numpy", _headers.read(every), every, in_place)
    torch = sys.modules.get("torch")
    if torch is not None and kinds <= {torch.Tensor, torch.nn.Parameter}:
        T = torch.Tensor
        try:   # a tensor without storage (sparse, meta) has no address: not the plain case
            ptrs = list(map(T.data_ptr, every))
        except RuntimeError:
            return None
        # (types need no column: Tensor and Parameter are the same to a kernel)
        return Fingerprint("torch", (ptrs, list(map(T.stride, every)), list(map(T.numel, every)),
                                     list(map(_DTYPE, every)), list(map(_DEVICE, every))), every,
                           in_place)
    return None


def same(a: Fingerprint, b: Fingerprint) -> bool:
    """True if two fingerprints read alike (the arrays kept their addresses and layouts)."""
    if a.library != b.library or a.in_place != b.in_place:
        return False
    if a.library == "numpy":
        return a.key.shape == b.key.shape and bool(np.array_equal(a.key, b.key))
    return a.key == b.key


def read(columns: Sequence[Sequence[Any]], found: Fingerprint) -> Bulk | None:
    """Apply every bulk rule to the arrays of ``found`` (their fingerprint), per update."""
    if found.library == "numpy":
        return _read_numpy(columns, found)
    return _read_torch(columns, found, sys.modules["torch"])


# ---- NumPy ---------------------------------------------------------------------------------------
def _read_numpy(columns: Sequence[Sequence[Any]], found: Fingerprint) -> Bulk:
    n = len(columns[0])
    table = found.key.reshape(-1, n, _headers.COLUMNS)
    if found.in_place:
        table = np.concatenate([table, table[:1]])
    descr = table[:, :, _headers.DESCR]
    flags = table[:, :, _headers.FLAGS]
    shape = table[:, :, _headers.NDIM:]
    usable = _headers.C_CONTIGUOUS | _headers.ALIGNED
    ok = ((descr == descr[0]).all(axis=0) & (shape == shape[0]).all(axis=(0, 2))
          & ((flags & usable) == usable).all(axis=0)
          & ((flags[2:] & _headers.WRITEABLE) != 0).all(axis=0))
    dtypes = [_FLOAT_DESCRS.get(d) for d in descr[0].tolist()]
    ok &= np.fromiter((d is not None for d in dtypes), bool, n)
    itemsize = np.array([d.itemsize if d is not None else 0 for d in dtypes], np.int64)
    sizes = table[0, :, _headers.SIZE]
    nbytes = sizes * itemsize
    addresses = np.ascontiguousarray(table[:, :, _headers.ADDRESS].T)
    ok &= _aliasing_allowed(addresses, nbytes)
    return Bulk("numpy", found, ok, addresses, nbytes, sizes, dtypes, ["cpu"] * n)


# ---- torch ---------------------------------------------------------------------------------------
_DTYPE = operator.attrgetter("dtype")
_DEVICE = operator.attrgetter("device")
_LAYOUT = operator.attrgetter("layout")


def _read_torch(columns: Sequence[Sequence[Any]], found: Fingerprint, torch: Any) -> Bulk | None:
    T = torch.Tensor
    n = len(columns[0])
    if not _NUMPY_DTYPES:
        _NUMPY_DTYPES.update({getattr(torch, d.name): d for d in FLOAT_DTYPES})
    every, (ptrs, _, numels, dtypes, devices) = found.every, found.key
    if found.in_place:   # the outs are the weights: their rows, again
        every, ptrs, numels, dtypes, devices = (x + x[:n] for x in (every, ptrs, numels, dtypes,
                                                                     devices))
    # Rules beyond the fingerprint, read only when a plan is made (sizes cost ~0.7 us a tensor).
    if set(map(_LAYOUT, every)) != {torch.strided}:
        return None
    sizes_all = list(map(T.size, every))
    contiguous = np.fromiter(map(T.is_contiguous, every), bool, 5 * n)
    # A kept plan is re-checked by strides and element count, which pin the shape only where the
    # strides are the canonical ones of a contiguous shape. They are but for a size-1 dimension
    # whose stride was left as some view made it (``x[:, None].t()``): such tensors go the
    # general way (checked here, for the few tensors that have a size-1 dimension at all).
    for i in np.flatnonzero(np.fromiter(map(operator.contains, sizes_all, repeat(1)), bool,
                                        5 * n) & contiguous).tolist():
        contiguous[i] = _canonical(sizes_all[i], every[i].stride())
    contiguous = contiguous.reshape(5, n)
    inference = np.fromiter(map(T.is_inference, every), bool, 5 * n).reshape(5, n)

    def same(values: list) -> np.ndarray:
        first = values[:n]
        return np.all([list(map(operator.eq, first, values[k * n:(k + 1) * n]))
                       for k in range(1, 5)], axis=0)

    np_dtypes = [_NUMPY_DTYPES.get(d) for d in dtypes[:n]]
    ok = (same(dtypes) & same(devices) & same(sizes_all) & contiguous.all(axis=0)
          & ~inference[2:].any(axis=0))
    ok &= np.fromiter((d is not None for d in np_dtypes), bool, n)
    itemsize = np.array([d.itemsize if d is not None else 0 for d in np_dtypes], np.int64)
    addresses = np.array(ptrs, np.int64).reshape(5, n).T.copy()
    sizes = np.array(numels[:n], np.int64)
    nbytes = sizes * itemsize
    ok &= ((addresses % np.maximum(itemsize, 1)[:, None]) == 0).all(axis=1)
    ok &= _aliasing_allowed(addresses, nbytes)
    names = [_device_name(d) for d in devices[:n]]
    if "cpu" in names:
        ok &= _writeable_memory(addresses[:, 2:], nbytes, [d == "cpu" for d in names])
    return Bulk("torch", found, ok, addresses, nbytes, sizes, np_dtypes, names)


def _canonical(size: tuple, stride: tuple) -> bool:
    """True if ``stride`` is the C-contiguous stride of ``size`` (size-1 dimensions included)."""
    expected = 1
    for n, st in zip(reversed(size), reversed(stride)):
        if st != expected:
            return False
        expected *= n
    return True


def _device_name(device: Any) -> str:
    return "cpu" if device.type == "cpu" else str(device)


_NUMPY_DTYPES: dict = {}   # torch float dtype -> numpy dtype, filled on first use




def _writeable_memory(written: np.ndarray, nbytes: np.ndarray, on_cpu: list) -> np.ndarray:
    """False for updates whose written host memory lies in a read-only mapping (see
    :func:`adamop._arrays.in_readonly_memory`)."""
    bad = _arrays.in_readonly_memory(written, np.broadcast_to(nbytes[:, None], written.shape))
    return ~(bad.any(axis=1) & np.array(on_cpu, bool))


# ---- aliasing within an update -------------------------------------------------------------------
def _aliasing_allowed(addresses: np.ndarray, nbytes: np.ndarray) -> np.ndarray:
    """True for updates whose five arrays overlap only as identical views the kernel allows."""
    lo, hi = addresses, addresses + nbytes[:, None]
    ok = np.ones(len(nbytes), bool)
    nonempty = nbytes > 0
    for a in range(5):
        for b in range(a + 1, 5):
            overlap = (lo[:, a] < hi[:, b]) & (lo[:, b] < hi[:, a]) & nonempty
            if (a, b) in _MAY_BE_IDENTICAL:
                overlap &= lo[:, a] != lo[:, b]   # same start and size: the same view
            ok &= ~overlap
    return ok
