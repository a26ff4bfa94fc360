"""``adamop check``: replay a compact golden set recorded from MXNet 1.9.1 on every backend.

The cases ship inside the package (``adamop/data/check_cases.npz``, built from the development
golden file by ``tools/make_check_data.py``): dense, lazy, std and fallback updates in every dtype
and storage combination, special values, unsorted indices (compared with MXNet's result on the
sorted input, SPEC A.5), empty states and ``mx.optimizer.Adam`` replays. A case passes only if
weight, mean and var are bit-identical to MXNet's (any NaN matches any NaN; signed zeros differ).
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable, Iterable

import numpy as np

from . import dispatch
from .api import adam_update
from .storage import RowSparseArray

__all__ = ["CheckReport", "load_cases", "run_case", "runnable_backends", "run_check"]

PATHS = ("dense", "lazy", "std", "fallback", "optimizer")
_R = "row_sparse"


def load_cases(path: Any = None) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The shipped cases: (case metadata list, ``<id>__<name>`` -> array)."""
    source = path if path is not None else resources.files("adamop") / "data" / "check_cases.npz"
    with resources.as_file(source) if path is None else nullcontext(path) as p:
        with np.load(p, allow_pickle=False) as z:
            meta = json.loads(str(z["meta_json"]))
            pools = {k: z[k] for k in z.files if k != "meta_json"}
    arrays = {}
    for name, (dtype, offset, shape) in meta["index"].items():
        size = int(np.prod(shape, dtype=np.int64))
        arrays[name] = pools[dtype][offset:offset + size].reshape(shape)
    return meta["cases"], arrays


def case_path(case: dict) -> str:
    """The table column of a case: its kernel path, or 'optimizer' for a replayed run."""
    return "optimizer" if case["group"] == "optimizer" else case["path"]


# ---- one case --------------------------------------------------------------------------------
def _mismatch(actual: Any, expected: np.ndarray) -> str | None:
    """None if bit-identical (NaN == NaN, -0 != +0), else what differs."""
    a = np.asarray(_to_numpy(actual))
    if a.shape != expected.shape or a.dtype != expected.dtype:
        return f"shape/dtype {a.shape} {a.dtype}, expected {expected.shape} {expected.dtype}"
    uint = np.dtype(f"u{a.dtype.itemsize}")
    an, en = np.isnan(a), np.isnan(expected)
    same = (an & en) | (~an & ~en & (a.view(uint) == expected.view(uint)))
    if same.all():
        return None
    first = tuple(int(i) for i in np.argwhere(~same)[0])
    return (f"{int((~same).sum())} of {a.size} elements differ, first at {first}: got "
            f"{a[first]!r}, expected {expected[first]!r}")


def _to_numpy(x: Any) -> Any:
    if isinstance(x, RowSparseArray):
        x = x.todense()
    if not isinstance(x, np.ndarray):   # a torch tensor (CUDA backends)
        x = x.detach().cpu().numpy()
    return x


class _Inputs:
    """Builds a case's arrays on the device a backend runs on (NumPy for CPU, torch otherwise)."""

    def __init__(self, arrays: dict[str, np.ndarray], cid: str, device: str):
        self.arrays, self.cid, self.device = arrays, cid, device

    def has(self, name: str) -> bool:
        return f"{self.cid}__{name}" in self.arrays

    def get(self, name: str, dtype: Any = None) -> Any:
        x = self.arrays[f"{self.cid}__{name}"]
        x = np.array(x, dtype=dtype if dtype is not None else x.dtype, copy=True)
        if self.device == "cpu":
            return x
        import torch
        return torch.from_numpy(x).to(self.device)

    def zeros(self, shape: tuple, dtype: Any) -> Any:
        return self.wrap(np.zeros(shape, dtype))

    def wrap(self, x: np.ndarray) -> Any:
        if self.device == "cpu":
            return x
        import torch
        return torch.from_numpy(x).to(self.device)

    def storage(self, x: Any, stype: str, *, empty: bool = False) -> Any:
        """x as the generator handed it to MXNet: dense, row_sparse with every row, or (for
        ``state_empty_rsp``) row_sparse with no stored rows."""
        if stype != _R:
            return x
        if empty:
            shape = tuple(x.shape)
            data = self.zeros((0,) + shape[1:], _to_numpy(x).dtype)
            return RowSparseArray(data, self.wrap(np.zeros(0, np.int64)), shape)
        return RowSparseArray.from_dense(x, all_rows=True)

    def grad(self, suffix: str, shape: tuple, stype: str, dense: Any, dtype: Any = None) -> Any:
        if self.has(f"grad_indices{suffix}"):
            return RowSparseArray(self.get(f"grad_data{suffix}", dtype),
                                  self.get(f"grad_indices{suffix}"), shape)
        return self.storage(dense, stype)


