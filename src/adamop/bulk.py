"""Validation in bulk: the dense, contiguous updates of a whole model checked in one pass.

A training step updates thousands of parameters, so their metadata is read with C-level maps
(torch) or one compiled loop over NumPy's array headers (:mod:`adamop._headers`), and every rule is
a vectorised comparison over those tables. An update passes when it is the plain case of its
operator (:class:`adamop.ops.OpDef`): dense arrays of one library, shape and device, of the
dtypes the op allows its roles, C-contiguous and aligned, the written ones writeable, overlapping
only as identical views the op allows. Anything else is left to :mod:`adamop.validate`, which
accepts or refuses every input with its message; this module never refuses anything.

The cheap part of the read is the plan's :class:`Fingerprint`: a plan made from it is valid for
any later call whose arrays read the same (address, layout, dtype, device), which is what
:class:`adamop.planner.Planner` compares before it runs one again.
"""
from __future__ import annotations

import operator
import sys
import weakref
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any, Sequence

import numpy as np

from . import _arrays, _headers
from ._arrays import FLOAT_DTYPES
from .ops import OpDef

__all__ = ["Bulk", "Fingerprint", "fingerprint", "same", "read"]

_FLOAT_DESCRS = {id(dt): dt for dt in FLOAT_DTYPES}
_DTYPE = operator.attrgetter("dtype")
_DEVICE = operator.attrgetter("device")
_LAYOUT = operator.attrgetter("layout")
_RESIZABLE = operator.methodcaller("resizable")
_TYPE = operator.attrgetter("type")
_ITEMSIZE = operator.attrgetter("itemsize")
_NUMPY_DTYPES: dict = {}   # torch float dtype -> numpy dtype, filled on first use


@dataclass(slots=True)
class Fingerprint:
    """The cheap part of a bulk read, enough to tell whether a kept plan still applies.

    ``every`` holds the arrays read, role by role; with ``in_place`` the outs are the weights
    themselves and are not read twice. ``digest`` (hashable: the library, ``in_place`` and the
    data addresses) is equal for fingerprints that read alike; :func:`same` compares the rest."""

    library: str
    key: Any
    every: list
    in_place: bool
    digest: Any


@dataclass(slots=True)
class Bulk:
    """What one bulk read found, per update (task) of a batch, roles in the op's order.

    Attributes:
        library: 'numpy' or 'torch'.
        key: the :class:`Fingerprint` it was read from.
        ok: bool [T]: the update passed every bulk rule.
        addresses: int64 [T, R]: data address of each role's array.
        nbytes: int64 [T, R]: bytes of each role's array.
        sizes: int64 [T]: elements.
        dtypes: per update, the tuple of its roles' numpy dtypes (None in it: not allowed).
        devices: the device of each update ('cpu', 'cuda:0', ...).
    """

    library: str
    key: Fingerprint
    ok: np.ndarray
    addresses: np.ndarray
    nbytes: np.ndarray
    sizes: np.ndarray
    dtypes: list
    devices: list


def fingerprint(columns: Sequence[Sequence[Any]]) -> Fingerprint | None:
    """Read ``columns`` (one list per role, ``out`` last) in bulk: each array's address, layout,
    dtype and device. None if the arrays are not all plain NumPy arrays, or all plain strided
    torch tensors with storage (the general path then handles every update)."""
    in_place = all(map(operator.is_, columns[-1], columns[0]))
    every = list(chain.from_iterable(columns[:-1] if in_place else columns))
    kinds = set(map(type, every))
    if kinds == {np.ndarray}:
        table = _headers.read(every)
        return Fingerprint("numpy", table, every, in_place,
                           ("numpy", in_place, table[:, _headers.ADDRESS].tobytes()))
    torch = sys.modules.get("torch")
    if torch is not None and kinds <= {torch.Tensor, torch.nn.Parameter}:
        T = torch.Tensor
        try:   # a tensor without storage (sparse, meta) has no address: not the plain case
            ptrs = list(map(T.data_ptr, every))
        except RuntimeError:
            return None
        # (types need no column: Tensor and Parameter are the same to a kernel). Beside the
        # layout, what a tensor at a reused address may differ in and the rules depend on: an
        # inference tensor may not be written, a lazily negated one does not hold its values,
        # and memory torch did not allocate (storage that cannot be resized) may be read-only.
        return Fingerprint("torch", (ptrs, list(map(T.stride, every)), list(map(T.numel, every)),
                                     list(map(_DTYPE, every)), list(map(_DEVICE, every)),
                                     list(map(T.is_inference, every)),
                                     list(map(T.is_neg, every)),
                                     list(map(_RESIZABLE, map(T.untyped_storage, every)))),
                           every, in_place, ("torch", in_place, tuple(ptrs)))
    return None


