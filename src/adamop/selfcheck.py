"""``adamop check``: replay a compact golden set recorded from MXNet 1.9.1 on every backend.

The cases ship inside the package (``adamop/data/check_cases.npz``, built from the development
golden file by ``tools/make_check_data.py``): dense, lazy, std and fallback updates in every dtype
and storage combination, special values, unsorted indices (compared with MXNet's result on the
sorted input, SPEC A.5), empty states and ``mx.optimizer.Adam`` replays. A case passes only if
weight, mean and var are bit-identical to MXNet's (any NaN matches any NaN; signed zeros differ).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from . import dispatch, golden
from .api import adam_update
from .bitwise import mismatch, to_numpy

__all__ = ["CheckReport", "load_cases", "run_case", "runnable_backends", "run_check"]

PATHS = ("dense", "lazy", "std", "fallback", "optimizer")


def load_cases(path: Any = None) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The shipped cases (or a golden file's): (case metadata list, ``<id>__<name>`` -> array)."""
    meta, arrays = golden.load(path)
    return meta["cases"], arrays


def case_path(case: dict) -> str:
    """The table column of a case: its kernel path, or 'optimizer' for a replayed run."""
    return golden.Case(case, {}).path


# ---- one case --------------------------------------------------------------------------------
def _run_single(c: golden.Case, backend: str) -> list[tuple[str, Any]]:
    weight, grad, mean, var = c.inputs()
    out = weight if c.case["out_is_weight"] else None
    with np.errstate(all="ignore"):
        result = adam_update(weight, grad, mean, var, out=out, backend=backend,
                             **c.case["kwargs"])
    return list(zip(("weight", "mean", "var"), (result, mean, var)))


def _run_optimizer(c: golden.Case, backend: str) -> list[tuple[str, Any]]:
    """Replay the adam_update calls of an ``mx.optimizer.Adam`` run (GOLDEN_README.md)."""
    weight, mean, var = c.optimizer_start()
    for grad, kwargs in c.optimizer_steps():
        with np.errstate(all="ignore"):
            adam_update(weight, grad, mean, var, out=weight, backend=backend, **kwargs)
    final = to_numpy(weight)
    got = [final.astype(np.float16) if c.multi_precision else final, mean, var]
    if c.multi_precision:
        got.append(final)
    return [(name, g) for (name, _), g in zip(c.optimizer_expected(), got)]


def run_case(case: dict, arrays: dict[str, np.ndarray], backend: str,
             device: str = "cpu") -> str | None:
    """Run one case on ``backend``; None if bit-identical to MXNet, else what went wrong."""
    c = golden.Case(case, arrays, device)
    try:
        if case["group"] == "optimizer":
            checks, expected = _run_optimizer(c, backend), dict(c.optimizer_expected())
        else:
            checks = _run_single(c, backend)
            expected = {n + "_out": e for n, e in zip(("weight", "mean", "var"), c.expected())}
            checks = [(n + "_out", g) for n, g in checks]
    except Exception as exc:   # a crash is a failure of this case, reported with the others
        return f"raised {type(exc).__name__}: {exc}"
    for name, got in checks:
        problem = mismatch(got, expected[name])
        if problem is not None:
            return f"{name}: {problem}"
    return None


# ---- many cases on many backends -------------------------------------------------------------
@dataclass
class CheckReport:
    """Per backend and path: cases passed and run; the failures with their reasons."""

    counts: dict[tuple[str, str], list[int]] = field(default_factory=dict)   # -> [passed, run]
    failures: list[tuple[str, str, str]] = field(default_factory=list)     # (backend, id, why)
    errors: list[str] = field(default_factory=list)                         # backends that failed

    @property
    def ok(self) -> bool:
        return not self.failures and not self.errors and bool(self.counts)

    def table(self) -> str:
        backends = list(dict.fromkeys(b for b, _ in self.counts))
        width = max([len("backend")] + [len(b) for b in backends])
        head = f"{'backend':<{width}}  " + "  ".join(f"{p:>10}" for p in PATHS) + "       total"
        lines = [head, "-" * len(head)]
        for b in backends:
            cells, passed, run = [], 0, 0
            for p in PATHS:
                ok, n = self.counts.get((b, p), (0, 0))
                cells.append(f"{f'{ok}/{n}':>10}" if n else f"{'-':>10}")
                passed, run = passed + ok, run + n
            lines.append(f"{b:<{width}}  " + "  ".join(cells) + f"  {f'{passed}/{run}':>10}")
        return "\n".join(lines)


def runnable_backends(device: str) -> list[tuple[str, str | None]]:
    """(name, reason it cannot run on ``device`` or None) for backends registered for it."""
    return [(s.name, s.unavailable_reason()) for s in dispatch.registry() if device in s.devices]


def run_check(backends: Iterable[str] | None = None, *, devices: Iterable[str] = ("cpu",),
              cases: list[dict] | None = None, arrays: dict[str, np.ndarray] | None = None,
              progress: Callable[[str], None] | None = None) -> CheckReport:
    """Run the golden set on each named backend (default: every available one per device)."""
    if cases is None or arrays is None:
        cases, arrays = load_cases()
    wanted = None if backends is None else list(backends)
    devices = list(devices)
    report = CheckReport()
    specs = {s.name: s for s in dispatch.registry()}
    for name in wanted or ():
        if name not in specs:
            report.errors.append(f"{name}: unknown backend (registered: {', '.join(specs)})")
        elif not set(specs[name].devices) & set(devices):
            report.errors.append(f"{name}: runs on {'/'.join(specs[name].devices)}, which is not "
                                 f"available here (checked: {', '.join(devices)})")
    for device in devices:
        for name, reason in runnable_backends(device):
            if wanted is not None and name not in wanted:
                continue
            if reason is not None:
                if wanted is not None:   # asked for explicitly: that it cannot run is an error
                    report.errors.append(f"{name}: unavailable: {reason}")
                continue
            try:
                dispatch.select(device, name)   # loads the module; a broken install shows here
            except Exception as exc:
                report.errors.append(f"{name}: failed to load: {exc}")
                continue
            if progress is not None:
                progress(f"checking {name} on {device} ({len(cases)} cases) ...")
            label = name if device == "cpu" else f"{name} ({device})"
            for case in cases:
                problem = run_case(case, arrays, name, device)
                cell = report.counts.setdefault((label, case_path(case)), [0, 0])
                cell[1] += 1
                if problem is None:
                    cell[0] += 1
                else:
                    report.failures.append((label, case["id"], problem))
    return report
