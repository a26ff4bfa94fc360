"""MXNet's ``test_update_ops_mutation`` contract, checked against MXNet 1.9.1 itself.

For random shapes of ndim 1-6 and each choice of ``out`` (weight, None, mean, var, grad), MXNet
(one subprocess for all cases) reports every array after the call and the returned one; adamop,
on NumPy arrays and on torch CPU tensors, must leave each array and return each result bit for
bit the same, and return ``out`` itself when one is given (SPEC B §2).
"""
from __future__ import annotations

import numpy as np
import pytest

import adamop
from adamop.bitwise import mismatch, to_numpy
from mxnet_oracle import run_mxnet

pytestmark = pytest.mark.mxnet   # needs the MXNet 1.9.1 side venv (tests/mxnet_oracle.py)

NAMES = ("weight", "grad", "mean", "var")
OUTS = ("weight", "none", "mean", "var", "grad")
KWARGS = {"rescale_grad": 0.1, "lr": 0.01, "wd": 1e-3}   # as MXNet's test calls it
NDIMS = range(1, 7)
SEED = 412298777   # the seed of MXNet's test_update_ops_mutation_failed_seed


def _cases() -> tuple[list[dict], dict[str, np.ndarray]]:
    rng = np.random.default_rng(SEED)
    cases, arrays = [], {}
    for ndim in NDIMS:
        shape = tuple(int(d) for d in rng.integers(1, 11, size=ndim))   # rand_shape_nd(ndim)
        data = {n: rng.standard_normal(shape).astype(np.float32) for n in NAMES}
        for out in OUTS:
            cid = f"m{ndim}-{out}"
            arrays.update({f"{cid}__{n}": x for n, x in data.items()})
            cases.append({"id": cid, "out": out, "kwargs": KWARGS})
    return cases, arrays


@pytest.fixture(scope="module")
def mxnet_result() -> dict:
    cases, arrays = _cases()
    out, meta = run_mxnet("mutation_ops.py", arrays, {"cases": cases})
    return {"arrays": arrays, "out": out, **meta}


def _to_library(x: np.ndarray, library: str):
    if library == "torch":
        torch = pytest.importorskip("torch")
        return torch.from_numpy(x.copy())
    return x.copy()


@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize("out", OUTS)
@pytest.mark.parametrize("ndim", NDIMS)
def test_update_ops_mutation(ndim: int, out: str, library: str, mxnet_result: dict,
                             backend: str) -> None:
    cid = f"m{ndim}-{out}"
    assert cid not in mxnet_result["errors"], f"MXNet refused: {mxnet_result['errors'][cid]}"
    before = {n: mxnet_result["arrays"][f"{cid}__{n}"] for n in NAMES}
    mx_after = {n: mxnet_result["out"][f"{cid}__{n}_after"] for n in NAMES}

    # MXNet's contract: mean and var always change, weight only if it is out, grad only if it
    # is out (then it holds the new weight).
    changed = {n for n in NAMES if mismatch(mx_after[n], before[n])}
    assert changed == {"mean", "var"} | ({out} if out != "none" else set()), changed

    arrays = {n: _to_library(before[n], library) for n in NAMES}
    target = None if out == "none" else arrays[out]
    with np.errstate(invalid="ignore"):   # MXNet's data: a negative var gives NaN
        result = adamop.adam_update(*(arrays[n] for n in NAMES), out=target, backend=backend,
                                    **KWARGS)
    if target is not None:
        assert result is target and mxnet_result["result_is_out"][cid]
    else:
        assert all(result is not a for a in arrays.values())
        assert type(result) is type(arrays["weight"])
    problems = [f"{n}: {msg}" for n in NAMES
                if (msg := mismatch(arrays[n], mx_after[n]))]
    if msg := mismatch(result, mxnet_result["out"][f"{cid}__result"]):
        problems.append(f"returned array: {msg}")
    assert not problems, f"{cid} ({library}) differs from MXNet:\n" + "\n".join(problems)
    for n in NAMES:   # untouched inputs stay byte for byte the same
        if n not in changed:
            assert to_numpy(arrays[n]).tobytes() == before[n].tobytes(), n
