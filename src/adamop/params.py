"""Hyperparameters as MXNet 1.9.1 reads them: ``str(value)`` parsed to float32 by dmlc-core.

MXNet's Python front end sends every keyword as ``str(value)``; dmlc-core's ``ParseFloat<float>``
turns it into a float32 with its own fast parser, which is *not* correctly rounded (SPEC B §1.1).
The kernel then does ``static_cast<DType>(that float32)``. Reproducing the numbers bit for bit
therefore starts here, long before any arithmetic.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

__all__ = ["AdamParams", "Scalars", "FLOAT_PARAMS", "PARAM_NAMES", "dmlc_parse_float32",
           "dmlc_parse_bool"]

#: Float parameters in MXNet's declaration order (``AdamParam`` in optimizer_op-inl.h).
FLOAT_PARAMS = ("lr", "beta1", "beta2", "epsilon", "wd", "rescale_grad", "clip_gradient")
PARAM_NAMES = FLOAT_PARAMS + ("lazy_update",)

# Compiled C++ literals: correctly rounded float32 constants, not dmlc parses.
_DEFAULTS = {
    "beta1": np.float32(0.9),
    "beta2": np.float32(0.999),
    "epsilon": np.float32(1e-8),
    "wd": np.float32(0.0),
    "rescale_grad": np.float32(1.0),
    "clip_gradient": np.float32(-1.0),
}

_SPACE = " \t\r\n\f"
_DIGITS = "0123456789"
_MAX_SIGNIFICAND_AT_E38 = np.float32(3.402823466)    # dmlc's kMaxSignificandForMaxExponent
_MIN_SIGNIFICAND_AT_E_38 = np.float32(1.175494351)   # dmlc's kMaxSignificandForNegMaxExponent
_HINT = "pass a Python float such as 0.001, or a string such as '1e-3'"


def _uint64_to_float32(n: int) -> np.float32:
    """``static_cast<float>(uint64_t)``: one correct rounding (ties to even), no double step."""
    if n < (1 << 24):
        return np.float32(n)
    shift = n.bit_length() - 24
    mantissa, rest = n >> shift, n & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    if rest > half or (rest == half and mantissa & 1):
        mantissa += 1
    with np.errstate(over="ignore"):
        return np.float32(np.ldexp(np.float32(mantissa), shift))


@functools.lru_cache(maxsize=4096)   # training loops send the same few strings every step
def _dmlc_strtof(text: str) -> tuple[np.float32, int, bool]:
    """dmlc ``ParseFloat<float, CheckRange=true>``: (value, characters used, out_of_range)."""
    p, n = 0, len(text)

    def at(i: int) -> str:
        return text[i] if i < n else "\0"

    while at(p) in _SPACE and p < n:
        p += 1
    negative = False
    if at(p) in "+-":
        negative = at(p) == "-"
        p += 1
    lowered = text[p:p + 8].lower()
    # "inf" or "infinity" (a longer partial match such as "infin" falls through to the digits).
    matched = 0
    while matched < len(lowered) and matched < 8 and lowered[matched] == "infinity"[matched]:
        matched += 1
    if matched in (3, 8):
        return np.float32(-np.inf if negative else np.inf), p + matched, False
    if lowered.startswith("nan"):
        p += 3
        if at(p) == "(":
            q = p + 1
            while q < n and (text[q].isascii() and (text[q].isalnum() or text[q] == "_")):
                q += 1
            if at(q) != ")":
                raise ValueError("Invalid NAN literal")
            p = q + 1
        return np.float32(np.nan), p, False

    predec = 0
    while at(p) in _DIGITS and p < n:
        predec = (predec * 10 + ord(text[p]) - 48) % (1 << 64)   # uint64 arithmetic wraps
        p += 1
    value = _uint64_to_float32(predec)
    if at(p) == ".":
        p += 1
        fraction, pow10, digits = 0, 1, 0
        while at(p) in _DIGITS and p < n:
            if digits < 19:   # kStrtofMaxDigits: later digits are read and ignored
                fraction = fraction * 10 + ord(text[p]) - 48
                pow10 *= 10
            p += 1
            digits += 1
        # static_cast<float>(double(val2) / double(pow10)), then a float32 addition.
        value = np.float32(value + np.float32(float(fraction) / float(pow10)))
    if at(p) in "eE" and p < n:
        p += 1
        divide = False
        if at(p) in "+-":
            divide = at(p) == "-"
            p += 1
        exponent = 0
        while at(p) in _DIGITS and p < n:
            exponent = (exponent * 10 + ord(text[p]) - 48) % (1 << 32)   # unsigned wraps
            p += 1
        if exponent > 38:
            return np.float32(np.inf), p, True
        if exponent == 38 and ((not divide and value > _MAX_SIGNIFICAND_AT_E38)
                               or (divide and value < _MIN_SIGNIFICAND_AT_E_38)):
            return np.float32(np.inf), p, True
        scale = np.float32(1.0)
        with np.errstate(over="ignore", under="ignore"):
            while exponent >= 8:
                scale = np.float32(scale * np.float32(1e8))
                exponent -= 8
            while exponent > 0:
                scale = np.float32(scale * np.float32(10.0))
                exponent -= 1
            value = np.float32(value / scale) if divide else np.float32(value * scale)
    if at(p) in "fF" and p < n:
        p += 1
    return np.float32(-value if negative else value), p, False


def dmlc_parse_float32(name: str, value: Any) -> np.float32:
    """Parse ``str(value)`` exactly as MXNet 1.9.1 parses a float operator parameter.

    Raises:
        ValueError: where MXNet raises (no number, trailing characters, exponent out of range).
    """
    text = str(value)
    try:
        parsed, used, out_of_range = _dmlc_strtof(text)
    except ValueError:
        raise ValueError(f"Invalid value for {name}: {text!r} is a malformed NaN literal; "
                         f"{_HINT}") from None
    if out_of_range:
        raise ValueError(f"Out of range value for {name}: {text!r} (MXNet parses parameters as "
                         f"float32 and rejects decimal exponents beyond 38); {_HINT} "
                         f"between about 1.2e-38 and 3.4e38")
    if used == 0:
        raise ValueError(f"Invalid value for {name}: expected a float, got {text!r} "
                         f"(received {type(value).__name__}); {_HINT}")
    if used < len(text):
        raise ValueError(f"Invalid value for {name}: trailing characters {text[used:]!r} in "
                         f"{text!r} could not be parsed (MXNet rejects them too); {_HINT}")
    return parsed


def dmlc_parse_bool(name: str, value: Any) -> bool:
    """Parse ``str(value)`` as dmlc parses a bool: true/false/1/0 in any case."""
    text = str(value).lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise ValueError(f"Invalid value for {name}: expected a boolean (True/False, 1/0), "
                     f"got {str(value)!r}")


# A training loop passes the same hyperparameters every step: parsing them (``str`` of each value,
# dmlc's parser, the dataclass) once per distinct set saves most of a small call's overhead.
_PARSED: dict[tuple, "AdamParams"] = {}
_PARSED_SIZE = 1024


def _exact_key(kwargs: Mapping[str, Any], allow_dunder: bool) -> tuple | None:
    """A key that equals another only for keyword values that parse alike, or None (not cached).

    Equal Python values can differ in what MXNet parses (``str`` of each): ``True == 1`` and
    ``0.0 == -0.0``. So each value is keyed with its type, and float zeros by their text.
    """
    key: list[Any] = [allow_dunder]
    for name, value in kwargs.items():
        kind = type(value)
        if kind is float:
            if value == 0.0:
                value = str(value)
        elif kind not in (str, int, bool, type(None)):
            return None   # numpy scalars, arrays, user types: parsed every time
        key.append((name, kind, value))
    return tuple(key)


@dataclass(frozen=True)
class AdamParams:
    """The parsed hyperparameters of one ``adam_update`` call, as float32 (MXNet's ``AdamParam``).

    ``given`` keeps the explicitly given parameters as the strings MXNet stores in a symbol's
    attributes; unspecified ones take MXNet's compiled defaults.
    """

    lr: np.float32
    beta1: np.float32 = _DEFAULTS["beta1"]
    beta2: np.float32 = _DEFAULTS["beta2"]
    epsilon: np.float32 = _DEFAULTS["epsilon"]
    wd: np.float32 = _DEFAULTS["wd"]
    rescale_grad: np.float32 = _DEFAULTS["rescale_grad"]
    clip_gradient: np.float32 = _DEFAULTS["clip_gradient"]
    lazy_update: bool = True
    given: Mapping[str, str] = field(default_factory=dict, compare=False)
    # Scalars per dtype, made once per instance. Not a cache keyed on equality: -0.0 == 0.0, but a
    # clip_gradient of -0.0 clips differently from 0.0.
    _scalars: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any], *, op_name: str = "adam_update",
                    allow_dunder: bool = False) -> "AdamParams":
        """Validate and parse keyword parameters (values of any type, sent through ``str``).

        Args:
            kwargs: parameter name -> value; ``None`` values count as not given.
            op_name: named in error messages (a node name in the symbolic API).
            allow_dunder: accept and ignore ``__key__`` attributes, as MXNet does on graph nodes.

        Raises:
            TypeError: an unknown parameter name.
            ValueError: a missing ``lr``, a value MXNet would not parse, or a NaN/inf value.
        """
        key = _exact_key(kwargs, allow_dunder)
        parsed = _PARSED.get(key) if key is not None else None
        if parsed is None:
            parsed = cls._parse(kwargs, op_name, allow_dunder)
            if key is not None:
                if len(_PARSED) >= _PARSED_SIZE:
                    _PARSED.clear()
                _PARSED[key] = parsed
        return parsed

    @classmethod
    def _parse(cls, kwargs: Mapping[str, Any], op_name: str, allow_dunder: bool) -> "AdamParams":
        given: dict[str, str] = {}
        for key, value in kwargs.items():
            if value is None:
                continue
            if allow_dunder and key.startswith("__") and key.endswith("__"):
                continue
            if key not in PARAM_NAMES:
                raise TypeError(f"{op_name}: unknown parameter {key!r}; expected one of "
                                f"{', '.join(PARAM_NAMES)}")
            given[key] = str(value)
        if "lr" not in given:
            raise ValueError(f"{op_name}: the required parameter lr is missing; pass lr=<float>, "
                             f"e.g. lr=0.001")
        values: dict[str, Any] = {}
        for key, text in given.items():
            if key == "lazy_update":
                values[key] = dmlc_parse_bool(key, text)
                continue
            # the original value, so the message can name its type (str(value) == text)
            parsed = dmlc_parse_float32(key, kwargs[key])
            if not math.isfinite(parsed):
                raise ValueError(f"{op_name}: {key}={text!r} is not finite; adamop refuses NaN and "
                                 f"infinite hyperparameters (MXNet accepts them silently and "
                                 f"produces NaN or no clipping); pass a finite value"
                                 + (", or -1 to turn clipping off" if key == "clip_gradient"
                                    else ""))
            values[key] = parsed
        return cls(**values, given=given)

    def scalars(self, dtype: np.dtype) -> "Scalars":
        """Each scalar cast to the array dtype, as ``static_cast<DType>(float)`` in the kernel."""
        made = self._scalars.get(dtype)
        if made is None:
            made = self._scalars[dtype] = Scalars.from_params(self, np.dtype(dtype))
        return made


_SCALAR_FIELDS = (*FLOAT_PARAMS, "one_minus_beta1", "one_minus_beta2")


@dataclass(frozen=True, eq=False)
class Scalars:
    """Kernel scalars in the array dtype (float16 rounds: the default epsilon becomes 0).

    Equal (and hashed alike) when the kernel would see the same bits: ``wd=-0.0`` differs from
    ``wd=0.0`` (``w * wd`` keeps the sign), so a cache keyed on Scalars cannot mix them up.
    """

    dtype: np.dtype
    lr: np.floating
    beta1: np.floating
    beta2: np.floating
    epsilon: np.floating
    wd: np.floating
    rescale_grad: np.floating
    clip_gradient: np.floating
    one_minus_beta1: np.floating   # (1 - beta1) computed in the dtype, as the kernel does
    one_minus_beta2: np.floating
    clip: bool                     # clip_gradient >= 0 compared in the dtype: -0.0 clips, NaN not

    def __post_init__(self) -> None:
        values = [getattr(self, name) for name in _SCALAR_FIELDS]
        bits = (self.dtype.str, self.clip, np.array(values, self.dtype).tobytes())
        object.__setattr__(self, "_bits", bits)   # frozen: set once, here

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scalars):
            return NotImplemented
        return self is other or self._bits == other._bits

    def __hash__(self) -> int:
        return hash(self._bits)

    @classmethod
    def from_params(cls, params: AdamParams, dtype: np.dtype) -> "Scalars":
        cast = dtype.type
        s = {name: cast(getattr(params, name)) for name in FLOAT_PARAMS}
        one = cast(1)
        return cls(dtype=dtype, **s, one_minus_beta1=cast(one - s["beta1"]),
                   one_minus_beta2=cast(one - s["beta2"]), clip=bool(s["clip_gradient"] >= 0))
