"""The benchmark cases (``BENCH.md``): what is updated, and how many bytes that moves."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LR = 0.001


@dataclass(frozen=True)
class Case:
    """One workload. ``kind``: dense | lazy | std | multi | updater | mp | torch-multi |
    torch-resnet50.

    dense: ``size`` elements. lazy/std: a ``(size, row_length)`` table with ``rows`` gradient
    rows. multi: ``count`` tensors of ``size`` elements; updater: the same through the
    optimizer's ``Updater``; mp: ``count`` float16 tensors with float32 master copies
    (:mod:`.optimizer_cases`); torch-multi: ``count`` x ``size`` through ``adamop.torch.Adam``;
    torch-resnet50: ResNet-50's ``count`` parameter shapes (``size`` elements in all; ``rows``:
    the width divisor of a quick run) (:mod:`.torch_cases`).
    """

    kind: str
    dtype: str
    size: int
    rows: int = 0
    row_length: int = 0
    count: int = 1

    @property
    def name(self) -> str:
        if self.kind == "dense":
            return f"dense {self.dtype} n={self.size:,}"
        if self.kind == "multi":
            return f"multi {self.dtype} {self.count:,} x {self.size:,}"
        if self.kind == "updater":
            return f"updater {self.dtype} {self.count:,} x {self.size:,}"
        if self.kind == "mp":
            return f"master-copy float16 {self.count:,} x {self.size:,}"
        if self.kind == "torch-multi":
            return f"torch.Adam {self.dtype} {self.count:,} x {self.size:,}"
        if self.kind == "torch-resnet50":
            narrow = f" / {self.rows}" if self.rows > 1 else ""
            return f"torch.Adam resnet50{narrow} {self.dtype} {self.count} tensors, {self.size:,}"
        return f"{self.kind} {self.dtype} {self.size:,}x{self.row_length} rows={self.rows:,}"

    @property
    def elements(self) -> int:
        """Elements one update reads and writes (lazy: only the touched rows)."""
        if self.kind == "lazy":
            return self.rows * self.row_length
        if self.kind == "std":
            return self.size * self.row_length
        if self.kind == "torch-resnet50":
            return self.size
        return self.size * self.count

    @property
    def bytes(self) -> int:
        """Memory traffic: 7 x itemsize per element (read w, g, m, v; write w, m, v), plus the
        int64 indices of a row_sparse gradient. Multi-precision, in one pass: read the float16
        grad, read and write the float32 master, mean and var, write the float16 weight (28)."""
        if self.kind == "mp":
            return 28 * self.elements
        moved = 7 * np.dtype(self.dtype).itemsize * self.elements
        return moved + (8 * self.rows if self.kind in ("lazy", "std") else 0)


def all_cases(quick: bool) -> list[Case]:
    """Every case; ``quick`` shrinks them so a run takes seconds."""
    if quick:
        table, length = 20_000, 16
        dense = [Case("dense", d, n) for d in ("float32", "float16", "float64")
                 for n in (1 << 12, 1 << 16)]
        sparse = [Case(k, "float32", table, rows, length) for k in ("lazy", "std")
                  for rows in (200, 2_000)]
        return dense + sparse + [Case("multi", "float32", 1 << 10, count=50),
                                 Case("updater", "float32", 1 << 10, count=50),
                                 Case("mp", "float16", 1 << 10, count=50)] + _torch(quick)
    dense = [Case("dense", "float32", n) for n in (1 << 12, 1 << 16, 1 << 20, 1 << 22, 1 << 24)]
    dense += [Case("dense", d, n) for d in ("float16", "float64") for n in (1 << 16, 1 << 20,
                                                                           1 << 24)]
    table, length = 1_000_000, 64
    sparse = [Case(k, "float32", table, rows, length) for k in ("lazy", "std")
              for rows in (2_000, 20_000, 100_000)]
    return dense + sparse + [Case(kind, dtype, 1 << 14, count=2_000) for kind, dtype in (
        ("multi", "float32"), ("updater", "float32"), ("mp", "float16"))] + _torch(quick)


def _torch(quick: bool) -> list[Case]:
    """The PyTorch front end's cases, where torch is installed."""
    import importlib.util
    if importlib.util.find_spec("torch") is None:
        return []
    from . import torch_cases
    return torch_cases.cases(quick)


def select(cases: list[Case], patterns: list[str] | None) -> list[Case]:
    """Cases whose name contains any of ``patterns`` (all when None)."""
    if not patterns:
        return cases
    return [c for c in cases if any(p in c.name for p in patterns)]
