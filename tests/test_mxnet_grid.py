"""MXNet 1.9.1's own ``test_adam`` grid (SPEC B §7), bit for bit instead of rtol=1e-4.

Every combination of dtype, clip_gradient, rescale_grad, wd and multi_precision, in each of the
five storage scenarios, takes one ``mx.optimizer.Adam`` step in MXNet (one subprocess for the
whole grid). adamop then takes the same step the way the optimizer does: lr bias-corrected in
Python double, clip_gradient forwarded only if truthy, states created as ``create_state`` makes
them, and for float16 with multi_precision an fp32 master copy cast back to float16.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import adamop
from adamop import RowSparseArray
from adamop.bitwise import mismatch
from mxnet_oracle import run_mxnet

pytestmark = pytest.mark.mxnet   # needs the MXNet 1.9.1 side venv (tests/mxnet_oracle.py)

D, R = "default", "row_sparse"
SHAPE = (3, 4, 5)
DTYPES = ("float16", "float32", "float64")
# name -> (weight stype, grad stype, lazy_update)
SCENARIOS = {"dense": (D, D, False), "rsp_rsp_lazy": (R, R, True), "rsp_rsp_std": (R, R, False),
             "dns_rsp_lazy": (D, R, True), "dns_rsp_std": (D, R, False)}
CLIP = [{}, {"clip_gradient": 0.4}, {"clip_gradient": 0.5}]
RESCALE = [{}, {"rescale_grad": 0.14}, {"rescale_grad": 0.8}]
WD = [{}, {"wd": 0.03}, {"wd": 0.05}, {"wd": 0.07}]
MP = [{}, {"multi_precision": False}, {"multi_precision": True}]
SEED = 20240917


def _grid() -> tuple[list[dict], dict[str, np.ndarray]]:
    rng = np.random.default_rng(SEED)
    cases, arrays = [], {}
    for scenario, dtype in itertools.product(SCENARIOS, DTYPES):
        w_st, g_st, lazy = SCENARIOS[scenario]
        for cg, rg, wd, mp in itertools.product(CLIP, RESCALE, WD, MP):
            okw = {**cg, **rg, **wd, **mp, "lazy_update": lazy}
            if dtype == "float16" and not okw.get("multi_precision"):
                continue   # MXNet's test skips fp16 without multi_precision
            cid = f"g{len(cases):04d}"
            arrays[f"{cid}__weight"] = rng.random(SHAPE).astype(dtype)   # rsp: density 1
            grad = rng.random(SHAPE).astype(dtype)
            if g_st == R:   # random density, as rand_ndarray draws it
                rows = np.flatnonzero(rng.random(SHAPE[0]) < rng.random()).astype(np.int64)
                arrays[f"{cid}__grad_indices"] = rows
                arrays[f"{cid}__grad_data"] = grad[rows]
            else:
                arrays[f"{cid}__grad"] = grad
            cases.append({"id": cid, "scenario": scenario, "dtype": dtype, "w_stype": w_st,
                          "g_stype": g_st, "optimizer_kwargs": okw})
    return cases, arrays


@pytest.fixture(scope="module")
def grid() -> dict:
    cases, arrays = _grid()
    out, meta = run_mxnet("grid_adam.py", arrays, {"cases": cases})
    return {"cases": cases, "arrays": arrays, "out": out, "calls": meta["calls"]}


def _optimizer_call(okw: dict) -> dict:
    """The adam_update keyword arguments ``mx.optimizer.Adam`` (defaults) passes at step 1."""
    kwargs = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8,
              "rescale_grad": okw.get("rescale_grad", 1.0),
              "lazy_update": okw["lazy_update"],
              "lr": adamop.bias_corrected_lr(0.001, 0.9, 0.999, 1),
              "wd": okw.get("wd", 0.0)}
    if okw.get("clip_gradient"):   # forwarded only if truthy
        kwargs["clip_gradient"] = okw["clip_gradient"]
    return kwargs


def _adamop_step(case: dict, arrays: dict, backend: str) -> dict[str, np.ndarray]:
    cid, dtype, okw = case["id"], np.dtype(case["dtype"]), case["optimizer_kwargs"]
    mp = bool(okw.get("multi_precision")) and dtype == np.float16
    work = np.dtype(np.float32) if mp else dtype   # the master copy's dtype
    w = arrays[f"{cid}__weight"].astype(work)
    weight = RowSparseArray.from_dense(w, all_rows=True) if case["w_stype"] == R else w
    if case["g_stype"] == R:
        grad = RowSparseArray(arrays[f"{cid}__grad_data"].astype(work),
                              arrays[f"{cid}__grad_indices"].copy(), SHAPE)
    else:
        grad = arrays[f"{cid}__grad"].astype(work)
    state_stype = case["w_stype"] if okw["lazy_update"] else D   # as create_state does
    mean, var = ((RowSparseArray(np.zeros((0,) + SHAPE[1:], work), np.zeros(0, np.int64), SHAPE)
                  if state_stype == R else np.zeros(SHAPE, work)) for _ in range(2))
    adamop.adam_update(weight, grad, mean, var, out=weight, backend=backend,
                       **_optimizer_call(okw))
    final = weight.todense() if isinstance(weight, RowSparseArray) else weight
    result = {"weight": final.astype(np.float16) if mp else final, "mean": mean, "var": var}
    if mp:
        result["weight32"] = final
    return result


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_mxnet_adam_grid(scenario: str, dtype: str, grid: dict, backend: str) -> None:
    cases = [c for c in grid["cases"] if c["scenario"] == scenario and c["dtype"] == dtype]
    assert len(cases) == (36 if dtype == "float16" else 108)
    failures = []
    for case in cases:
        cid = case["id"]
        called = {k: str(v) for k, v in _optimizer_call(case["optimizer_kwargs"]).items()}
        if called != grid["calls"][cid]:
            failures.append(f"{cid}: MXNet's optimizer called adam_update with "
                            f"{grid['calls'][cid]}, the emulation with {called}")
            continue
        got = _adamop_step(case, grid["arrays"], backend)
        for name, value in got.items():
            msg = mismatch(value, grid["out"][f"{cid}__{name}_out"])
            if msg:
                failures.append(f"{cid} {case['optimizer_kwargs']} {name}: {msg}")
    assert not failures, f"{len(failures)} differences from MXNet:\n" + "\n".join(failures)


def test_grid_multi_precision_outputs_recorded(grid: dict) -> None:
    """MXNet kept an fp32 master copy exactly for the float16 multi_precision cases."""
    with_master = {c["id"] for c in grid["cases"] if c["dtype"] == "float16"}
    recorded = {k.split("__")[0] for k in grid["out"] if k.endswith("__weight32_out")}
    assert recorded == with_master
