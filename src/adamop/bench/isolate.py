"""``adamop bench --case-timeout S``: every case in a child process of its own, with a time limit.

A crash, a hang, or a CUDA error (which poisons the process that meets it) then costs one case,
not the run. The child is ``adamop bench`` itself, given ``--case-index`` and an outcome file,
to which it appends one JSON line: the case's :class:`~.harness.Outcome` and the machine's
description. Its output goes where this process's goes, so one log holds everything.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from .harness import Outcome

GRACE_S = 15         # past its own sampling deadline a child has this long to write and exit
RETRY_SKIP = "optax"  # a case that dies is rerun once without JAX, the likeliest to crash or stall


def _kill(proc: subprocess.Popen) -> None:
    """End the child and everything it started (it leads its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_child(argv: Sequence[str], index: int, outcome_file: Path, timeout: float,
              ) -> tuple[dict | None, str | None]:
    """Run one child: (its JSON line, None), or (None, why there is none)."""
    start = time.monotonic()
    proc = subprocess.Popen(list(argv), start_new_session=True)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        return None, f"timed out after {time.monotonic() - start:.0f} s (limit {timeout:.0f} s)"
    except BaseException:            # Ctrl-C or the parent's own time limit: take the child too
        _kill(proc)
        raise
    if outcome_file.exists():
        for line in outcome_file.read_text().splitlines():
            entry = json.loads(line)
            if entry["index"] == index:
                return entry, None
    how = f"signal {-rc}" if rc < 0 else f"exit code {rc}"
    return None, f"the case's process ended ({how}) without a result"


def run_case(case_argv: Sequence[str], index: int, case, outcome_file: Path, timeout: float,
             deadline: float | None) -> tuple[Outcome, dict | None]:
    """One case through :func:`run_child`, rerun once without JAX if it died; never raises for
    the case's sake. Returns the outcome and the child's machine description (None: none)."""
    tries = [[], ["--skip", RETRY_SKIP]]
    why = ""
    for extra in tries:
        limit = timeout if deadline is None else min(timeout, deadline - time.monotonic())
        if limit < 10:
            why += "; no time left for another try" if why else "not run: out of --budget"
            break
        argv = [*case_argv, "--case-index", str(index), "--outcome-file", str(outcome_file),
                "--case-timeout", f"{max(1.0, limit - GRACE_S):.0f}", *extra]
        print(f"[bench] {case.name}: child process, limit {limit:.0f} s"
              + (f", {' '.join(extra)}" if extra else ""), file=sys.stderr, flush=True)
        entry, failure = run_child(argv, index, outcome_file, limit)
        if entry is not None:
            outcome = Outcome.from_json(entry["outcome"])
            if why:
                note = f"first try: {why}; rerun with {' '.join(extra)}"
                outcome.skipped.append(("(retry)", note))
            return outcome, entry["desc"]
        why = f"{why}; {failure}" if why else failure
        print(f"[bench] {case.name}: {failure}", file=sys.stderr, flush=True)
    return Outcome(case, error=why), None
