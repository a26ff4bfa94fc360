"""Smoke test of ``adamop bench`` on tiny sizes: it runs, checks, and writes its outputs.

A benchmark is not a test: nothing here looks at a time.
"""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba", reason="the benchmark's limit kernel and adamop[numba] need numba")

from adamop import bench  # noqa: E402
from adamop.bench import cases as bench_cases  # noqa: E402


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
    outcomes = []
    tiny = [cases.Case("dense", "float16", 3000), cases.Case("multi", "float32", 700, count=9),
            cases.Case("lazy", "float32", 500, rows=40, row_length=8)]
    for case in tiny:
        runners, skipped = gpu.build(case, rng, device="cpu", skip=("foreach",))
        names = [r.name for r in runners]
        assert names[0] == gpu.LIMIT and "adamop[numba]" in names
        assert ("torch SparseAdam" in names) == (case.kind == "lazy")
        assert "torch Adam foreach" not in names
        assert (case.kind == "lazy") != (("torch Adam foreach", "--skip") in skipped)
        results = harness.time_case(case, runners, 1, harness.Progress(len(runners), "t"))
        outcomes.append(harness.Outcome(case, results, skipped))
    text = report.table(outcomes)
    assert "| limit (device copy) |" in text and "| torch Adam fused |" in text
    assert torch.get_num_threads() >= 1


