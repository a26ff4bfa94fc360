"""Checkpoint files by extension: MXNet ``.params``, NumPy ``.npz``, torch ``.pt`` state dicts and
``.safetensors``, read into and written from one form (what :func:`adamop.nd.load` gives).

Sparse arrays in ``.pt`` are torch's own sparse tensors (row_sparse as sparse COO, csr as sparse
CSR). ``.npz`` and ``.safetensors`` have no sparse type: an entry ``NAME`` is stored as the dense
arrays ``NAME@row_sparse.data``, ``NAME@row_sparse.indices``, ``NAME@row_sparse.shape`` (csr:
``NAME@csr.data``, ``.indices``, ``.indptr``, ``.shape``), read back as the sparse array, or
densified with ``dense=True``. A list (a ``.params`` file without names) is written with the
names ``"0"``, ``"1"``, ...
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import _ndfile as F
from . import _ndvalues as V
from . import nd
from ._files import write_atomically
from .storage import RowSparseArray

__all__ = ["FORMATS", "entries", "read", "write"]

FORMATS = {".params": "MXNet", ".npz": "NumPy", ".pt": "torch", ".pth": "torch",
           ".safetensors": "safetensors"}
_SPARSE_KEY = re.compile(r"^(.*)@(row_sparse|csr)\.(data|indices|indptr|shape)$")
_ORDER = "adamop.order"       # safetensors metadata: the entries' order (the format sorts them)
_PARTS = {"row_sparse": {"data", "indices", "shape"}, "csr": {"data", "indices", "indptr", "shape"}}


class MissingDependency(ImportError):
    """An optional package a format needs is not installed."""


class UnknownFormat(ValueError):
    """A file name whose extension names no format here."""


def kind_of(path: str | os.PathLike) -> str:
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext == ".states":
        raise UnknownFormat(f"{path}: a .states file holds optimizer states, not arrays to "
                            f"convert; `adamop inspect` shows it")
    if ext not in FORMATS:
        raise UnknownFormat(f"{path}: unknown extension {ext!r}; expected one of "
                            f"{', '.join(sorted(FORMATS))}")
    return FORMATS[ext]


def _need(package: str, extra: str) -> Any:
    import importlib
    try:
        return importlib.import_module(package)
    except ImportError:
        raise MissingDependency(f"{package} is needed for {extra} files: pip install "
                                f"{package.split('.')[0]}") from None


# ---- reading ----------------------------------------------------------------------------------
def read(path: str | os.PathLike, progress: Callable[[int], None] | None = None) -> Any:
    """The arrays of a checkpoint file: a dict (or, from a .params list file, a list)."""
    kind, source = kind_of(path), os.fspath(path)
    if kind == "MXNet":
        with open(source, "rb") as f:
            reader = F.Reader(source, file=f, size=os.fstat(f.fileno()).st_size)
            return nd._load(reader, False, progress)
    if kind == "NumPy":
        with _reading(source, "a NumPy .npz file"):
            with np.load(source, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        return _decode_sparse(arrays, source)
    if kind == "torch":
        torch = _need("torch", ".pt")
        with _reading(source, "a torch file that torch.load(weights_only=True) reads"), \
                warnings.catch_warnings():    # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(source, map_location="cpu", weights_only=True)
        items = list(obj.items()) if isinstance(obj, dict) else list(enumerate(obj)) \
            if isinstance(obj, (list, tuple)) else None
        if items is None or not all(isinstance(v, torch.Tensor) for _, v in items):
            raise ValueError(f"{source}: expected a state dict (name -> tensor) or a list of "
                             f"tensors, got {type(obj).__name__} holding other objects")
        values = [_from_torch(v) for _, v in items]
        return dict(zip((str(k) for k, _ in items), values)) if isinstance(obj, dict) \
            else values
    _need("safetensors", ".safetensors")
    from safetensors import safe_open
    framework = "pt" if _has_torch() else "np"
    out = {}
    with _reading(source, "a .safetensors file"), safe_open(source, framework=framework) as f:
        keys, order = list(f.keys()), (f.metadata() or {}).get(_ORDER)
        if order is not None and sorted(json.loads(order)) == sorted(keys):
            keys = json.loads(order)     # safetensors sorts its keys; this was our order
        for key in keys:
            value = f.get_tensor(key)
            out[key] = _from_torch(value) if framework == "pt" else value
    return _decode_sparse(out, source)


@contextlib.contextmanager
def _reading(source: str, what: str) -> Iterator[None]:
    """Whatever another library raises on a malformed file, as a ValueError naming the file."""
    try:
        yield
    except OSError:
        raise
    except Exception as exc:   # zipfile, torch and safetensors each have their own errors
        raise ValueError(f"{source}: not {what}: {type(exc).__name__}: {exc}") from None


def _has_torch() -> bool:
    import importlib.util
    return importlib.util.find_spec("torch") is not None


def _from_torch(t: Any) -> Any:
    """A tensor as what nd.load gives: NumPy, RowSparseArray or a scipy csr matrix."""
    layout = str(t.layout)
    if layout == "torch.sparse_coo":
        r = RowSparseArray.from_torch(t)
        return RowSparseArray(_from_torch(r.data), _from_torch(r.indices), r.shape)
    if layout == "torch.sparse_csr":
        rec = V.to_record(t, "tensor")
        return V.to_value(rec, "tensor")
    flag = V.dtype_flag(t.dtype, "tensor")
    return V.host(t, flag)


def _decode_sparse(arrays: dict[str, np.ndarray], source: str) -> dict[str, Any]:
    """Dense arrays by name, with the ``NAME@row_sparse.*`` / ``NAME@csr.*`` groups joined."""
    out: dict[str, Any] = {}
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        m = _SPARSE_KEY.match(key)
        if m is None:
            out[key] = value
            continue
        name, stype, part = m.groups()
        if f"{name}@{stype}" not in groups:
            if name in out or name in arrays:
                raise ValueError(f"{source}: entry {name!r} is stored twice")
            out[name] = None             # keeps the entry's place in the file's order
        groups.setdefault(f"{name}@{stype}", {})[part] = value
    for tag, parts in groups.items():
        name, stype = tag.rsplit("@", 1)
        where = f"{source}: entry {name!r}"
        if set(parts) != _PARTS[stype]:
            raise ValueError(f"{where} has the {stype} parts {sorted(parts)}; expected exactly "
                             f"{sorted(_PARTS[stype])}")
        try:
            shape = tuple(int(d) for d in parts["shape"])
            if stype == "row_sparse":
                out[name] = RowSparseArray(parts["data"], parts["indices"], shape)
                continue
            rec = F.Record(F.CSR, V.dtype_flag(parts["data"].dtype, where), shape,
                           parts["data"], (parts["indptr"].astype(np.int64),
                                           parts["indices"].astype(np.int64)))
            if len(shape) != 2:
                raise ValueError(f"a csr matrix has 2 dimensions, got shape {shape}")
            V.check_csr(*rec.aux, shape, where)
            out[name] = V.to_value(rec, where)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None
    return out


# ---- writing ----------------------------------------------------------------------------------
def write(path: str | os.PathLike, data: Any, *, dense: bool = False,
          progress: Callable[[int], None] | None = None) -> list[str]:
    """Write ``data`` (as :func:`read` gives it) in the format of ``path``'s extension,
    atomically. Returns notes for the user (how sparse entries and lists were stored)."""
    kind, notes = kind_of(path), []
    if kind == "MXNet":
        records, names = nd._prepare(data, None)
        write_atomically(path, lambda f: F.write_file(f.write, records, names, progress))
        return notes
    if not isinstance(data, dict):
        data = {str(i): v for i, v in enumerate(data)}
        notes.append(f"the {len(data)} unnamed arrays are named '0' to '{len(data) - 1}'")
    if kind == "torch":
        torch = _need("torch", ".pt")
        tensors = {k: _to_torch(v, dense) for k, v in data.items()}
        write_atomically(path, lambda f: torch.save(tensors, f))
        return notes
    arrays = _encode_sparse(data, dense, notes)
    if kind == "NumPy":
        write_atomically(path, lambda f: _savez(f, arrays))
        return notes
    _need("safetensors", ".safetensors")
    metadata = {_ORDER: json.dumps(list(arrays))}
    if any(a.dtype == F.BFLOAT16 for a in arrays.values()):
        _need("torch", "bfloat16 in .safetensors")
        from safetensors.torch import save
        blob = save({k: _to_torch(v, True) for k, v in arrays.items()}, metadata=metadata)
    else:
        from safetensors.numpy import save
        blob = save(arrays, metadata=metadata)
    write_atomically(path, lambda f: f.write(blob))
    return notes


def _savez(f: Any, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` without its keyword arguments (an entry may be named ``file``)."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, a in arrays.items():
            with z.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, a, allow_pickle=False)


def _encode_sparse(data: dict, dense: bool, notes: list[str]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, value in data.items():
        if _SPARSE_KEY.match(name):
            raise ValueError(f"entry {name!r}: the name ends like the sparse encoding "
                             f"(NAME@row_sparse.data, ...); rename it")
        rec = V.to_record(value, f"entry {name!r}")
        if rec.stype == F.DEFAULT:
            out[name] = rec.data
        elif dense:
            out[name] = _dense(rec)
        else:
            stype = F.STYPE_NAMES[rec.stype]
            out[f"{name}@{stype}.data"] = rec.data
            if rec.stype == F.CSR:
                out[f"{name}@csr.indptr"] = rec.aux[0]
            out[f"{name}@{stype}.indices"] = rec.aux[-1]
            out[f"{name}@{stype}.shape"] = np.array(rec.shape, np.int64)
            notes.append(f"{stype} entry {name!r} is stored as {name}@{stype}.* (see "
                         f"`adamop convert --help`; --dense densifies instead)")
    return out


def _dense(rec: F.Record) -> np.ndarray:
    value = V.to_value(rec, "entry")
    return value.todense() if isinstance(value, RowSparseArray) else \
        np.asarray(value.toarray(), dtype=rec.data.dtype)


def _to_torch(value: Any, dense: bool) -> Any:
    rec = V.to_record(value, "entry")
    if rec.stype != F.DEFAULT and dense:
        rec = F.Record(F.DEFAULT, rec.flag, rec.shape, _dense(rec))
    if rec.stype == F.DEFAULT:
        return V.torch_dense(rec.data, rec.flag)
    value = V.to_value(rec, "entry", as_torch=True)
    return value.to_torch() if isinstance(value, RowSparseArray) else value


# ---- inspecting -------------------------------------------------------------------------------
def entries(path: str | os.PathLike) -> list[tuple[str, str, str, tuple, int | None, int]]:
    """Rows (name, storage, dtype, shape, stored rows, bytes) of a checkpoint, reading only the
    headers of a .params file."""
    if kind_of(path) == "MXNet":
        source = os.fspath(path)
        with open(source, "rb") as f:
            reader = F.Reader(source, file=f, size=os.fstat(f.fileno()).st_size,
                              headers_only=True)
            records, names = F.read_file(reader)
        labels = names if names is not None else [str(i) for i in range(len(records))]
        return [(label, F.STYPE_NAMES[r.stype], F.dtype_name(r.flag), r.shape,
                 None if r.stype == F.DEFAULT else r.data.shape[0], r.nbytes)
                for label, r in zip(labels, records)]
    data = read(path)
    items = data.items() if isinstance(data, dict) else enumerate(data)
    rows = []
    for name, value in items:
        r = V.to_record(value, str(name))
        rows.append((str(name), F.STYPE_NAMES[r.stype], F.dtype_name(r.flag), r.shape,
                     None if r.stype == F.DEFAULT else r.data.shape[0], r.nbytes))
    return rows


def states_summary(obj: Any) -> tuple[list[str], list[tuple]]:
    """Lines about the optimizer of a ``.states`` file (``states.loads(..., resolve=False)``)
    and rows (index, name, part, storage, dtype, shape, stored rows, bytes) of its states."""
    from .states import MXNetObject
    saved, opt = obj if isinstance(obj, tuple) and len(obj) == 2 else (obj, None)
    if not isinstance(saved, dict):
        raise ValueError(f"expected the states dict of an Updater, got {type(saved).__name__}")
    lines = [f"{len(saved)} parameter states; "
             + ("the optimizer is included (Gluon Trainer.save_states)" if opt is not None
                else "no optimizer (Module.save_optimizer_states: update counts restart)")]
    names: dict = {}
    if isinstance(opt, MXNetObject):
        attrs = dict(opt.state)
        names = attrs.get("idx2name") or {}
        lines.append(f"optimizer {opt.mxnet_class}")
        skip = {"lr_scheduler", "_all_index_update_counts", "_index_update_count", "idx2name",
                "sym_info", "param_dict"}
        plain = [f"{k}={v!r}" for k, v in attrs.items() if k not in skip]
        lines += ["  " + " ".join(plain[i:i + 6]) for i in range(0, len(plain), 6)]
        sched = attrs.get("lr_scheduler")
        if isinstance(sched, MXNetObject):
            lines.append(f"  lr_scheduler {sched.mxnet_class}: "
                         + " ".join(f"{k}={v!r}" for k, v in sched.state.items()))
        counts = attrs.get("_index_update_count") or {}
        lines.append("  update counts: " + (" ".join(f"{k}:{v}" for k, v in counts.items())
                                           or "none"))
    rows = []
    for index, state in saved.items():
        for part, value in _parts(state):
            r = V.to_record(value, f"state {index}")
            rows.append((index, names.get(index, ""), part, F.STYPE_NAMES[r.stype],
                         F.dtype_name(r.flag), r.shape,
                         None if r.stype == F.DEFAULT else r.data.shape[0], r.nbytes))
    return lines, rows


def _parts(state: Any) -> list[tuple[str, Any]]:
    """Adam's (mean, var) or (weight32, (mean, var)) by name; anything else by position."""
    def array(x: Any) -> bool:
        return isinstance(x, (np.ndarray, RowSparseArray))
    if isinstance(state, tuple) and len(state) == 2 and all(map(array, state)):
        return [("mean", state[0]), ("var", state[1])]
    if isinstance(state, tuple) and len(state) == 2 and array(state[0]) \
            and isinstance(state[1], tuple) and len(state[1]) == 2 and all(map(array, state[1])):
        return [("weight32", state[0]), ("mean", state[1][0]), ("var", state[1][1])]
    if array(state):
        return [("state", state)]
    if isinstance(state, (tuple, list)):
        return [(f"{i}.{p}" if p != "state" else str(i), v)
                for i, s in enumerate(state) for p, v in _parts(s)]
    return []