def same(a: Fingerprint, b: Fingerprint) -> bool:
    """True if two fingerprints read alike (the arrays kept their addresses and layouts)."""
    if a.digest != b.digest:
        return False
    return bool(np.array_equal(a.key, b.key)) if a.library == "numpy" else a.key == b.key


def read(op: OpDef, columns: Sequence[Sequence[Any]], found: Fingerprint) -> Bulk | None:
    """Apply every bulk rule of ``op`` to the arrays of ``found`` (their fingerprint)."""
    if found.library == "numpy":
        return _read_numpy(op, columns, found)
    return _read_torch(op, columns, found, sys.modules["torch"])


# ---- NumPy ---------------------------------------------------------------------------------------
def _read_numpy(op: OpDef, columns: Sequence[Sequence[Any]], found: Fingerprint) -> Bulk:
    n = len(columns[0])
    table = found.key.reshape(-1, n, _headers.COLUMNS)
    if found.in_place:
        table = np.concatenate([table, table[:1]])
    written = [op.roles.index(r) for r in op.written]
    flags = table[:, :, _headers.FLAGS]
    shape = table[:, :, _headers.NDIM:]
    usable = _headers.C_CONTIGUOUS | _headers.ALIGNED
    ok = ((shape == shape[0]).all(axis=(0, 2)) & ((flags & usable) == usable).all(axis=0)
          & ((flags[written] & _headers.WRITEABLE) != 0).all(axis=0))
    descrs = table[:, :, _headers.DESCR].T.tolist()
    dtypes = [tuple(map(_FLOAT_DESCRS.get, row)) for row in descrs]
    sizes = table[0, :, _headers.SIZE]
    addresses = np.ascontiguousarray(table[:, :, _headers.ADDRESS].T)
    ok &= _dtypes_allowed(op, dtypes)
    nbytes = sizes[:, None] * _itemsizes(dtypes, len(op.roles))
    ok &= _aliasing_allowed(op, addresses, nbytes)
    return Bulk("numpy", found, ok, addresses, nbytes, sizes, dtypes, ["cpu"] * n)


# ---- torch ---------------------------------------------------------------------------------------
def _read_torch(op: OpDef, columns: Sequence[Sequence[Any]], found: Fingerprint,
                torch: Any) -> Bulk | None:
    T = torch.Tensor
    n, r = len(columns[0]), len(op.roles)
    if not _NUMPY_DTYPES:
        _NUMPY_DTYPES.update({getattr(torch, d.name): d for d in FLOAT_DTYPES})
    every, (ptrs, _, numels, dtypes, devices, inference, negated, _) = found.every, found.key
    if found.in_place:   # the outs are the weights: their entries, again
        every, ptrs, numels, dtypes, devices, inference, negated = (
            x + x[:n] for x in (every, ptrs, numels, dtypes, devices, inference, negated))
    # Rules beyond the fingerprint, read only when a plan is made (sizes cost ~0.7 us a tensor).
    if set(map(_LAYOUT, every)) != {torch.strided}:
        return None
    sizes_all = list(map(T.size, every))
    contiguous = np.fromiter(map(T.is_contiguous, every), bool, r * n)
    # A kept plan is re-checked by strides and element count, which pin the shape only where the
    # strides are the canonical ones of a contiguous shape. They are but for a size-1 dimension
    # whose stride was left as some view made it (``x[:, None].t()``): such tensors go the
    # general way (checked here, for the few tensors that have a size-1 dimension at all).
    for i in np.flatnonzero(np.fromiter(map(operator.contains, sizes_all, repeat(1)), bool,
                                        r * n) & contiguous).tolist():
        contiguous[i] = _canonical(sizes_all[i], every[i].stride())
    inference = np.array(inference, bool).reshape(r, n)
    written = [op.roles.index(role) for role in op.written]

    def same_across_roles(values: list) -> np.ndarray:
        first = values[:n]
        return np.all([list(map(operator.eq, first, values[k * n:(k + 1) * n]))
                       for k in range(1, r)], axis=0)

    role_dtypes = [list(map(_NUMPY_DTYPES.get, dtypes[k * n:(k + 1) * n])) for k in range(r)]
    np_dtypes = list(zip(*role_dtypes))
    ok = (same_across_roles(devices) & same_across_roles(sizes_all)
          & contiguous.reshape(r, n).all(axis=0) & ~inference[written].any(axis=0)
          & ~np.array(negated, bool).reshape(r, n).any(axis=0))
    ok &= _dtypes_allowed(op, np_dtypes)
    addresses = np.array(ptrs, np.int64).reshape(r, n).T.copy()
    sizes = np.array(numels[:n], np.int64)
    itemsize = _itemsizes(np_dtypes, r)
    nbytes = sizes[:, None] * itemsize
    ok &= ((addresses % np.maximum(itemsize, 1)) == 0).all(axis=1)
    ok &= _aliasing_allowed(op, addresses, nbytes)
    names = [_device_name(d) for d in devices[:n]]
    ok &= ~readonly_writes(op, found)
    return Bulk("torch", found, ok, addresses, nbytes, sizes, np_dtypes, names)


