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
    assert "| limit (same pattern), random rows |" in text   # lazy: the grad's rows, not a stream
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


def test_gpu_bench_logic_on_cpu_tensors():
    """The CUDA benchmark's runners and checks, run on CPU tensors at tiny sizes (CI has no GPU;
    on a GPU, ``adamop bench --device cuda`` runs the same code on CUDA tensors)."""
    torch = pytest.importorskip("torch", reason="the GPU benchmark drives torch tensors")
    import numpy as np

    from adamop.bench import cases, gpu, harness, report

    rng = np.random.default_rng(0)
    results = []
    tiny = [cases.Case("dense", "float16", 3000), cases.Case("multi", "float32", 700, count=9),
            cases.Case("lazy", "float32", 500, rows=40, row_length=8)]
    for case in tiny:
        runners, skipped = gpu.build(case, rng, device="cpu")
        names = [r.name for r in runners]
        assert names[0] == gpu.LIMIT and "adamop[numba]" in names
        assert ("torch SparseAdam" in names) == (case.kind == "lazy")
        results += harness.time_case(case, runners, 1, harness.Progress(len(runners), "t"))
    text = report.table(results, {})
    assert "| limit (device copy) |" in text and "| torch Adam fused |" in text
    assert torch.get_num_threads() >= 1


def test_gpu_bench_refuses_without_cuda(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal cannot be seen here")
    assert bench.main(["--device", "cuda", "--quick"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_gpu_bench_check_catches_a_wrong_result(monkeypatch):
    """The bitwise check before timing fails loudly when adamop's result is off by one ulp."""
    pytest.importorskip("torch")
    import numpy as np

    from adamop.bench import cases, gpu, peers

    real = gpu.reference.adam_dense

    def off_by_one_ulp(w, g, m, v, out, s, rule):
        real(w, g, m, v, out, s, rule)
        out[0] = np.nextafter(out[0], np.inf)
    monkeypatch.setattr(gpu.reference, "adam_dense", off_by_one_ulp)
    with pytest.raises(peers.CheckFailed, match="weight differs"):
        gpu.build(cases.Case("dense", "float32", 100), np.random.default_rng(0), device="cpu")
