"""Smoke test of the PyTorch front end's ``adamop bench`` cases on small sizes: they build, pass
their bitwise check (the first ``adamop.torch.Adam`` step is the op with MXNet's bias-corrected
lr) and report every runner. Nothing here looks at a time. About 4 s.
"""
from __future__ import annotations

import csv
import math

import pytest

pytest.importorskip("numba", reason="the benchmark's limit kernel needs numba")
pytest.importorskip("torch")

from adamop import bench
from adamop.bench.torch_cases import resnet50_shapes


def test_resnet50_shapes():
    shapes = resnet50_shapes()
    assert len(shapes) == 161 and sum(math.prod(s) for s in shapes) == 25_557_032


def test_torch_cases_run_and_report(tmp_path, capsys):
    out_csv = tmp_path / "r.csv"
    assert bench.main(["--quick", "--reps", "2", "--cases", "torch.Adam", "--csv",
                       str(out_csv)]) == 0
    text = capsys.readouterr().out
    for runner in ("adamop.torch.Adam step", "adamop one tensor, same size",
                   "adamop adam_update_multi, same shapes", "torch Adam fused"):
        assert f"| {runner} |" in text
    with open(out_csv) as f:
        rows = list(csv.DictReader(f))
    assert {r["case"] for r in rows} == {"torch.Adam float32 50 x 1,024",
                                         "torch.Adam resnet50 / 8 float32 161 tensors, 631,152"}
    assert all(int(r["bytes"]) == 28 * int(r["elements"]) for r in rows)