def readonly_writes(op: OpDef, found: Fingerprint) -> np.ndarray:
    """Per update of a torch fingerprint, whether a tensor it writes lies in read-only memory.
    Only CPU memory torch did not allocate (``torch.from_numpy``, ``torch.frombuffer``: storage
    that cannot be resized) can; a batch without such tensors costs one scan of a flag list."""
    ptrs, _, numels, dtypes, devices, _, _, resizable = found.key
    rows = len(op.roles) - found.in_place
    n = len(found.every) // rows
    bad = np.zeros(n, bool)
    if False not in resizable:
        return bad
    out = len(op.roles) - 1   # with in_place, the out is the weight (row 0)
    written = sorted({0 if found.in_place and op.roles.index(r) == out else op.roles.index(r)
                      for r in op.written})
    entries = (np.array(written)[:, None] * n + np.arange(n)).ravel()
    fixed = entries[~np.array(resizable, bool)[entries]].tolist()
    on_cpu = np.fromiter(map(operator.eq, map(_TYPE, _pick(devices, fixed)), repeat("cpu")),
                         bool, len(fixed))
    fixed = np.array(fixed, np.int64)[on_cpu].tolist()
    if fixed:
        itemsize = np.fromiter(map(_ITEMSIZE, _pick(dtypes, fixed)), np.int64, len(fixed))
        spans = np.array(ptrs, np.int64)[fixed], np.array(numels, np.int64)[fixed] * itemsize
        hit = _in_readonly_memory(*spans, _pick(found.every, fixed))
        np.logical_or.at(bad, np.array(fixed, np.int64)[hit] % n, True)
    return bad


def _pick(values: Sequence[Any], at: list) -> tuple:
    """``values`` at the positions ``at`` (a C-level gather)."""
    return operator.itemgetter(*at)(values) if len(at) > 1 else tuple(values[i] for i in at)


_last_writeable: list = [None]   # (spans, weak references to their tensors) last found writeable


def _in_readonly_memory(addresses: np.ndarray, nbytes: np.ndarray, tensors: list
                        ) -> np.ndarray:
    """Per span, whether it touches a read-only mapping. The process's maps cost ~1 ms to read,
    and a training loop writes the same tensors every step, so spans found writeable are not
    read again while the same tensors (which keep their memory alive) are the ones there: a new
    tensor at a freed address may be a new mapping, and is read."""
    key = addresses.tobytes() + nbytes.tobytes()
    kept = _last_writeable[0]
    if (kept is not None and kept[0] == key
            and all(map(operator.is_, map(weakref.ref.__call__, kept[1]), tensors))):
        return np.zeros(len(addresses), bool)
    bad = _arrays.in_readonly_memory(addresses, nbytes)
    if not bad.any():
        _last_writeable[0] = (key, list(map(weakref.ref, tensors)))
    return bad


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


# ---- the op's rules, per update ------------------------------------------------------------------
def _dtypes_allowed(op: OpDef, dtypes: list[tuple]) -> np.ndarray:
    """True for updates whose roles have dtypes the op allows, equal within each group."""
    allowed = [set(op.allowed_dtypes(role)) for role in op.roles]
    groups = [[op.roles.index(role) for role in g] for g in op.dtype_groups()]
    return np.fromiter((all(d in a for d, a in zip(row, allowed))
                        and all(len({row[i] for i in g}) == 1 for g in groups)
                        for row in dtypes), bool, len(dtypes))


def _itemsizes(dtypes: list[tuple], roles: int) -> np.ndarray:
    sizes = [[d.itemsize if d is not None else 0 for d in row] for row in dtypes]
    return np.array(sizes, np.int64).reshape(len(dtypes), roles)


def _aliasing_allowed(op: OpDef, addresses: np.ndarray, nbytes: np.ndarray) -> np.ndarray:
    """True for updates whose arrays overlap only as identical views the op allows."""
    lo, hi = addresses, addresses + nbytes
    ok = np.ones(len(nbytes), bool)
    roles = op.roles
    for a in range(len(roles)):
        for b in range(a + 1, len(roles)):
            overlap = (lo[:, a] < hi[:, b]) & (lo[:, b] < hi[:, a])
            if (roles[a], roles[b]) in op.may_alias or (roles[b], roles[a]) in op.may_alias:
                # the same start and size (and so, contiguous and of one shape, the same view)
                overlap &= (lo[:, a] != lo[:, b]) | (hi[:, a] != hi[:, b])
            ok &= ~overlap
    return ok
