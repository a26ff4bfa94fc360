"""``scripts/gpu.sh``, the prepared GPU run, rehearsed on this CPU (``ADAMOP_GPU_REHEARSAL=1``):
its steps, time limits, logs and output folder, so that on the GPU machine only the device can
surprise. The rehearsal runs a few of the GPU tests (they skip without a GPU, or check the
dispatch errors) and two benchmark cases on CPU tensors.

What comes back from the GPU machine is at most 8 plain files, 16 MiB each, directly under
``$OUT``, named with letters, digits, ``.``, ``_`` and ``-``: the checks hold the script to that.
"""
from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the GPU run's steps drive torch")

REPO = Path(__file__).resolve().parent.parent
FILES = {"gpu.log", "pytest.xml", "results.md", "results.csv", "dense_gbps.png"}


def _run(out: Path, **env: str) -> tuple[int, str]:
    env = {**os.environ, "OUT": str(out), "ADAMOP_GPU_REHEARSAL": "1", "PYTHON": sys.executable,
           "GPU_CASES": "n=1,024 lazy", "GPU_TESTS": "tests/test_gpu.py -k refuse",
           "GPU_TEST_WORKERS": "2", **env}
    env.pop("PYTHONPATH", None)          # the script sets it to the checkout's src/ itself
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu.sh")], env=env, cwd="/",
                          capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def _check_out_folder(out: Path) -> None:
    names = os.listdir(out)
    assert len(names) <= 8
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9._-]+", name) and (out / name).is_file(), name
        assert (out / name).stat().st_size <= 16 * 2 ** 20, name


def test_rehearsal(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc, output = _run(out)
    assert rc == 0, output[-3000:]
    log = (out / "gpu.log").read_text()
    assert log == output                  # one log holds everything that was printed
    first = log.index("=== versions: ok")
    for name in ("python", "torch", "triton", "numpy", "numba", "nvidia-smi", "backends"):
        assert name in log[:first], f"the versions step did not print {name}"
    assert log.index("=== tests: ok") < log.index("=== bench: ok")
    assert "failed steps: none" in log
    assert set(os.listdir(out)) == FILES
    _check_out_folder(out)
    cases = ET.parse(out / "pytest.xml").getroot().iter("testcase")
    assert sum(1 for _ in cases) >= 3
    md = (out / "results.md").read_text()
    assert "device=none: a rehearsal on CPU torch tensors, not a GPU measurement" in md
    assert "### dense float32 n=1,024" in md and "### lazy float32 8,192x64 rows=195" in md
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["role"] for r in rows} >= {"limit", "adamop", "peer"}
    assert all(r["error"] == "" for r in rows)


def test_a_failed_step_does_not_stop_the_run(tmp_path: Path) -> None:
    """The tests step runs out of time (1 s); the benchmark still runs, the exit code is 1."""
    out = tmp_path / "out"
    rc, output = _run(out, GPU_TEST_S="1", GPU_CASES="n=1,024")
    assert rc == 1, output[-3000:]
    assert re.search(r"=== tests: TIMED OUT after \d+ s", output)
    assert "=== bench: ok" in output and "failed steps: tests" in output
    assert "### dense float32 n=1,024" in (out / "results.md").read_text()
    _check_out_folder(out)
