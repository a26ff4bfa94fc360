"""Timing: every runner of a case in turn (A B C A B C ...), so drift and noise hit all alike."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .cases import Case
from .peers import Runner

MIN_SAMPLE_S = 2e-3   # repeat short steps inside one sample so the timer's resolution is moot


@dataclass
class Result:
    case: Case
    runner: str
    role: str
    bytes: int
    median: float
    p20: float
    p80: float
    samples: int = 0          # fewer than asked when the case ran out of time

    @property
    def gbps(self) -> float:
        return self.bytes / self.median / 1e9


@dataclass
class Outcome:
    """What one case gave: its results, the runners skipped (with why), or why it failed."""

    case: Case
    results: list[Result] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict:
        return {"case": asdict(self.case), "error": self.error,
                "skipped": [list(x) for x in self.skipped],
                "results": [{k: v for k, v in asdict(r).items() if k != "case"}
                            for r in self.results]}

    @classmethod
    def from_json(cls, d: dict) -> "Outcome":
        case = Case(**d["case"])
        return cls(case, [Result(case, **r) for r in d["results"]],
                   [tuple(x) for x in d["skipped"]], d["error"])


class Progress:
    """tqdm when installed and stderr is a terminal, else a counter on stderr (a log file gets
    one line per 10 samples, not a bar redrawn in place)."""

    def __init__(self, total: int, label: str) -> None:
        self.bar = None
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, desc=label[:40], unit="sample", file=sys.stderr,
                                leave=False)
            except ImportError:
                pass
        self.total, self.done = total, 0

    def update(self, text: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.done == self.total or self.done % 10 == 0:
            end = "" if sys.stderr.isatty() else "\n"
            print(f"\r[{self.done}/{self.total}] {text[:60]:60}", end=end, file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif sys.stderr.isatty():
            print(file=sys.stderr)


def time_case(case: Case, runners: list[Runner], reps: int, progress: Progress,
              deadline: float | None = None) -> list[Result]:
    """Median and p20/p80 of the seconds per step of each runner, interleaved. Rounds stop at
    ``deadline`` (``time.monotonic()``), after at least one: a slow case still gives numbers,
    with its sample count saying how many."""
    calls = []
    for r in runners:   # second warm-up call; it also sets how many calls make one sample
        t = r.time(1)
        calls.append(max(1, int(MIN_SAMPLE_S / max(t, 1e-9))))
    samples: list[list[float]] = [[] for _ in runners]
    for rep in range(reps):
        if rep and deadline is not None and time.monotonic() > deadline:
            print(f"{case.name}: out of time after {rep} of {reps} samples", file=sys.stderr)
            break
        for i, r in enumerate(runners):
            samples[i].append(r.time(calls[i]) / calls[i])
            progress.update(f"{case.name}: {r.name}")
    out = []
    for r, s in zip(runners, samples):
        p20, p50, p80 = np.percentile(s, [20, 50, 80])
        out.append(Result(case, r.name, r.role, r.bytes, float(p50), float(p20), float(p80),
                          len(s)))
    return out


_COLD_CHILD = r"""
import json, time
t0 = time.perf_counter()
import numpy as np, adamop
t1 = time.perf_counter()
w, g, m, v = (np.ones(1000, np.float32) for _ in range(4))
adamop.adam_update(w, g, m, v, lr=0.001, out=w, backend="numba")
t2 = time.perf_counter()
adamop.adam_update(w, g, m, v, lr=0.001, out=w, backend="numba")
t3 = time.perf_counter()
grad = adamop.RowSparseArray(np.ones((2, 1), np.float32), np.array([1, 5]), (1000, 1))
adamop.adam_update(w[:, None], grad, m[:, None], v[:, None], lr=0.001, out=w[:, None],
                   backend="numba")
t4 = time.perf_counter()
adamop.adam_update_multi([w, g], [g, w], [m, v], [v.copy(), m.copy()], lr=0.001, backend="numba")
t5 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "first dense": t2 - t1, "second dense": t3 - t2,
                  "first lazy": t4 - t3, "first multi": t5 - t4}))
"""


def cold_start() -> dict[str, dict[str, float]]:
    """First calls in fresh processes: with an empty Numba cache, then with that cache filled."""
    results = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("no cache (compiles)", "cache on disk"):
            proc = subprocess.run([sys.executable, "-c", _COLD_CHILD], env=env,
                                  capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                raise RuntimeError(f"cold-start child failed:\n{proc.stderr[-3000:]}")
            results[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    return results
