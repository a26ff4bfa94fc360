"""The ``adamop`` command (``info``, ``check``, ``bench``) and the shipped golden check set."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA

from adamop import __version__, dispatch
from adamop import selfcheck as check
from adamop.cli import _devices, main

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "src" / "adamop" / "data" / "check_cases.npz"
AVAILABLE_CPU = [n for n, r in dispatch.explain("cpu") if r is None]


@pytest.fixture(scope="module")
def shipped() -> tuple[list[dict], dict[str, np.ndarray]]:
    return check.load_cases()


def _path_counts(cases: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in cases:
        counts[check.case_path(c)] = counts.get(check.case_path(c), 0) + 1
    return counts


# ---- adamop check ----------------------------------------------------------------------------
def test_check_numpy_in_process(capsys, shipped):
    assert main(["check", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("numpy "))
    counts = _path_counts(shipped[0])
    assert set(counts) == set(check.PATHS)     # every path is exercised
    for n in counts.values():
        assert f"{n}/{n}" in row
    assert f"{len(shipped[0])}/{len(shipped[0])}" in row
    assert "OK: every case is bit-identical" in out


def test_check_every_available_backend(capsys):
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0] for line in out.splitlines()[3:] if line and line[0].isalpha()}
    assert set(AVAILABLE_CPU) <= rows


def test_check_subprocess():
    proc = subprocess.run([sys.executable, "-m", "adamop", "check", "--backend", "numpy"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: every case is bit-identical to MXNet 1.9.1" in proc.stdout
    assert proc.stdout.splitlines()[1].split()[:6] == ["backend", *check.PATHS]


@pytest.mark.parametrize("name", ["nope", "triton"])
def test_check_unrunnable_backend_is_an_error(name, capsys):
    if name == "triton" and "cuda" in _devices():
        pytest.skip("a CUDA device is present: triton can run here")
    assert main(["check", "--backend", name]) == 2
    assert f"error: {name}:" in capsys.readouterr().err


def _corrupt(arrays: dict, name: str, how: str) -> dict:
    bad = dict(arrays)
    x = arrays[name].copy()
    flat = x.reshape(-1)
    if how == "ulp":    # flip the lowest mantissa bit of the first finite element
        i = int(np.flatnonzero(np.isfinite(flat))[0])
        u = flat.view(f"u{x.dtype.itemsize}")
        u[i] ^= 1
    else:               # flip the sign of a zero
        i = int(np.flatnonzero(flat == 0)[0])
        flat[i] = -flat[i]
    bad[name] = x
    return bad


@pytest.mark.parametrize("group,what,how", [("dense_grid", "weight_out", "ulp"),
                                            ("sparse", "mean_out", "ulp"),
                                            ("optimizer", "var_out", "ulp"),
                                            ("dense_special", "weight_out", "zero")])
def test_corrupted_expectation_fails(group, what, how, shipped):
    cases, arrays = shipped
    case = next(c for c in cases if c["group"] == group and (
        how != "zero" or (arrays[f"{c['id']}__{what}"] == 0).any()))
    assert check.run_case(case, arrays, "numpy") is None
    bad = _corrupt(arrays, f"{case['id']}__{what}", how)
    problem = check.run_case(case, bad, "numpy")
    assert problem is not None and problem.startswith(what)
    report = check.run_check(["numpy"], cases=[case], arrays=bad)
    assert not report.ok and [f[1] for f in report.failures] == [case["id"]]


def test_check_command_fails_with_case_ids(monkeypatch, capsys, shipped):
    cases, arrays = shipped
    victims = [c for c in cases if c["group"] == "sparse"][:2]
    bad = arrays
    for c in victims:
        bad = _corrupt(bad, f"{c['id']}__var_out", "ulp")
    monkeypatch.setattr(check, "load_cases", lambda: (cases, bad))
    assert main(["check", "--backend", "numpy"]) == 1
    out = capsys.readouterr().out
    assert f"failing case ids: {' '.join(sorted(c['id'] for c in victims))}" in out
    assert "var_out" in out and "OK" not in out


def test_crashing_case_is_a_failure(shipped):
    cases, arrays = shipped
    case = dict(cases[0], kwargs={**cases[0]["kwargs"], "lr": "nan"})
    problem = check.run_case(case, arrays, "numpy")
    assert problem is not None and problem.startswith("raised ValueError")


# ---- the shipped data ------------------------------------------------------------------------
def _combos(cases: list[dict]) -> set[tuple]:
    # 'large' ships one case (float16): its float32 twin would add 180 KB and no new kernel path
    return {(c["group"], c["path"], "any" if c["group"] == "large" else c["dtype"],
             tuple(c["stype"][k] for k in ("weight", "grad", "mean", "var")),
             c["extra"].get("indices_sorted", True), c["extra"].get("state_empty_rsp", False))
            for c in cases if "csr" not in c["stype"].values()}


def test_shipped_set_is_small_and_covers_the_dev_golden_set(shipped):
    assert SHIPPED.stat().st_size < 1_000_000
    with np.load(DATA / "golden_dev.npz") as z:
        dev = json.loads(str(z["meta_json"]))["cases"]
    assert _combos(shipped[0]) == _combos(dev)
    assert any(c["extra"].get("sorted_result_differs") for c in shipped[0])
    assert any(c["extra"].get("multi_precision") for c in shipped[0])


def test_shipped_set_is_what_the_tool_builds(tmp_path):
    spec = importlib.util.spec_from_file_location("make_check_data",
                                                  REPO / "tools" / "make_check_data.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "cases.npz"
    assert tool.main(["--golden", str(DATA / "golden_dev.npz"), "--out", str(out)]) == 0
    assert out.read_bytes() == SHIPPED.read_bytes(), "re-run tools/make_check_data.py"


def test_shipped_arrays_equal_the_golden_file(shipped):
    cases, arrays = shipped
    with np.load(DATA / "golden_dev.npz") as z:
        for name in list(arrays)[::25]:
            assert arrays[name].dtype == z[name].dtype
            assert arrays[name].tobytes() == z[name].tobytes(), name


# ---- adamop info -----------------------------------------------------------------------------
def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"adamop {__version__}\n")
    for package in ("python", "numpy", "torch", "numba"):
        assert f"  {package} " in out
    for spec in dispatch.registry():
        assert f"  {spec.name} " in out
    auto = next(n for n, r in dispatch.explain("cpu") if r is None)
    assert f"cpu   -> {auto}" in out
    assert "cuda  -> " in out
    if "numba" in AVAILABLE_CPU and hasattr(dispatch.select("cpu", "numba")[1], "info"):
        assert "threads=" in out


def test_info_subprocess():
    proc = subprocess.run([sys.executable, "-m", "adamop", "info"], capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "automatic choice:" in proc.stdout


def test_no_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


# ---- adamop bench ----------------------------------------------------------------------------
def test_bench_dispatches_to_the_harness(monkeypatch):
    seen = []
    fake = types.ModuleType("adamop.bench")
    fake.main = lambda argv: seen.append(argv) or 7
    monkeypatch.setitem(sys.modules, "adamop.bench", fake)
    assert main(["bench", "--sizes", "4096", "-h"]) == 7
    assert seen == [["--sizes", "4096", "-h"]]


def test_bench_missing_harness(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "adamop.bench", None)   # makes the import fail
    assert main(["bench"]) == 2
    assert "adamop.bench" in capsys.readouterr().err
