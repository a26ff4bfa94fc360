"""MXNet's NDArray file format (``mx.nd.save`` / ``mx.nd.load``): records and file, bounded reads.

The layout is SPEC_TRAINING C.5 and MXNet 1.9.1's ``NDArray::Save/Load/LegacyLoad``
(src/ndarray/ndarray.cc). Reading never trusts a count or a size: every length is checked against
the bytes that remain before anything is allocated, so memory stays bounded by the input's size,
and every malformed input raises ``ValueError`` naming the source, the record and the problem.
"""
from __future__ import annotations

import dataclasses
import os
import struct
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

import numpy as np

LIST_MAGIC = 0x112            # kMXAPINDArrayListMagic, the file header
V1_MAGIC = 0xF993FAC8         # int64 dims, dense only
V2_MAGIC = 0xF993FAC9         # storage type; what MXNet 1.9.1 writes by default
V3_MAGIC = 0xF993FACA         # V2 under np-shape semantics: 0-d and zero-size shapes are real
LEGACY, V1, V2, V3 = 0, 1, 2, 3   # record versions; LEGACY: the magic is the ndim, dims are u32
_MAGIC = {V1: V1_MAGIC, V2: V2_MAGIC, V3: V3_MAGIC}

DEFAULT, ROW_SPARSE, CSR = 0, 1, 2
STYPE_NAMES = {DEFAULT: "default", ROW_SPARSE: "row_sparse", CSR: "csr"}
_NUM_AUX = {DEFAULT: 0, ROW_SPARSE: 1, CSR: 2}

# mshadow's TypeFlag. MXNet 1.9.1 writes and reads 0-7 and bfloat16 (12; NumPy has no bfloat16,
# so MXNet's Python maps it to this structured dtype, and so do we); it refuses 8-11 ("Unknown
# type enum"), which later MXNet versions write: they load here but are not written.
BFLOAT16 = np.dtype([("bfloat16", "<u2")])
DTYPES = {0: np.dtype("<f4"), 1: np.dtype("<f8"), 2: np.dtype("<f2"), 3: np.dtype("u1"),
          4: np.dtype("<i4"), 5: np.dtype("i1"), 6: np.dtype("<i8"), 7: np.dtype("?"),
          8: np.dtype("<i2"), 9: np.dtype("<u2"), 10: np.dtype("<u4"), 11: np.dtype("<u8"),
          12: BFLOAT16}
MXNET_READS = frozenset({0, 1, 2, 3, 4, 5, 6, 7, 12})
INT64 = 6
_INDEX_FLAGS = frozenset({3, 4, 5, 6, 8, 9, 10, 11})   # integer flags an aux array may have
MAX_NDIM = 32                 # NumPy 1.x's limit; MXNet checkpoints stay far below it
_MIN_RECORD = 12              # magic + stype + ndim: no record is shorter


def dtype_name(flag: int) -> str:
    return "bfloat16" if flag == 12 else DTYPES[flag].name


@dataclasses.dataclass(eq=False)
class Layout:
    """How a record was stored, beyond its value: what writing it back byte for byte needs.

    ``storage_shape`` is the recorded storage shape where it is not the canonical one (MXNet
    records ``(0,)`` or ``(0, cols)`` when it saves a sparse array before the operator that made
    it has run: it writes the shape before waiting; the aux shapes hold the stored count).
    ``aux_flags`` are the index types when not int64. ``row_order`` restores the file's row
    order of a row_sparse record whose indices were not ascending (it loads sorted).
    """
    version: int = V2
    dev_type: int = 1
    dev_id: int = 0
    storage_shape: tuple[int, ...] | None = None
    aux_flags: tuple[int, ...] | None = None
    row_order: np.ndarray | None = None


@dataclasses.dataclass(eq=False)
class Record:
    """One record: ``data`` is the stored values (dense: the array; row_sparse: the stored rows;
    csr: the nnz values), ``aux`` the index arrays (row_sparse: indices; csr: indptr, indices)."""
    stype: int
    flag: int
    shape: tuple[int, ...]
    data: np.ndarray
    aux: tuple[np.ndarray, ...] = ()
    layout: Layout = dataclasses.field(default_factory=Layout)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes + sum(a.nbytes for a in self.aux))


