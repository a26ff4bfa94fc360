"""What reaches the GPU: the kernels' PTX for sm_90 (H100/H200), compiled without a GPU, under
the CI's Triton and under Triton 3.6, the version on the GPU machine.

Bit-exactness needs IEEE arithmetic that Triton's interpreter cannot show: no float multiply-add, no
approximate division or square root, no flush of subnormals, and a negation that keeps the sign
of zero (MXNet clips a negative gradient to ``-c``, which is -0.0 for ``clip_gradient=0``;
Triton 3.6 lowers unary minus to ``0 - x``, which is +0.0). ``tests/triton_ptx_child.py``
compiles the kernels and writes their PTX, run by the Python that has each Triton (the full
compile, with the ptxas inside Triton's wheel: no GPU or CUDA toolkit needed); the checks are here.

Triton 3.6 lives in the side venv ``.triton36`` (``scripts/test.sh`` makes it; or set
``ADAMOP_TRITON36_PYTHON``): without it those cases skip, except in CI (``CI`` set), where
they fail.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FLAVORS = ("ci", "3.6")
FLOAT_FMA = r"\b(?:fma|mad)\.(?:[a-z]+\.)*f(?:16|32|64)\b"      # mad.lo.s64 (addresses) is fine
APPROX = r"\b(?:div|sqrt|rcp|rsqrt|ex2|lg2)\.(?:approx|full)[\w.]*"
# a float register set to +0.0, and a float subtraction: "sub.rn.f32 %r2, %r3, %r1;"
ZERO_MOV = re.compile(r"\bmov\.b(?:32|64)\s+(%\w+),\s*(?:0f00000000|0d0{16})\s*;")
FSUB = re.compile(r"\bsub(?:\.\w+)*\.f(?:16|32|64)\s+%\w+,\s*(%\w+|0[fd][0-9A-Fa-f]+)\s*,")
EXACT_NEG = r"\bneg\.f(?:16|32|64)\b|\bxor\.b(?:32|64)\s+%\w+,\s*%\w+,\s*(?:-2147483648|" \
            r"-9223372036854775808|0x80000000|0x8000000000000000)\b"


# (kernel, dtype, clip, lazy): every kernel in every dtype with clipping on (the path with -c),
# the lazy row kernel, and the dense kernel without clipping
CASES = [(k, d, True, False) for k in ("adam_dense_kernel", "adam_multi_kernel",
                                         "adam_rows_kernel") for d in ("fp16", "fp32", "fp64")]
CASES += [("adam_rows_kernel", "fp32", True, True), ("adam_dense_kernel", "fp32", False, False),
          ("adam_multi_kernel", "mp", True, False)]     # mp_adam_update's batched launch


def case_id(kernel: str, dtype: str, clip: bool, lazy: bool) -> str:
    return (f"{kernel.removeprefix('adam_').removesuffix('_kernel')}-{dtype}"
            f"{'-lazy' if lazy else ''}{'' if clip else '-noclip'}")


def triton36_python() -> str | None:
    for c in (os.environ.get("ADAMOP_TRITON36_PYTHON"), str(HERE.parent / ".triton36/bin/python")):
        if c and Path(c).exists():
            return c
    return None


def zero_subtractions(ptx: str) -> list[str]:
    """Float subtractions from +0.0 (an immediate, or a register set to +0.0): ``0 - x``, which
    loses the sign of zero, where ``-x`` was meant."""
    zeros = set(ZERO_MOV.findall(ptx))
    return [m.group(0) for m in FSUB.finditer(ptx)
            if m.group(1) in zeros or re.fullmatch(r"0f0{8}|0d0{16}", m.group(1))]


@pytest.fixture(scope="module", params=FLAVORS)
def compiled(request, tmp_path_factory) -> dict:
    """{'triton': version, 'ptx': {case: text}} from the child, under one Triton."""
    if request.param == "ci":
        python = sys.executable
        if importlib.util.find_spec("triton") is None:
            pytest.skip("triton is not installed (pip install triton)")
    else:
        python = triton36_python()
        if python is None:
            reason = ("no Triton 3.6 side venv: python3 -m venv .triton36 && .triton36/bin/pip "
                      "install triton==3.6.0 (or set ADAMOP_TRITON36_PYTHON)")
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
    out = tmp_path_factory.mktemp("ptx") / "ptx.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}   # compile for real
    cases = json.dumps([[case_id(*c), *c] for c in CASES])
    proc = subprocess.run([python, str(HERE / "triton_ptx_child.py"), str(out), cases], env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"compiling under {python} failed (rc {proc.returncode}):\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result = json.loads(out.read_text())
    if request.param == "3.6":
        assert result["triton"].startswith("3.6."), f"{python} has triton {result['triton']}"
    return result


@pytest.mark.parametrize("case", CASES, ids=[case_id(*c) for c in CASES])
def test_ptx_is_ieee_and_sign_exact(compiled: dict, case: tuple) -> None:
    """No float multiply-add, no approximate division or square root, every float add, subtract
    and multiply with an explicit .rn (which ptxas never contracts), no .ftz, vector loads (the
    bandwidth path), and -clip_gradient as a true negation, never 0 - c. (LLVM may turn a
    float32 add of two widened halves, rounded to half, into a native half add: the same
    correctly rounded value.)"""
    kernel, dtype, clip, _ = case
    ptx = compiled["ptx"][case_id(*case)]
    where = f"triton {compiled['triton']}, {case_id(*case)}"
    assert not re.findall(FLOAT_FMA, ptx), f"{where}: multiply-add"
    assert not re.findall(APPROX, ptx), f"{where}: {sorted(set(re.findall(APPROX, ptx)))}"
    width = "64" if dtype == "fp64" else "32"        # half is computed in float32
    assert f"div.rn.f{width}" in ptx and f"sqrt.rn.f{width}" in ptx, where
    assert not re.findall(r"\b(?:mul|add|sub)\.f(?:32|64)\b", ptx), f"{where}: op without .rn"
    assert ".ftz" not in ptx, f"{where}: flushes subnormals"
    assert re.search(r"ld\.global[\w.]*\.v[24]", ptx), f"{where}: no vector load"
    assert not zero_subtractions(ptx), f"{where}: 0 - x negation {zero_subtractions(ptx)}"
    if clip:
        assert re.search(EXACT_NEG, ptx), f"{where}: no exact negation of clip_gradient"


def test_fma_check_can_fail(compiled: dict) -> None:
    """With contraction allowed the same kernel has fma: the check above is not vacuous."""
    assert re.findall(FLOAT_FMA, compiled["ptx"]["fusion-dense-fp32"])


@pytest.mark.parametrize("dtype", ["fp32", "fp64"])
def test_zero_subtraction_check_can_fail(compiled: dict, dtype: str) -> None:
    assert zero_subtractions(compiled["ptx"][f"probe-zero-minus-{dtype}"])


# How each Triton lowers unary minus on floats: why the kernels negate by multiplying by -1.0.
UNARY_MINUS = {"3.6": "0 - x", "3.9": "exact"}


@pytest.mark.parametrize("dtype", ["fp32", "fp64"])
def test_unary_minus_lowering(compiled: dict, dtype: str) -> None:
    version = ".".join(compiled["triton"].split(".")[:2])
    if version not in UNARY_MINUS:
        pytest.skip(f"no recorded lowering of -x for triton {compiled['triton']}")
    ptx = compiled["ptx"][f"probe-unary-minus-{dtype}"]
    got = "0 - x" if zero_subtractions(ptx) else "exact" if re.search(EXACT_NEG, ptx) else "?"
    assert got == UNARY_MINUS[version]


def test_backend_launches_without_fp_fusion() -> None:
    """The PTX above is compiled with fusion off; the backend must launch that way too (on a GPU,
    ``tests/test_gpu.py`` reads the PTX of a real launch)."""
    pytest.importorskip("torch", reason="the triton backend drives torch tensors")
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed (pip install triton)")
    from adamop.backends import triton_backend
    assert triton_backend._OPTIONS["enable_fp_fusion"] is False
