"""Operator parameters as MXNet 1.9.1 declares and reads them, and the scalars a kernel sees.

A :class:`Param` is one ``DMLC_DECLARE_FIELD``; an operator's :class:`OpParams` subclass parses
keyword values as MXNet does (``str(value)`` through dmlc-core's parsers, :mod:`adamop.dmlc`) and
casts them to an array's dtype as :class:`Scalars` (``static_cast<DType>(float32)`` in the kernel).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from .dmlc import dmlc_parse_bool, dmlc_parse_float32

__all__ = ["Param", "OpParams", "Scalars", "make_params_class", "dmlc_parse_float32",
           "dmlc_parse_bool"]


@dataclass(frozen=True)
class Param:
    """One operator parameter as MXNet declares it (``DMLC_DECLARE_FIELD``).

    ``default`` is the C++ literal of the default (``None``: required). A default is a compiled
    constant, so it is the *correctly rounded* float32 of that literal, not a dmlc parse of it.
    """

    name: str
    kind: type                     # float (parsed to float32) or bool
    default: str | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind not in (float, bool):
            raise ValueError(f"Param {self.name}: kind must be float or bool, got {self.kind}")

    @property
    def default_value(self) -> Any:
        if self.default is None:
            return None
        return np.float32(float(self.default)) if self.kind is float else self.default == "true"

    def parse(self, value: Any) -> Any:
        return (dmlc_parse_float32 if self.kind is float else dmlc_parse_bool)(self.name, value)


# A training loop passes the same hyperparameters every step: parsing them (``str`` of each value,
# dmlc's parser, the object) once per distinct set saves most of a small call's overhead.
_PARSED: dict[tuple, "OpParams"] = {}
_PARSED_SIZE = 1024


def _exact_key(cls: type, kwargs: Mapping[str, Any], allow_dunder: bool) -> tuple | None:
    """A key that equals another only for keyword values that parse alike, or None (not cached).

    Equal Python values can differ in what MXNet parses (``str`` of each): ``True == 1`` and
    ``0.0 == -0.0``. So each value is keyed with its type, and float zeros by their text.
    """
    key: list[Any] = [cls, allow_dunder]
    for name, value in kwargs.items():
        kind = type(value)
        if kind is float:
            if value == 0.0:
                value = str(value)
        elif kind not in (str, int, bool, type(None)):
            return None   # numpy scalars, arrays, user types: parsed every time
        key.append((name, kind, value))
    return tuple(key)


class OpParams:
    """The parsed parameters of one operator call (MXNet's ``dmlc::Parameter`` struct).

    Each operator gets its own subclass from :func:`make_params_class`, with one attribute per
    :class:`Param` (float32 for floats, MXNet's compiled default where not given). ``given`` keeps
    the explicitly given parameters as the strings MXNet stores in a symbol's attributes.
    Instances are immutable; they compare (and hash) by the bits of their values.
    """

    spec: ClassVar[tuple[Param, ...]] = ()
    float_names: ClassVar[tuple[str, ...]] = ()
    names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, given: Mapping[str, str] | None = None, **values: Any):
        for p in self.spec:
            value = values.pop(p.name, p.default_value)
            if value is None:
                raise TypeError(f"{type(self).__name__}: the required parameter {p.name} is "
                                f"missing")
            object.__setattr__(self, p.name, np.float32(value) if p.kind is float else bool(value))
        if values:
            raise TypeError(f"{type(self).__name__}: unknown parameter(s) {sorted(values)}")
        object.__setattr__(self, "given", dict(given or {}))
        # Scalars per dtype, made once per instance. Not a cache keyed on equality of floats:
        # -0.0 == 0.0, but a clip_gradient of -0.0 clips differently from 0.0.
        object.__setattr__(self, "_scalars", {})

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _bits(self) -> tuple:
        floats = np.array([getattr(self, n) for n in self.float_names], np.float32)
        return (type(self), floats.tobytes(),
                tuple(getattr(self, p.name) for p in self.spec if p.kind is bool))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OpParams):
            return NotImplemented
        return self is other or self._bits() == other._bits()

    def __hash__(self) -> int:
        return hash(self._bits())

    def __repr__(self) -> str:
        shown = ", ".join(f"{p.name}={getattr(self, p.name)!r}" for p in self.spec)
        return f"{type(self).__name__}({shown})"

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any], *, op_name: str | None = None,
                    allow_dunder: bool = False) -> "OpParams":
        """Validate and parse keyword parameters (values of any type, sent through ``str``).

        Args:
            kwargs: parameter name -> value; ``None`` values count as not given.
            op_name: named in error messages (a node name in the symbolic API); defaults to the
                operator's name.
            allow_dunder: accept and ignore ``__key__`` attributes, as MXNet does on graph nodes.

        Raises:
            TypeError: an unknown parameter name.
            ValueError: a missing required parameter, a value MXNet would not parse, or a NaN or
                infinite value.
        """
        key = _exact_key(cls, kwargs, allow_dunder)   # op_name only words errors, never cached
        parsed = _PARSED.get(key) if key is not None else None
        if parsed is None:
            parsed = cls._parse(kwargs, op_name or cls.op_name, allow_dunder)
            if key is not None:
                if len(_PARSED) >= _PARSED_SIZE:
                    _PARSED.clear()
                _PARSED[key] = parsed
        return parsed

    @classmethod
    def _parse(cls, kwargs: Mapping[str, Any], op_name: str, allow_dunder: bool) -> "OpParams":
        given: dict[str, str] = {}
        for key, value in kwargs.items():
            if value is None:
                continue
            if allow_dunder and key.startswith("__") and key.endswith("__"):
                continue
            if key not in cls.names:
                raise TypeError(f"{op_name}: unknown parameter {key!r}; expected one of "
                                f"{', '.join(cls.names)}")
            given[key] = str(value)
        for p in cls.spec:
            if p.default is None and p.name not in given:
                raise ValueError(f"{op_name}: the required parameter {p.name} is missing; pass "
                                 f"{p.name}=<{p.kind.__name__}>, e.g. {p.name}=0.001")
        values: dict[str, Any] = {}
        by_name = {p.name: p for p in cls.spec}
        for key, text in given.items():
            p = by_name[key]
            # the original value, so the message can name its type (str(value) == text)
            parsed = p.parse(kwargs[key])
            if p.kind is float and not math.isfinite(parsed):
                raise ValueError(f"{op_name}: {key}={text!r} is not finite; adamop refuses NaN and "
                                 f"infinite hyperparameters (MXNet accepts them silently and "
                                 f"produces NaN or no clipping); pass a finite value"
                                 + (", or -1 to turn clipping off" if key == "clip_gradient"
                                    else ""))
            values[key] = parsed
        return cls(given=given, **values)

    def scalars(self, dtype: Any) -> "Scalars":
        """The float parameters cast to the array dtype, as ``static_cast<DType>(float)`` in the
        kernel."""
        made = self._scalars.get(dtype)
        if made is None:
            dt = np.dtype(dtype)
            made = self._scalars[dtype] = Scalars(
                dt, self.float_names, [getattr(self, n) for n in self.float_names])
        return made


def make_params_class(class_name: str, op_name: str, spec: Sequence[Param]) -> type[OpParams]:
    """The :class:`OpParams` subclass of one operator, from its parameter declarations."""
    spec = tuple(spec)
    return type(class_name, (OpParams,), {
        "spec": spec, "op_name": op_name, "names": tuple(p.name for p in spec),
        "float_names": tuple(p.name for p in spec if p.kind is float),
        "__doc__": f"The parsed parameters of ``{op_name}``: "
                   + ", ".join(p.name for p in spec) + "."})


class Scalars:
    """Kernel scalars: the float parameters cast to the array dtype, in declaration order.

    float16 rounds (the default epsilon becomes 0). Backends take them packed once:
    :attr:`vector` (a read-only array in the compute type, float32 for float16 arrays, where every
    value is exact) or :attr:`floats` (Python floats, each exactly a float32). ``clip`` is MXNet's
    ``clip_gradient >= 0`` compared in the dtype (-0.0 clips, NaN does not).

    Equal (and hashed alike) when the kernel would see the same bits: ``wd=-0.0`` differs from
    ``wd=0.0`` (``w * wd`` keeps the sign), so a cache keyed on Scalars cannot mix them up.
    """

    __slots__ = ("dtype", "names", "values", "clip", "vector", "floats", "_bits")

    def __init__(self, dtype: np.dtype, names: Sequence[str], values: Sequence[Any]):
        cast = dtype.type
        with np.errstate(over="ignore"):   # a float32 beyond float16's range becomes inf, as in C
            values = tuple(cast(v) for v in values)
        index = dict(zip(names, range(len(names))))
        clip = "clip_gradient" in index and bool(values[index["clip_gradient"]] >= 0)
        vector = np.array(values, np.float32 if dtype == np.float16 else dtype)
        vector.flags.writeable = False
        for name, value in (("dtype", dtype), ("names", tuple(names)), ("values", values),
                            ("clip", clip), ("vector", vector),
                            ("floats", tuple(float(v) for v in values)),
                            ("_bits", (dtype.str, clip, np.array(values, dtype).tobytes()))):
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[self.names.index(name)]
        except ValueError:
            raise AttributeError(f"Scalars has no parameter {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Scalars are immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scalars):
            return NotImplemented
        return self is other or self._bits == other._bits

    def __hash__(self) -> int:
        return hash(self._bits)

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={v!r}" for n, v in zip(self.names, self.values))
        return f"Scalars({self.dtype}, {shown}, clip={self.clip})"
