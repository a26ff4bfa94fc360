"""Argument checks shared by the optimizer and the schedulers, and MXNet-compatible error types.

MXNet 1.9.1 checks some arguments with ``assert`` and refuses ``set_learning_rate`` by *raising*
``UserWarning``. adamop raises ``TypeError``/``ValueError`` instead (what a caller of a Python
library expects), with classes that are also the exception MXNet raised, so code written for
MXNet that catches ``AssertionError`` or ``UserWarning`` keeps working.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np


class AssertionTypeError(TypeError, AssertionError):
    """A wrong type where MXNet asserts (e.g. ``warmup_steps`` that is not an int)."""


class AssertionValueError(ValueError, AssertionError):
    """A bad value where MXNet asserts (e.g. an empty ``MultiFactorScheduler`` step list)."""


class UserWarningError(ValueError, UserWarning):
    """A refused call where MXNet raises ``UserWarning`` (``set_learning_rate`` when there is a
    scheduler)."""


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python number of the same value; anything else unchanged.

    MXNet 1.9.1 runs under NumPy < 1.24, where a NumPy float32 scalar mixed with Python floats
    computes in float64: converting it once gives the same doubles under any NumPy, and keeps the
    optimizer's attributes plain Python values (what its pickles hold)."""
    return value.item() if isinstance(value, np.generic) else value


def real(owner: str, name: str, value: Any, *, optional: bool = False,
         finite: bool = True) -> Any:
    """``value`` as a Python int or float, or a ``TypeError``/``ValueError`` naming it.

    Args:
        owner: what is being built, for the message (``"Adam"``, ``"FactorScheduler"``).
        name: the argument's name.
        value: a Python or NumPy real number (``None`` too if ``optional``); not a bool.
        finite: refuse NaN and infinities (the update refuses them too, SPEC B §2).
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        expected = "a real number or None" if optional else "a real number"
        raise TypeError(f"{owner}: {name} must be {expected}, got {value!r} "
                        f"({type(value).__name__})")
    value = _plain(value)
    if finite and not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be finite, got {value!r}")
    return value


def integer(owner: str, name: str, value: Any, *, minimum: int | None = None,
            assertion: bool = False) -> int:
    """``value`` as a Python int (a NumPy integer is converted), or a clear error.

    ``assertion``: MXNet asserts this type (raise :class:`AssertionTypeError`). bool is an int
    to MXNet's ``isinstance`` checks and is accepted, as there."""
    if not isinstance(value, numbers.Integral):
        error = AssertionTypeError if assertion else TypeError
        raise error(f"{owner}: {name} must be an int, got {value!r} ({type(value).__name__})")
    value = _plain(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value}")
    return value


def flag(owner: str, name: str, value: Any) -> bool:
    """A bool (NumPy bools too), or a ``TypeError``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be True or False, got {value!r} "
                        f"({type(value).__name__})")
    return bool(value)


def mult_table(owner: str, name: str, table: Any) -> dict:
    """A dict of index or name -> real multiplier (``set_lr_mult`` / ``set_wd_mult``)."""
    if not isinstance(table, Mapping):
        raise TypeError(f"{owner}: {name} must be a dict of parameter index or name -> "
                        f"multiplier, got {type(table).__name__}")
    return {key: real(owner, f"{name}[{key!r}]", value) for key, value in table.items()}


# ---- restoring pickled objects (``__setstate__``) --------------------------------------------
def is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral)


def is_str(v: Any) -> bool:
    return isinstance(v, str)


def is_bool(v: Any) -> bool:
    return isinstance(v, (bool, np.bool_))


def is_dict(v: Any) -> bool:
    return isinstance(v, dict)


def check_state(owner: str, state: Any, types: Mapping[str, Any]) -> dict:
    """``state`` (a ``__getstate__`` dict, e.g. from an MXNet pickle), checked against ``types``
    (attribute -> predicate): every attribute present and of its type, or a ``ValueError``
    naming the first that is not. Other attributes are kept, as MXNet keeps them."""
    if not isinstance(state, dict):
        raise ValueError(f"{owner}.__setstate__: expected a dict of attributes, got "
                         f"{type(state).__name__}")
    missing = [k for k in types if k not in state]
    if missing:
        raise ValueError(f"{owner}.__setstate__: the state lacks attribute(s) "
                         f"{', '.join(missing)}; it is not a {owner} from MXNet 1.9.1 or adamop")
    for key, ok in types.items():
        if not ok(state[key]):
            raise ValueError(f"{owner}.__setstate__: attribute {key} has an unexpected value "
                             f"{state[key]!r} ({type(state[key]).__name__})")
    return dict(state)