class Reader:
    """Bounded little-endian reads from a file object or a buffer; errors name the source."""

    def __init__(self, source: str, *, buffer: Any = None, file: BinaryIO | None = None,
                 size: int = 0, headers_only: bool = False):
        self.source, self.file, self.pos = source, file, 0
        self.headers_only = headers_only   # values are skipped: stand-ins without memory
        self.view = memoryview(buffer).cast("B") if buffer is not None else None
        self.size = len(self.view) if self.view is not None else size
        self.where = ""           # the record being read, for messages

    @property
    def left(self) -> int:
        return self.size - self.pos

    def error(self, message: str) -> ValueError:
        return ValueError(f"{self.source}: {self.where}{message}")

    def need(self, n: int, what: str) -> None:
        if n > self.left:
            raise self.error(f"truncated: {what} needs {n} bytes at byte {self.pos}, "
                             f"but only {self.left} remain")

    def raw(self, n: int, what: str) -> bytes:
        self.need(n, what)
        if self.view is not None:
            out = bytes(self.view[self.pos:self.pos + n])
        else:
            out = self.file.read(n)
            if len(out) != n:
                raise self.error("the file ended early (it changed while being read?)")
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.raw(struct.calcsize("<" + fmt), what))

    def array(self, dtype: np.dtype, count: int, what: str) -> np.ndarray:
        """A new, aligned, writable 1-D array of ``count`` items read from the input."""
        nbytes = count * dtype.itemsize
        self.need(nbytes, what)     # before allocating: never more than the input holds
        if self.headers_only:
            if self.file is not None:
                self.file.seek(nbytes, os.SEEK_CUR)
            self.pos += nbytes
            return np.broadcast_to(np.zeros((), dtype), (count,))
        out = np.empty(nbytes, np.uint8)
        if self.view is not None:
            out[:] = np.frombuffer(self.view, np.uint8, nbytes, self.pos)
        elif nbytes and self.file.readinto(memoryview(out)) != nbytes:
            raise self.error("the file ended early (it changed while being read?)")
        self.pos += nbytes
        return out.view(dtype)


# ---- reading ----------------------------------------------------------------------------------
def _shape(r: Reader, version: int, what: str) -> tuple[int, ...] | None:
    """A recorded shape; None for an unknown (none) shape. V2 ndim 0 is checked by the caller."""
    if version == LEGACY:
        raise AssertionError("legacy shapes are read by _legacy_record")
    (ndim,) = r.unpack("i", f"the ndim of {what}")
    if ndim == -1 and version in (V1, V3):
        return None
    if ndim < 0 or ndim > MAX_NDIM:
        raise r.error(f"{what} has ndim {ndim}; expected 0 to {MAX_NDIM}")
    dims = r.unpack(f"{ndim}q", f"the {ndim} dims of {what}")
    if any(d == -1 for d in dims) and version in (V1, V3):
        return None
    if any(d < 0 for d in dims):
        raise r.error(f"{what} {dims} has a negative dimension")
    return dims


