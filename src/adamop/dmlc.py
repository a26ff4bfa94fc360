"""dmlc-core's parsers of operator parameters: ``ParseFloat<float>`` and the bool parser.

MXNet's Python front end sends every keyword as ``str(value)``; dmlc-core turns it into a float32
with its own fast parser, which is *not* correctly rounded (SPEC B §1.1), and rejects what it
cannot read. Reproducing MXNet's numbers bit for bit starts here, long before any arithmetic.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

__all__ = ["dmlc_parse_float32", "dmlc_parse_bool"]

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
