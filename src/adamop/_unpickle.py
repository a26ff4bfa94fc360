"""The restricted unpickler of ``.states`` files: MXNet's globals resolve to inert stand-ins.

The opcode stream is checked before anything is unpickled (:func:`check_opcodes`); a global
resolves only if MXNet writes it into such files (SPEC_TRAINING C.3, plus the helpers pickle
protocols 0-2 use), and to a stand-in class that records what the file asks of it, accepting
exactly the arguments MXNet pickles with. Nothing the file names is imported or called.
"""
from __future__ import annotations

import io
import pickle
import pickletools
from typing import Any

__all__ = ["ADAM", "NDARRAY", "ROW_SPARSE", "Refused", "StandIn", "read_tree"]

NDARRAY = "mxnet.ndarray.ndarray.NDArray"
ROW_SPARSE = "mxnet.ndarray.sparse.RowSparseNDArray"
ADAM = "mxnet.optimizer.optimizer.Adam"
_OPTIMIZERS = ("AdaDelta", "AdaGrad", "Adam", "Adamax", "DCASGD", "FTML", "Ftrl", "LAMB", "LARS",
               "LBSGD", "NAG", "Nadam", "RMSProp", "SGD", "SGLD", "Signum", "Test", "ccSGD")
_SCHEDULERS = ("LRScheduler", "FactorScheduler", "MultiFactorScheduler", "PolyScheduler",
               "CosineScheduler")
# global name in a file -> the MXNet 1.9.1 class it resolves to (aliases MXNet 1.9.1 resolves too)
_CLASSES = {NDARRAY: NDARRAY, "mxnet.ndarray.NDArray": NDARRAY, ROW_SPARSE: ROW_SPARSE,
            "mxnet.optimizer.contrib.GroupAdaGrad": "mxnet.optimizer.contrib.GroupAdaGrad"}
_CLASSES.update({f"{m}.{n}": f"mxnet.optimizer.optimizer.{n}" for n in _OPTIMIZERS
                 for m in ("mxnet.optimizer.optimizer", "mxnet.optimizer")})
_CLASSES.update({f"mxnet.lr_scheduler.{n}": f"mxnet.lr_scheduler.{n}" for n in _SCHEDULERS})

# Opcodes that build plain data (protocols 0-5), plus GLOBAL/STACK_GLOBAL (through find_class),
# REDUCE/NEWOBJ (only ever on the stand-ins) and BUILD. Refused: INST, OBJ, NEWOBJ_EX, EXT1/2/4,
# PERSID, BINPERSID, NEXT_BUFFER, READONLY_BUFFER: MXNet never writes them.
_OPCODES = frozenset("""PROTO FRAME STOP MARK POP POP_MARK DUP NONE NEWTRUE NEWFALSE INT BININT
    BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT STRING BINSTRING SHORT_BINSTRING UNICODE
    BINUNICODE SHORT_BINUNICODE BINUNICODE8 BINBYTES SHORT_BINBYTES BINBYTES8 BYTEARRAY8
    EMPTY_LIST APPEND APPENDS LIST EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_DICT DICT SETITEM
    SETITEMS EMPTY_SET ADDITEMS FROZENSET GET BINGET LONG_BINGET PUT BINPUT LONG_BINPUT MEMOIZE
    GLOBAL STACK_GLOBAL REDUCE NEWOBJ BUILD""".split())
_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"})


class Refused(ValueError):
    pass


class StandIn:
    """What a global of the file resolves to: a class that records, never runs, what the file
    asks of it. REDUCE/NEWOBJ may call it only with MXNet's arguments, BUILD only once."""
    __slots__ = ("state",)
    mxnet_class = ""
    reduce_args: tuple = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> "StandIn":
        if args != cls.reduce_args or kwargs:
            raise Refused(f"the file calls {cls.mxnet_class} with {args!r}; MXNet pickles it "
                          f"with {cls.reduce_args!r}")
        self = object.__new__(cls)
        self.state = None
        return self

    def __setstate__(self, state: Any) -> None:
        if self.state is not None:
            raise Refused(f"the file builds one {self.mxnet_class} twice")
        self.state = state


class _ByteArray:
    """``builtins.bytearray`` as MXNet's pickles call it: from bytes (protocol 3+), from a latin-1
    str (protocols 0-2) or empty; never ``bytearray(n)``, which would allocate n bytes."""
    __slots__ = ()

    def __new__(cls, *args: Any) -> bytearray:   # type: ignore[misc]
        if not args:
            return bytearray()
        if len(args) == 1 and isinstance(args[0], bytes):
            return bytearray(args[0])
        if len(args) == 2 and isinstance(args[0], str) and args[1] == "latin-1":
            return bytearray(args[0], "latin-1")
        raise Refused(f"the file calls builtins.bytearray with {args!r:.80}; MXNet pickles it "
                      f"with bytes")

    def __setstate__(self, state: Any) -> None:
        raise Refused("the file builds builtins.bytearray")


