"""Smoke test of the optimizer's ``adamop bench`` cases on tiny sizes: they build, pass their
bitwise checks (the Updater's first step is ``adam_update_multi`` with MXNet's bias-corrected lr;
the multi-precision step leaves the bits of MXNet's three operations) and report. Nothing here
looks at a time. About 3 s.
"""
from __future__ import annotations

import csv

import pytest

pytest.importorskip("numba", reason="the benchmark's limit kernel needs numba")

from adamop import bench  # noqa: E402


def test_optimizer_cases_run_and_report(tmp_path, capsys):
    out_csv = tmp_path / "r.csv"
    assert bench.main(["--quick", "--reps", "2", "--cases", "updater", "master-copy",
                       "--csv", str(out_csv)]) == 0
    text = capsys.readouterr().out
    assert "| adamop Updater step |" in text
    assert "| adamop adam_update_multi, same arrays |" in text
    assert "| adamop multi-precision step (mp_adam_steps) |" in text
    assert "| three ops (astype, adam_update_multi, cast), same arrays |" in text
    with open(out_csv) as f:
        rows = list(csv.DictReader(f))
    assert {r["case"] for r in rows} == {"updater float32 50 x 1,024",
                                         "master-copy float16 50 x 1,024"}
    assert all(int(r["bytes"]) == 28 * 50 * 1024 for r in rows)
