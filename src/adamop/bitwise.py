"""Bit-for-bit comparison of results: same shape and dtype, any NaN matches any NaN, and the sign
of zero counts. What ``adamop check``, the tests and the benchmarks hold adamop to."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["to_numpy", "mismatch", "assert_bitexact"]


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy array of ``x``'s values: a RowSparseArray densified, a torch tensor copied to the
    host."""
    if getattr(x, "stype", None) == "row_sparse":
        x = x.todense()
    if type(x).__module__.startswith("torch"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def mismatch(actual: Any, expected: Any) -> str | None:
    """None if bit-identical, else a description of the first differences."""
    a, e = to_numpy(actual), to_numpy(expected)
    if a.shape != e.shape or a.dtype != e.dtype:
        return f"shape/dtype {a.shape} {a.dtype} != expected {e.shape} {e.dtype}"
    uint = np.dtype(f"u{a.dtype.itemsize}")
    an, en = np.isnan(a), np.isnan(e)
    same = (an & en) | (~an & ~en & (a.view(uint) == e.view(uint)))
    if same.all():
        return None
    bad = np.argwhere(~same)
    lines = [f"{int((~same).sum())} of {a.size} elements differ; first:"]
    for idx in bad[:5]:
        i = tuple(int(k) for k in idx)
        lines.append(f"  {i}: got {a[i]!r} ({a[i].view(uint)!r}) expected {e[i]!r} "
                     f"({e[i].view(uint)!r})")
    return "\n".join(lines)


def assert_bitexact(actual: Any, expected: Any, what: str = "") -> None:
    """Raise AssertionError, saying what differs, unless ``actual`` is bit-identical."""
    msg = mismatch(actual, expected)
    if msg is not None:
        raise AssertionError(f"{what}: {msg}" if what else msg)
