"""MXNet's ``.states`` pickles (``Updater.get_states``, ``Trainer.save_states``) without MXNet.

:func:`loads` reads them with a restricted unpickler: the opcode stream is checked before anything
is unpickled, only the globals MXNet writes into such files are resolved (SPEC_TRAINING C.3), and
each resolves to an inert stand-in that accepts exactly the arguments MXNet pickles with; no code
from the file ever runs. NDArrays become NumPy arrays or :class:`adamop.RowSparseArray`, and the
MXNet optimizer and schedulers become adamop's (looked up by their ``mxnet_class``).
:func:`dumps` writes pickles that MXNet 1.9.1's ``Updater.set_states`` turns into real MXNet
objects.
"""
from __future__ import annotations

import copyreg
import io
import os
import pickle
import warnings
from typing import Any

import numpy as np

from . import _arrays
from . import _ndfile as F
from . import _ndvalues as V
from . import _unpickle as U
from ._files import write_atomically
from .storage import RowSparseArray

__all__ = ["MXNetObject", "dumps", "load", "loads", "save"]

_MAX_DEPTH = 64          # MXNet's states nest 5 deep at most
_PLAIN = (str, int, float, bool, type(None), bytes)


class MXNetObject:
    """An MXNet object from a ``.states`` file, unresolved (``loads(..., resolve=False)``): its
    class's dotted name and the attribute dict it was pickled with."""
    __slots__ = ("mxnet_class", "state")

    def __init__(self, mxnet_class: str, state: dict):
        self.mxnet_class, self.state = mxnet_class, state

    def __repr__(self) -> str:
        return f"MXNetObject({self.mxnet_class!r}, {len(self.state)} attributes)"


