"""Smoke test of ``adamop bench`` on tiny sizes: it runs, checks, and writes its outputs.

A benchmark is not a test: nothing here looks at a time.
"""
from __future__ import annotations

import csv

import pytest

pytest.importorskip("numba", reason="the benchmark's limit kernel and adamop[numba] need numba")

from adamop import bench  # noqa: E402


def test_quick_run_writes_table_and_csv(tmp_path, capsys):
    out_csv = tmp_path / "r.csv"
    code = bench.main(["--quick", "--reps", "2", "--cases", "dense float32 n=4,096",
                       "lazy float32 20,000x16 rows=200", "multi", "--csv", str(out_csv)])
    assert code == 0
    text = capsys.readouterr().out
    assert "| adamop[numba] |" in text and "| limit (same pattern) |" in text
    with open(out_csv) as f:
        rows = list(csv.DictReader(f))
    cases = {r["case"] for r in rows}
    assert cases == {"dense float32 n=4,096", "lazy float32 20,000x16 rows=200",
                     "multi float32 50 x 1,024"}
    for r in rows:
        assert r["cpu"] and r["numpy"] and r["git_sha"] and float(r["median_s"]) > 0
    # lazy counts only the touched rows: 200 rows x 16 x 28 B + the indices
    lazy = next(r for r in rows if r["case"].startswith("lazy"))
    assert int(lazy["bytes"]) == 200 * 16 * 28 + 200 * 8


def test_plot(tmp_path):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib")
    png = tmp_path / "p.png"
    assert bench.main(["--quick", "--reps", "1", "--cases", "dense float64",
                       "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_list_and_no_match(capsys):
    assert bench.main(["--quick", "--list"]) == 0
    assert "std float32" in capsys.readouterr().out
    assert bench.main(["--quick", "--cases", "no such case"]) == 2