def _count(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _none_record(r: Reader) -> ValueError:
    return r.error("is an empty (none) NDArray, which holds no array; MXNet's own mx.nd.load "
                   "cannot load it either ('unknown storage type: -1')")


def _legacy_record(r: Reader, magic: int) -> Record:
    """A V1 record (int64 dims) or an older one whose magic is its ndim (uint32 dims)."""
    if magic == V1_MAGIC:
        version, shape = V1, _shape(r, V1, "the shape")
        if shape is None:
            raise _none_record(r)
    else:
        if magic > MAX_NDIM:
            raise r.error(f"starts with 0x{magic:08X}, which is not an NDArray record (V2 "
                          f"0x{V2_MAGIC:08X}, V3 0x{V3_MAGIC:08X}, V1 0x{V1_MAGIC:08X}, or a "
                          f"legacy ndim of at most {MAX_NDIM})")
        version, shape = LEGACY, r.unpack(f"{magic}I", f"the {magic} dims of the legacy shape")
    dev_type, dev_id, flag = r.unpack("iii", "the context and type flag")
    dtype = _dtype(r, flag, "data")
    data = r.array(dtype, _count(shape), f"{_count(shape)} {dtype_name(flag)} values")
    return Record(DEFAULT, flag, tuple(shape), data.reshape(shape),
                  layout=Layout(version, dev_type, dev_id))


def _dtype(r: Reader, flag: int, what: str) -> np.dtype:
    if flag not in DTYPES:
        raise r.error(f"has unknown {what} type flag {flag} (MXNet's flags are 0 to 12: "
                      f"float32 0, float64 1, float16 2, uint8 3, int32 4, int8 5, int64 6, "
                      f"bool 7, ..., bfloat16 12)")
    return DTYPES[flag]


def read_record(r: Reader) -> Record:
    """Read one record (``NDArray::Load``), checking every size against the remaining input."""
    (magic,) = r.unpack("I", "the record magic")
    if magic not in (V2_MAGIC, V3_MAGIC):
        return _legacy_record(r, magic)
    version = V2 if magic == V2_MAGIC else V3
    (stype,) = r.unpack("i", "the storage type")
    if stype not in _NUM_AUX:
        raise r.error(f"has storage type {stype}; expected 0 (default), 1 (row_sparse) or 2 (csr)")
    if version == V3 and stype != DEFAULT:
        raise r.error(f"is a {STYPE_NAMES[stype]} record saved under np-shape (V3), which MXNet "
                      f"cannot load: np-shape allows only default storage")
    nad = _NUM_AUX[stype]
    sshape = _shape(r, version, "the storage shape") if nad else ()
    shape = _shape(r, version, "the shape")
    if shape is None or sshape is None or (version == V2 and not shape):
        raise _none_record(r)
    dev_type, dev_id, flag = r.unpack("iii", "the context and type flag")
    dtype = _dtype(r, flag, "data")
    aux_flags, aux_shapes = [], []
    for i in range(nad):
        (aux_flag,) = r.unpack("i", "an aux type flag")
        aux_shape = _shape(r, version, "an aux shape")
        if aux_flag not in _INDEX_FLAGS or aux_shape is None or len(aux_shape) != 1:
            raise r.error(f"has aux array {i} of type flag {aux_flag} and shape {aux_shape}; "
                          f"expected 1-D integers")
        aux_flags.append(aux_flag)
        aux_shapes.append(aux_shape)
    stored = _stored_shape(r, stype, shape, sshape, aux_shapes)
    sizes = [_count(stored) * dtype.itemsize]
    sizes += [s[0] * DTYPES[f].itemsize for f, s in zip(aux_flags, aux_shapes)]
    r.need(sum(sizes), f"the values ({' + '.join(map(str, sizes))} bytes)")
    data = r.array(dtype, _count(stored), "the values").reshape(stored)
    aux = tuple(r.array(DTYPES[f], s[0], "an aux array") for f, s in zip(aux_flags, aux_shapes))
    layout = Layout(version, dev_type, dev_id,
                    storage_shape=None if not nad or tuple(sshape) == stored else tuple(sshape),
                    aux_flags=None if all(f == INT64 for f in aux_flags) else tuple(aux_flags))
    return Record(stype, flag, tuple(shape), data, aux, layout)


def _stored_shape(r: Reader, stype: int, shape: tuple, sshape: tuple,
                  aux_shapes: list) -> tuple[int, ...]:
    """The shape of the stored values: MXNet's rule (a recorded storage shape of size 0 is
    replaced by the one the aux shapes imply), then checked against the aux shapes."""
    if stype == DEFAULT:
        return tuple(shape)
    if stype == ROW_SPARSE:
        if not shape:
            raise r.error("is a row_sparse array without dimensions")
        canonical = (aux_shapes[0][0],) + tuple(shape[1:])
    else:
        if len(shape) != 2:
            raise r.error(f"is a csr array of shape {shape}; csr arrays are 2-D")
        if aux_shapes[0][0] != shape[0] + 1:
            raise r.error(f"has a csr indptr of {aux_shapes[0][0]} entries for {shape[0]} rows; "
                          f"expected {shape[0] + 1}")
        canonical = tuple(aux_shapes[1])
    if _count(sshape) != 0 and tuple(sshape) != canonical:
        raise r.error(f"has storage shape {tuple(sshape)}, but its {STYPE_NAMES[stype]} "
                      f"indices say {canonical}")
    return canonical


def read_file(r: Reader, progress: Callable[[int], None] | None = None
              ) -> tuple[list[Record], list[str] | None]:
    """The records and names (None: a list file) of a whole file (``NDArray::Load`` of a list)."""
    header, reserved = r.unpack("QQ", "the file header")
    if header != LIST_MAGIC or reserved != 0:
        raise r.error(f"is not an MXNet NDArray file: it starts with 0x{header:X}, 0x{reserved:X}"
                      f"; expected 0x{LIST_MAGIC:X}, 0 (files written by mx.nd.save)")
    (n,) = r.unpack("Q", "the number of arrays")
    if n * _MIN_RECORD > r.left:
        raise r.error(f"says it holds {n} arrays, but {r.left} bytes cannot hold that many")
    records = []
    for i in range(n):
        r.where = f"record {i} of {n}: "
        start = r.pos
        records.append(read_record(r))
        if progress is not None:
            progress(r.pos - start)
    r.where = ""
    (k,) = r.unpack("Q", "the number of names")
    if k not in (0, n):
        raise r.error(f"has {k} names for {n} arrays; expected {n} (a dict) or 0 (a list)")
    names = []
    for i in range(k):
        (length,) = r.unpack("Q", f"the length of name {i}")
        raw = r.raw(length, f"name {i} ({length} bytes)")
        try:
            names.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise r.error(f"name {i} is not UTF-8 ({exc.reason} at byte {exc.start}): "
                          f"{raw[:40]!r}") from None
    if r.left:
        raise r.error(f"has {r.left} unexpected bytes after its last name (at byte {r.pos})")
    return records, (names if k else None)


# ---- writing ----------------------------------------------------------------------------------
def _write_shape(out: list, shape: Sequence[int], version: int) -> None:
    out.append(struct.pack("<i", len(shape)))
    out.append(struct.pack(f"<{len(shape)}{'I' if version == LEGACY else 'q'}", *shape))


def record_header(rec: Record) -> bytes:
    """Everything of ``rec`` before its values (``NDArray::Save``)."""
    lay, out = rec.layout, []
    if lay.version == LEGACY:
        out.append(struct.pack("<I", len(rec.shape)))
        out.append(struct.pack(f"<{len(rec.shape)}I", *rec.shape))
    else:
        out.append(struct.pack("<I", _MAGIC[lay.version]))
        if lay.version != V1:
            out.append(struct.pack("<i", rec.stype))
            if rec.stype != DEFAULT:
                _write_shape(out, lay.storage_shape or rec.data.shape, lay.version)
        _write_shape(out, rec.shape, lay.version)
    out.append(struct.pack("<iii", lay.dev_type, lay.dev_id, rec.flag))
    flags = lay.aux_flags or (INT64,) * len(rec.aux)
    for flag, a in zip(flags, rec.aux):
        out.append(struct.pack("<i", flag))
        _write_shape(out, a.shape, lay.version)
    return b"".join(out)


def _bytes_of(a: np.ndarray) -> memoryview:
    return memoryview(np.ascontiguousarray(a).reshape(-1).view(np.uint8))


def write_record(write: Callable[[Any], Any], rec: Record) -> None:
    """Write one record; ``rec`` holds little-endian arrays of the recorded dtypes."""
    write(record_header(rec))
    for a in (rec.data, *rec.aux):
        if a.size:
            write(_bytes_of(a))


def encode_record(rec: Record) -> bytes:
    """One record as bytes (the ``handle`` of a pickled NDArray: MXNDArraySaveRawBytes)."""
    parts: list = []
    write_record(parts.append, rec)
    return b"".join(bytes(p) for p in parts)


def write_file(write: Callable[[Any], Any], records: Sequence[Record],
               names: Sequence[str] | None,
               progress: Callable[[int], None] | None = None) -> None:
    """A whole file (``NDArray::Save`` of a list): header, records, then the names if any."""
    write(struct.pack("<QQQ", LIST_MAGIC, 0, len(records)))
    for rec in records:
        write_record(write, rec)
        if progress is not None:
            progress(rec.nbytes)
    names = names or []
    write(struct.pack("<Q", len(names)))
    for name in names:
        raw = name.encode("utf-8")
        write(struct.pack("<Q", len(raw)) + raw)