def loads(data: bytes | bytearray | memoryview, *, source: str = "<bytes>",
          resolve: bool = True) -> Any:
    """Read a ``.states`` pickle (``Updater.get_states`` / ``Trainer.save_states``).

    Args:
        data: the file's bytes.
        source: names the input in error messages (the path, for files).
        resolve: map MXNet's optimizer and schedulers to adamop's classes (``__new__`` +
            ``__setstate__``); with False they stay :class:`MXNetObject` (any MXNet optimizer).

    Returns:
        The unpickled structure: states (a dict index -> state), or ``(states, optimizer)``;
        NDArrays as NumPy arrays or :class:`RowSparseArray`.

    Raises:
        ValueError: not a pickle, a malformed one, a global or opcode MXNet does not write (named
            in the message), or an MXNet optimizer other than Adam (adamop implements Adam only).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"loads: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    try:
        with warnings.catch_warnings():   # a bad escape in a protocol-0 string: refused too
            warnings.simplefilter("error", DeprecationWarning)
            tree = U.read_tree(data)
        return _Resolver(source, resolve).value(tree, 0)
    except U.Refused as exc:
        raise ValueError(f"{source}: {exc}") from None
    except ValueError as exc:
        if str(exc).startswith(source):
            raise
        raise ValueError(f"{source}: not a valid .states pickle: {exc}") from None
    except Exception as exc:   # anything the file provokes in the unpickler is a malformed file
        raise ValueError(f"{source}: not a valid .states pickle: {type(exc).__name__}: "
                         f"{exc}") from None


def load(path: str | os.PathLike, *, resolve: bool = True) -> Any:
    """:func:`loads` of a file (``Trainer.save_states`` / ``Module.save_optimizer_states``)."""
    with open(path, "rb") as f:
        data = f.read()
    return loads(data, source=os.fspath(path), resolve=resolve)


class _Resolver:
    """Turns the unpickled stand-ins into arrays and adamop objects, keeping shared references
    (MXNet's ``_index_update_count`` is ``_all_index_update_counts[0]``) and refusing cycles."""

    def __init__(self, source: str, resolve: bool):
        self.source, self.resolve = source, resolve
        self.done: dict[int, Any] = {}
        self.active: set[int] = set()

    def value(self, x: Any, depth: int) -> Any:
        if isinstance(x, _PLAIN) or type(x) is bytearray:
            return x
        if id(x) in self.done:
            return self.done[id(x)]
        if id(x) in self.active:
            raise U.Refused("the pickle refers to itself (a cycle); MXNet's never does")
        if depth > _MAX_DEPTH:
            raise U.Refused(f"the pickle nests deeper than {_MAX_DEPTH} levels")
        self.active.add(id(x))
        if type(x) is dict:
            out: Any = {self.key(k): self.value(v, depth + 1) for k, v in x.items()}
        elif type(x) in (list, tuple, set, frozenset):
            out = type(x)(self.value(v, depth + 1) for v in x)
        elif isinstance(x, U.StandIn):
            out = self.stand_in(x, depth)
        else:
            raise U.Refused(f"unexpected {type(x).__name__} in the pickle")
        self.active.discard(id(x))
        self.done[id(x)] = out
        return out

    def key(self, k: Any) -> Any:
        if isinstance(k, _PLAIN) or (type(k) is tuple and all(isinstance(i, _PLAIN) for i in k)):
            return k
        raise U.Refused(f"a dict key of type {type(k).__name__}")

    def stand_in(self, x: U.StandIn, depth: int) -> Any:
        name, state = x.mxnet_class, x.state
        if name in (U.NDARRAY, U.ROW_SPARSE):
            return self.ndarray(name, state)
        if type(state) is not dict or not all(type(k) is str for k in state):
            raise U.Refused(f"{name} is pickled with {type(state).__name__} state; MXNet pickles "
                            f"its attribute dict")
        attrs = {k: self.value(v, depth + 1) for k, v in state.items()}
        if not self.resolve:
            return MXNetObject(name, attrs)
        cls = adamop_class(name)
        obj = cls.__new__(cls)
        try:
            obj.__setstate__(attrs)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise U.Refused(f"{name}: {exc}") from None
        return obj

    def ndarray(self, name: str, state: Any) -> Any:
        if type(state) is not dict or set(state) != {"handle"} \
                or type(state["handle"]) is not bytearray:
            raise U.Refused(f"{name} is pickled with {type(state).__name__} state; MXNet pickles "
                            f"{{'handle': bytearray(<record>)}}")
        reader = F.Reader(f"{self.source}: {name}", buffer=state["handle"])
        rec = F.read_record(reader)
        if reader.left:
            raise reader.error(f"has {reader.left} bytes after its record")
        want = F.ROW_SPARSE if name == U.ROW_SPARSE else F.DEFAULT
        if rec.stype != want:
            raise reader.error(f"holds a {F.STYPE_NAMES[rec.stype]} record")
        return V.to_value(rec, reader.source)


def adamop_class(mxnet_class: str) -> type:
    """adamop's class for an MXNet optimizer or scheduler: the one whose ``mxnet_class`` matches,
    looked up in adamop.optimizer and adamop.lr_scheduler when first needed."""
    from . import lr_scheduler, optimizer   # when first needed: most files hold no optimizer
    for module in (optimizer, lr_scheduler):
        for obj in vars(module).values():
            if isinstance(obj, type) and getattr(obj, "mxnet_class", None) == mxnet_class:
                return obj
    if mxnet_class.startswith("mxnet.optimizer.") and mxnet_class != U.ADAM:
        raise U.Refused(f"the file holds a {mxnet_class} optimizer; adamop implements Adam only "
                        f"(inspect it with loads(..., resolve=False) or `adamop inspect`)")
    raise U.Refused(f"adamop has no class for {mxnet_class}")


# ---- writing ----------------------------------------------------------------------------------
class _Global:
    """Base of the classes :func:`dumps` writes as MXNet globals; an instance is an MXNet object
    to write (NEWOBJ, then BUILD with ``state``)."""
    __slots__ = ("state",)
    mxnet_class = ""


_GLOBALS: dict[str, type] = {}


def _global(mxnet_class: str) -> type:
    if mxnet_class not in _GLOBALS:
        # each NDArray class reduces with its own (None,) (a constant of its __reduce__), which
        # Python's pickler stores once per class: so one tuple per class here, for MXNet's bytes
        _GLOBALS[mxnet_class] = type(mxnet_class.rsplit(".", 1)[1], (_Global,),
                                     {"__slots__": (), "mxnet_class": mxnet_class,
                                      "reduce_args": tuple([None])})  # noqa: C409 (new object)
    return _GLOBALS[mxnet_class]


class _Array:
    """An NDArray to write: REDUCE ``(cls, (None,))``, then BUILD ``{'handle': record}``."""
    __slots__ = ("cls", "record")

    def __init__(self, cls: type, record: bytes):
        self.cls, self.record = cls, record


class _Pickler(pickle._Pickler):   # the Python pickler: its save_global can be extended
    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is _Array:
            return obj.cls, obj.cls.reduce_args, {"handle": bytearray(obj.record)}
        if isinstance(obj, _Global):
            return copyreg.__newobj__, (type(obj),), obj.state
        return NotImplemented

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if isinstance(obj, type) and issubclass(obj, _Global):
            module, _, qualname = obj.mxnet_class.rpartition(".")
            self.save(module)
            self.save(qualname)
            self.write(pickle.STACK_GLOBAL)
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def dumps(obj: Any) -> bytes:
    """A pickle (protocol 4, as MXNet writes on Python 3) that MXNet 1.9.1 loads into its own
    objects: NumPy arrays and torch tensors as NDArray, :class:`RowSparseArray` (and torch sparse
    COO) as RowSparseNDArray, objects with an ``mxnet_class`` as that class (NEWOBJ + BUILD with
    their ``__getstate__()``), dicts, lists, tuples and plain values as they are.

    Raises:
        TypeError: anything else (named, with where it is in ``obj``).
    """
    tree = _Exporter().value(obj, "the object", 0)
    buf = io.BytesIO()
    _Pickler(buf, protocol=4).dump(tree)
    return buf.getvalue()


def save(path: str | os.PathLike, obj: Any) -> None:
    """Write :func:`dumps` of ``obj`` to ``path`` atomically (``Trainer.save_states``' file)."""
    data = dumps(obj)
    write_atomically(path, lambda f: f.write(data))


class _Exporter:
    """Converts what :func:`dumps` is given into plain values and the two writer types, keeping
    shared references shared."""

    def __init__(self) -> None:
        self.done: dict[int, Any] = {}
        self.active: set[int] = set()

    def value(self, x: Any, where: str, depth: int) -> Any:
        if isinstance(x, np.generic) and x.dtype.kind in "biuf":
            return x.item()
        if type(x) in (str, int, float, bool, bytes, bytearray) or x is None:
            return x
        if id(x) in self.done:
            return self.done[id(x)]
        if id(x) in self.active or depth > _MAX_DEPTH:
            raise TypeError(f"dumps: {where} refers to itself or nests too deep")
        self.active.add(id(x))
        out = self.convert(x, where, depth)
        self.active.discard(id(x))
        self.done[id(x)] = out
        return out

    def convert(self, x: Any, where: str, depth: int) -> Any:
        if isinstance(x, dict):
            out = {}
            for k, v in x.items():
                key = self.value(k, f"a key of {where}", depth + 1)
                if not isinstance(key, _PLAIN) and type(key) is not tuple:
                    raise TypeError(f"dumps: {where} has a key of type {type(k).__name__}")
                out[key] = self.value(v, f"{where}[{k!r}]", depth + 1)
            return out
        if type(x) in (list, tuple):
            return type(x)(self.value(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(x))
        if _arrays.is_torch_tensor(x) and _arrays.torch_layout(x) == "sparse_coo":
            x = RowSparseArray.from_torch(x)
        if isinstance(x, (RowSparseArray, np.ndarray)) \
                or (_arrays.is_torch_tensor(x) and _arrays.torch_layout(x) == "strided"):
            rec = V.to_record(x, f"dumps: {where}")
            zero = rec.stype == F.DEFAULT and (rec.data.ndim == 0 or rec.data.size == 0)
            rec.layout.version = F.V3 if zero else F.V2   # as MXNet under np-shape / not
            cls = U.ROW_SPARSE if rec.stype == F.ROW_SPARSE else U.NDARRAY
            if rec.stype == F.CSR:
                raise TypeError(f"dumps: {where} is a csr matrix; MXNet's optimizer states are "
                                f"dense or row_sparse")
            return _Array(_global(cls), F.encode_record(rec))
        name = getattr(type(x), "mxnet_class", None)
        if isinstance(name, str) and hasattr(x, "__getstate__"):
            state = x.__getstate__()
            if type(state) is not dict:
                raise TypeError(f"dumps: {where} ({name}).__getstate__() returned "
                                f"{type(state).__name__}; expected a dict")
            out = _global(name).__new__(_global(name))
            out.state = self.value(state, f"{where}.__getstate__()", depth + 1)
            return out
        raise TypeError(f"dumps: {where} is {_arrays.describe(x)}; a .states pickle holds "
                        f"arrays, adamop optimizer/scheduler objects and plain Python values")
