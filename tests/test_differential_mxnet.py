"""Differential test against real MXNet 1.9.1: thousands of seeded random cases (shapes, dtypes,
storage mixes, hyperparameters written the way dmlc's parser trips over, special values), all run
by MXNet in one subprocess, then each compared bit for bit with adamop on every CPU backend.

``ADAMOP_DIFF_CASES`` (default 2000) and ``ADAMOP_DIFF_SEED`` change the batch; a failure names
the case id, which with the seed reproduces it (``tests/cases.py``).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import adamop
from adamop.params import dmlc_parse_float32
from adamop.bitwise import mismatch
from cases import adamop_inputs, make_cases, make_probes, pinned_cases
from mxnet_oracle import run_mxnet

pytestmark = pytest.mark.mxnet   # needs the MXNet 1.9.1 side venv (tests/mxnet_oracle.py)

N_CASES = int(os.environ.get("ADAMOP_DIFF_CASES", "2000"))
N_PROBES = int(os.environ.get("ADAMOP_DIFF_PROBES", "600"))
SEED = int(os.environ.get("ADAMOP_DIFF_SEED", "1901"))
CHUNK = 250
CHUNKS = range((N_CASES + CHUNK - 1) // CHUNK)


@pytest.fixture(scope="module")
def oracle() -> dict:
    """The batch, and MXNet's answers to it (one MXNet process for the whole module)."""
    cases, arrays = make_cases(N_CASES, SEED)
    pinned, pinned_arrays = pinned_cases()
    probes = make_probes(N_PROBES, SEED)
    out, meta = run_mxnet("diff_cases.py", {**arrays, **pinned_arrays},
                          {"cases": cases + pinned, "probes": probes})
    return {"cases": cases, "pinned": pinned, "arrays": {**arrays, **pinned_arrays},
            "out": out, "errors": meta["errors"],
            "probes": probes, "probe_bits": out["probe_bits"],
            "probe_errors": {int(k): v for k, v in meta["probe_errors"].items()}}


def _describe(case: dict) -> str:
    st = case["stype"]
    storage = f"w={st['weight']} g={st['grad']} states={st['states']}" + (
        " (empty)" if case["state_empty"] else "")
    return (f"{case['id']} {case['dtype']} {tuple(case['shape'])} {storage} out={case['out']} "
            f"special={case['special']} kwargs={case['kwargs']!r}")


def _check(case: dict, oracle: dict, backend: str) -> str | None:
    """None if adamop agrees with MXNet on this case, else the reason."""
    weight, grad, mean, var = adamop_inputs(case, oracle["arrays"])
    out = weight if case["out"] == "weight" else None
    mx_error = oracle["errors"].get(case["id"])
    try:
        with np.errstate(all="ignore"):
            result = adamop.adam_update(weight, grad, mean, var, out=out, backend=backend,
                                        **case["kwargs"])
    except (TypeError, ValueError) as e:
        return None if mx_error else f"adamop refused ({e}) but MXNet ran it"
    if mx_error:
        return f"MXNet refused ({mx_error}) but adamop ran it"
    if out is not None and result is not out:
        return "the returned object is not out"
    problems = []
    for what, got in (("weight", result), ("mean", mean), ("var", var)):
        msg = mismatch(got, oracle["out"][f"{case['id']}__{what}_out"])
        if msg:
            problems.append(f"{what}_out: {msg}")
    return "\n".join(problems) or None


@pytest.mark.parametrize("chunk", CHUNKS, ids=lambda c: f"cases{c * CHUNK}-{c * CHUNK + CHUNK - 1}")
def test_random_cases_match_mxnet(chunk: int, oracle: dict, backend: str) -> None:
    cases = oracle["cases"][chunk * CHUNK:(chunk + 1) * CHUNK]
    failures = []
    for case in cases:
        reason = _check(case, oracle, backend)
        if reason:
            failures.append(f"{_describe(case)}\n{reason}")
    assert not failures, (f"{len(failures)} of {len(cases)} cases differ from MXNet "
                          f"(seed {SEED}):\n\n" + "\n\n".join(failures))


def test_pinned_cases_match_mxnet(oracle: dict, backend: str) -> None:
    failures = [f"{_describe(c)}\n{reason}" for c in oracle["pinned"]
                if (reason := _check(c, oracle, backend))]
    assert not failures, "\n\n".join(failures)


def test_batch_covers_the_input_space(oracle: dict) -> None:
    """The generator reaches what it claims to (so a generator bug cannot hollow out the test)."""
    cases, errors = oracle["cases"], oracle["errors"]
    assert len(cases) == N_CASES
    assert len(errors) <= N_CASES // 100, f"MXNet refused {len(errors)} cases: {errors}"
    if N_CASES < 1000:
        return
    seen = {(c["stype"]["weight"], c["stype"]["grad"], c["stype"]["states"]) for c in cases}
    assert len(seen) == 8
    assert {c["dtype"] for c in cases} == {"float16", "float32", "float64"}
    assert {len(c["shape"]) for c in cases} >= {1, 2, 3, 4}
    assert sum(c["special"] for c in cases) > N_CASES // 10
    assert sum(c["state_empty"] for c in cases) > 20
    nnz = [oracle["arrays"][f"{c['id']}__grad_indices"].size for c in cases
           if c["stype"]["grad"] == "row_sparse"]
    assert nnz.count(0) > 20
    assert sum(c["out"] == "none" for c in cases) > 100
    clips = {str(c["kwargs"].get("clip_gradient")) for c in cases}
    assert {"None", "-1", "0", "-0.0", "1000.0"} <= clips


def test_parameter_strings_match_mxnet(oracle: dict) -> None:
    """dmlc's float parser, string by string: the same float32 bits, or both refuse."""
    failures = []
    for i, text in enumerate(oracle["probes"]):
        mx_error = oracle["probe_errors"].get(i)
        try:
            got = np.float32(dmlc_parse_float32("lr", text))
        except ValueError as e:
            if not mx_error:
                failures.append(f"{text!r}: adamop refused ({e}), MXNet parsed "
                                f"{np.uint32(oracle['probe_bits'][i]).view(np.float32)!r}")
            continue
        if mx_error:
            failures.append(f"{text!r}: MXNet refused ({mx_error}), adamop parsed {got!r}")
            continue
        want = np.uint32(oracle["probe_bits"][i]).view(np.float32)
        if not (np.isnan(got) and np.isnan(want)) and got.view(np.uint32) != want.view(np.uint32):
            failures.append(f"{text!r}: adamop {got!r} (0x{int(got.view(np.uint32)):08x}), "
                            f"MXNet {want!r} (0x{int(want.view(np.uint32)):08x})")
    refused = len(oracle["probe_errors"])
    assert 50 < refused < len(oracle["probes"]) - 300, refused
    assert not failures, f"{len(failures)} of {len(oracle['probes'])} strings differ:\n" + \
        "\n".join(failures)