def test_gpu_bench_refuses_without_cuda(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal cannot be seen here")
    assert bench.main(["--device", "cuda", "--quick"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.fixture
def reference_off_by_one_ulp(monkeypatch):
    """The GPU bench's reference answers one ulp off, so that adamop's result fails its check."""
    pytest.importorskip("torch")
    import numpy as np

    from adamop.bench import gpu
    real = gpu.reference.adam_dense

    def off_by_one_ulp(w, g, m, v, out, s, rule):
        real(w, g, m, v, out, s, rule)
        out[0] = np.nextafter(out[0], np.inf)
    monkeypatch.setattr(gpu.reference, "adam_dense", off_by_one_ulp)


def test_gpu_bench_check_catches_a_wrong_result(reference_off_by_one_ulp):
    """The bitwise check before timing fails loudly when adamop's result is off by one ulp."""
    import numpy as np

    from adamop.bench import cases, gpu, peers
    with pytest.raises(peers.CheckFailed, match="weight differs"):
        gpu.build(cases.Case("dense", "float32", 100), np.random.default_rng(0), device="cpu")


# ---- a run that survives its cases: failures recorded, results written as they come ----------
def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_failed_check_is_recorded_and_the_next_case_runs(tmp_path, reference_off_by_one_ulp,
                                                          capsys):
    """A case whose adamop result is off by one ulp is reported as failed, nothing of it timed;
    the cases after it still run, and the exit code says that one failed."""
    md, out_csv = tmp_path / "r.md", tmp_path / "r.csv"
    code = bench.main(["--device", "cuda", "--rehearse", "--reps", "1", "--skip", "foreach",
                       "--cases", "float32 n=262,144", "lazy", "--markdown", str(md), "--csv",
                       str(out_csv)])
    assert code == 1
    assert "1 of 2 cases failed: dense float32 n=262,144" in capsys.readouterr().err
    text = md.read_text()
    assert "device=none: a rehearsal on CPU torch tensors" in text.splitlines()[0]
    assert "failed: result check failed, nothing timed: adamop tensor 0: weight differs" in text
    assert "| adamop[numba] | " in text.split("### lazy")[1]
    rows = _rows(out_csv)
    assert [(r["case"], r["role"]) for r in rows if r["role"] == "failed"] == [
        ("dense float32 n=262,144", "failed")]
    assert {r["case"] for r in rows if r["role"] == "adamop"} == {
        "lazy float32 8,192x64 rows=195"}


def test_results_are_written_case_by_case(tmp_path, monkeypatch):
    """A run that dies in its second case has written the first one's results."""
    pytest.importorskip("torch")
    from adamop.bench import harness

    real, calls = harness.time_case, []

    def dies_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt       # what no case-level handler catches
        return real(*args, **kwargs)
    monkeypatch.setattr(harness, "time_case", dies_second)
    out_csv = tmp_path / "r.csv"
    with pytest.raises(KeyboardInterrupt):
        bench.main(["--device", "cuda", "--rehearse", "--reps", "1", "--cases", "n=1,024",
                    "n=16,384", "--csv", str(out_csv)])
    assert {r["case"] for r in _rows(out_csv)} == {"dense float32 n=16,384"}
    assert sorted(os.listdir(tmp_path)) == ["r.csv"]      # no temporary file left behind


def test_slow_case_stops_sampling_at_its_deadline():
    import time

    from adamop.bench import cases, harness, peers

    runner = peers.Runner("sleeper", "adamop", lambda: time.sleep(0.01), 1)
    case = cases.Case("dense", "float32", 4)
    (result,) = harness.time_case(case, [runner], 1000, harness.Progress(1000, "t"),
                                  deadline=time.monotonic() + 0.2)
    assert 1 <= result.samples < 1000


# ---- --case-timeout: each case in a process of its own ------------------------------------------
_WRITE_OUTCOME = (
    "import json, sys; a = sys.argv; f = a[a.index('--outcome-file') + 1]; "
    "i = int(a[a.index('--case-index') + 1]); "
    "c = dict(kind='dense', dtype='float32', size=4, rows=0, row_length=0, count=1); "
    "r = dict(runner='x', role='adamop', bytes=112, median=1e-3, p20=1e-3, p80=1e-3, samples=3); "
    "open(f, 'a').write(json.dumps(dict(index=i, desc=dict(device='fake', skipped=' '.join(a)), "
    "outcome=dict(case=c, error=None, skipped=[], results=[r]))) + '\\n')")


@pytest.mark.parametrize("script, expect", [
    ("import os; os.abort()", "ended (signal 6) without a result; the case's process ended "
                              "(signal 6) without a result"),
    ("raise SystemExit(3)", "ended (exit code 3) without a result"),
    ("pass", "ended (exit code 0) without a result"),
], ids=["crash", "exit-3", "no-result"])
def test_isolated_case_that_dies_is_retried_without_jax_then_recorded(tmp_path, script, expect):
    from adamop.bench import cases, isolate

    case = cases.Case("dense", "float32", 4)
    outcome, desc = isolate.run_case([sys.executable, "-c", script], 0, case,
                                     tmp_path / "o.jsonl", 30, None)
    assert desc is None and outcome.results == []
    assert expect in outcome.error and outcome.error.count("without a result") == 2


def test_isolated_case_that_hangs_is_ended(tmp_path):
    from adamop.bench import isolate

    entry, why = isolate.run_child([sys.executable, "-c", "import time; time.sleep(60)"], 0,
                                   tmp_path / "o.jsonl", 1.0)
    assert entry is None and why.startswith("timed out after 1 s (limit 1 s)")


def test_isolated_case_result_and_retry_note(tmp_path):
    """A child's JSON line becomes the outcome; a case that needed the retry says so."""
    from adamop.bench import cases, isolate

    case = cases.Case("dense", "float32", 4)
    outcome, desc = isolate.run_case([sys.executable, "-c", _WRITE_OUTCOME], 5, case,
                                     tmp_path / "o.jsonl", 30, None)
    assert outcome.error is None and outcome.results[0].samples == 3 and desc["device"] == "fake"
    assert "--skip" not in desc["skipped"]
    # first try dies, the retry (with --skip optax) writes its result
    script = ("import sys; sys.exit(7) if '--skip' not in sys.argv else None; "
              + _WRITE_OUTCOME)
    outcome, desc = isolate.run_case([sys.executable, "-c", script], 6, case,
                                     tmp_path / "o.jsonl", 30, None)
    assert outcome.error is None and "--skip optax" in desc["skipped"]
    assert outcome.skipped == [("(retry)", "first try: the case's process ended (exit code 7) "
                                           "without a result; rerun with --skip optax")]


def test_budget_leaves_cases_unrun(tmp_path):
    import time

    from adamop.bench import cases, isolate

    outcome, _ = isolate.run_case([sys.executable, "-c", "pass"], 0,
                                  cases.Case("dense", "float32", 4), tmp_path / "o.jsonl", 30,
                                  deadline=time.monotonic() + 5)
    assert outcome.error == "not run: out of --budget"


def test_skip_patterns_add_up():
    """The retry adds --skip optax to a command line that may have its own --skip."""
    assert bench._parser().parse_args(["--skip", "a", "b", "--skip", "optax"]).skip == [
        "a", "b", "optax"]


def test_bad_option_combinations(capsys):
    assert bench.main(["--rehearse"]) == 2
    assert "--rehearse rehearses --device cuda" in capsys.readouterr().err
    assert bench.main(["--budget", "10"]) == 2
    assert "--budget needs --case-timeout" in capsys.readouterr().err
    assert bench.main(["--case-timeout", "0"]) == 2
    assert "--case-timeout must be positive, got 0.0" in capsys.readouterr().err
    assert bench.main(["--reps", "-1"]) == 2
    assert "--reps must be positive, got -1" in capsys.readouterr().err
    assert bench.main(["--case-index", "99", "--outcome-file", "x", "--quick"]) == 2
    quick = len(bench_cases.all_cases(True))
    assert (f"--case-index needs an --outcome-file and a number below {quick}"
            in capsys.readouterr().err)