class _Encode(_ByteArray):
    """``_codecs.encode(str, 'latin1')``: how protocols 0-2 pickle bytes on Python 3."""
    __slots__ = ()

    def __new__(cls, *args: Any) -> bytes:   # type: ignore[misc]
        if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
            return args[0].encode("latin-1")
        raise Refused(f"the file calls _codecs.encode with {args!r:.80}; pickles call it "
                      f"with (str, 'latin1')")


class _Object(_ByteArray):
    """``builtins.object``: only an argument of ``_reconstructor``, never called."""
    __slots__ = ()

    def __new__(cls, *args: Any) -> Any:
        raise Refused("the file calls builtins.object")


class _Reconstructor(_ByteArray):
    """``copyreg._reconstructor(cls, object, None)``: how protocols 0-1 (Python 2's default)
    pickle an MXNet optimizer or scheduler; only for those classes and exactly those arguments."""
    __slots__ = ()

    def __new__(cls, *args: Any) -> Any:
        if len(args) == 3 and isinstance(args[0], type) and issubclass(args[0], StandIn) \
                and args[0].reduce_args == () and args[1] is _Object and args[2] is None:
            return args[0]()
        raise Refused(f"the file calls copyreg._reconstructor with {args!r:.80}; pickles call "
                      f"it with (an MXNet optimizer or scheduler class, object, None)")


# globals of protocols 0-2 (Python 3 names and, as Python 2 and fix_imports write them, Python 2's)
_HELPERS = {"builtins.bytearray": _ByteArray, "__builtin__.bytearray": _ByteArray,
            "_codecs.encode": _Encode, "builtins.object": _Object, "__builtin__.object": _Object,
            "copyreg._reconstructor": _Reconstructor, "copy_reg._reconstructor": _Reconstructor}


_STAND_INS: dict[str, type] = {}


def _stand_in(mxnet_class: str) -> type:
    if mxnet_class not in _STAND_INS:
        ndarray = mxnet_class in (NDARRAY, ROW_SPARSE)
        _STAND_INS[mxnet_class] = type(mxnet_class.rsplit(".", 1)[1], (StandIn,), {
            "__slots__": (), "mxnet_class": mxnet_class,
            "reduce_args": (None,) if ndarray else ()})
    return _STAND_INS[mxnet_class]


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> type:
        dotted = f"{module}.{name}"
        if dotted in _HELPERS:
            return _HELPERS[dotted]
        if dotted in _CLASSES:
            return _stand_in(_CLASSES[dotted])
        raise Refused(f"refused global {dotted!r}: a .states file may only name "
                      f"MXNet's NDArray classes, optimizers and lr_scheduler classes, and "
                       f"builtins.bytearray (and the helpers of pickle protocols 0-2)")

    def persistent_load(self, pid: Any) -> Any:
        raise Refused("refused a persistent id: MXNet's .states files have none")


def check_opcodes(data: bytes) -> None:
    """Refuse, before unpickling, opcodes outside MXNet's repertoire, memo indices a real pickle
    cannot have (the C unpickler would allocate a memo table that large), ints beyond 64 bits and
    bytes after the end."""
    puts, end = 0, 0
    for op, arg, pos in pickletools.genops(data):
        name = op.name
        if name not in _OPCODES:
            raise Refused(f"refused pickle opcode {name} at byte {pos}: MXNet's .states files "
                          f"never use it")
        if name in _MEMO_PUTS:
            if name != "MEMOIZE" and arg != puts:   # picklers number their puts 0, 1, 2, ...
                raise Refused(f"memo index {arg} at byte {pos}; expected {puts}")
            puts += 1
        elif name in ("GET", "BINGET", "LONG_BINGET") and not 0 <= arg < puts:
            raise Refused(f"memo index {arg} at byte {pos}, but {puts} values are stored")
        elif name == "PROTO" and arg > pickle.HIGHEST_PROTOCOL:
            raise Refused(f"unknown pickle protocol {arg}")
        elif name in ("LONG", "LONG1", "LONG4", "INT") and abs(arg) >= 2 ** 64:
            raise Refused(f"an integer of {int(arg).bit_length()} bits at byte {pos}")
        end = pos + 1
    if end != len(data):
        raise Refused(f"{len(data) - end} unexpected bytes after the pickle's end")


def read_tree(data: bytes) -> Any:
    """The unpickled structure, MXNet's objects as :class:`StandIn` instances."""
    check_opcodes(data)
    return _Unpickler(io.BytesIO(data)).load()