def _run_single(case: dict, inp: _Inputs, backend: str) -> list[tuple[str, Any]]:
    st, shape, ex = case["stype"], tuple(case["shape"]), case["extra"]
    empty = bool(ex.get("state_empty_rsp"))
    weight = inp.storage(inp.get("weight"), st["weight"])
    grad = inp.grad("", shape, st["grad"], inp.get("grad"))
    mean = inp.storage(inp.get("mean"), st["mean"], empty=empty)
    var = inp.storage(inp.get("var"), st["var"], empty=empty)
    out = weight if case["out_is_weight"] else None
    with np.errstate(all="ignore"):
        result = adam_update(weight, grad, mean, var, out=out, backend=backend, **case["kwargs"])
    # unsorted indices: adamop sorts them, so MXNet's result on the sorted input is expected
    suffix = "_out_sorted" if ex.get("sorted_result_differs") else "_out"
    return [("weight" + suffix, result), ("mean" + suffix, mean), ("var" + suffix, var)]


def _run_optimizer(case: dict, inp: _Inputs, backend: str) -> list[tuple[str, Any]]:
    """Replay the adam_update calls of an ``mx.optimizer.Adam`` run (GOLDEN_README.md)."""
    ex, shape = case["extra"], tuple(case["shape"])
    mp = bool(ex["multi_precision"])    # float16 weight with a float32 master copy
    master = inp.get("weight", np.float32 if mp else None)
    state_dtype = np.float32 if mp else _to_numpy(master).dtype
    weight = inp.storage(master, ex["weight_stype"])
    mean, var = (inp.storage(inp.zeros(shape, state_dtype), ex["state_stype"],
                             empty=bool(ex["state_empty_rsp"])) for _ in range(2))
    grads = inp.arrays[f"{inp.cid}__grads"]
    for t, kwargs in enumerate(ex["steps"]):
        dense = inp.wrap(np.array(grads[t], dtype=np.float32 if mp else grads.dtype))
        grad = inp.grad(f"_{t}", shape, ex["grad_stype"], dense, np.float32 if mp else None)
        with np.errstate(all="ignore"):
            adam_update(weight, grad, mean, var, out=weight, backend=backend, **kwargs)
    final = _to_numpy(weight)
    checks = [("weight_out", final.astype(np.float16) if mp else final), ("mean_out", mean),
              ("var_out", var)]
    if mp:
        checks.append(("weight32_out", final))
    return checks


def run_case(case: dict, arrays: dict[str, np.ndarray], backend: str,
             device: str = "cpu") -> str | None:
    """Run one case on ``backend``; None if bit-identical to MXNet, else what went wrong."""
    inp = _Inputs(arrays, case["id"], device)
    try:
        runner = _run_optimizer if case["group"] == "optimizer" else _run_single
        checks = runner(case, inp, backend)
    except Exception as exc:   # a crash is a failure of this case, reported with the others
        return f"raised {type(exc).__name__}: {exc}"
    for name, got in checks:
        expected = arrays[f"{case['id']}__{name}"]
        problem = _mismatch(got, expected)
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
