"""PyTorch CPU tensors: zero-copy in-place updates, MXNet's numbers, any strides, leaf params."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from adamop.bitwise import assert_bitexact
from conftest import DATA

import adamop
from adamop import RowSparseArray

with np.load(DATA / "golden_dev.npz") as _z:
    _META = json.loads(str(_z["meta_json"]))
    GOLDEN = {k: _z[k] for k in _z.files if k != "meta_json"}
CASES = {c["id"]: c for c in _META["cases"]}

# dense special values in every dtype, a parse-sensitive grid case per dtype, one large case
DENSE_IDS = [c["id"] for c in _META["cases"] if c["group"] == "dense_special"] + [
    "c0001", "c0150", "c0299", "c0968"]
SPARSE_IDS = [next(c["id"] for c in _META["cases"] if c["group"] == "sparse"
                   and c["dtype"] == dt and c["path"] == path and c["stype"]["weight"] == w
                   and c["extra"].get("indices_sorted") is True)
              for dt in ("float16", "float32", "float64") for path in ("lazy", "std")
              for w in ("default", "row_sparse")]


def t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x.copy())


def golden(cid: str, name: str) -> np.ndarray:
    return GOLDEN[f"{cid}__{name}"]


def expect(cid: str, w, m, v) -> None:
    for name, got in (("weight", w), ("mean", m), ("var", v)):
        assert_bitexact(got, golden(cid, f"{name}_out"), f"{cid} {name}")


@pytest.mark.parametrize("cid", DENSE_IDS)
def test_dense_golden_in_place(cid, backend):
    w, g, m, v = (t(golden(cid, k)) for k in ("weight", "grad", "mean", "var"))
    ptrs = [x.data_ptr() for x in (w, m, v)]
    g_before = g.clone()
    out = adamop.adam_update(w, g, m, v, out=w, backend=backend, **CASES[cid]["kwargs"])
    assert out is w
    assert [x.data_ptr() for x in (w, m, v)] == ptrs
    assert_bitexact(g, g_before, "grad unchanged")
    expect(cid, w, m, v)


@pytest.mark.parametrize("cid", SPARSE_IDS)
def test_row_sparse_golden(cid, backend):
    case = CASES[cid]
    shape = tuple(case["shape"])
    w, m, v = (t(golden(cid, k)) for k in ("weight", "mean", "var"))
    g = RowSparseArray(t(golden(cid, "grad_data")), t(golden(cid, "grad_indices")), shape)
    if case["stype"]["weight"] == "row_sparse":
        w = RowSparseArray.from_dense(w, all_rows=True)
    if case["stype"]["mean"] == "row_sparse":
        m, v = (RowSparseArray.from_dense(x, all_rows=True) for x in (m, v))
    out = adamop.adam_update(w, g, m, v, out=w, backend=backend, **case["kwargs"])
    assert out is w
    expect(cid, w, m, v)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_matches_numpy_path_and_returns_tensor(dtype, backend):
    gen = torch.Generator().manual_seed(3)
    w, g, m = (torch.randn(33, 5, generator=gen, dtype=dtype) for _ in range(3))
    v = torch.rand(33, 5, generator=gen, dtype=dtype)
    np_in = [x.numpy().copy() for x in (w, g, m, v)]
    kw = dict(lr=0.01, wd=0.001, clip_gradient=1.0)
    w_before = w.clone()
    out = adamop.adam_update(w, g, m, v, backend=backend, **kw)
    assert type(out) is torch.Tensor and out.dtype == dtype and out.device.type == "cpu"
    assert out.data_ptr() != w.data_ptr() and torch.equal(w, w_before)   # out=None: w untouched
    ref = adamop.adam_update(*np_in, backend=backend, **kw)
    assert_bitexact(out, ref, "weight")
    assert_bitexact(m, np_in[2], "mean")
    assert_bitexact(v, np_in[3], "var")


# Non-contiguous views holding the golden values: transposed (column-major) and sliced.
def _transposed(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x.T.copy()).T


def _sliced(x: np.ndarray) -> torch.Tensor:
    buf = torch.full((x.shape[0], 3 * x.shape[1]), 9.0, dtype=torch.from_numpy(x).dtype)
    buf[:, ::3] = torch.from_numpy(x)
    return buf[:, ::3]


@pytest.mark.parametrize("make", [_transposed, _sliced], ids=["transposed", "sliced"])
@pytest.mark.parametrize("cid", ["c0436", "c0453", "c0470", "c0968"])
def test_non_contiguous(cid, make, backend):
    w, g, m, v = (make(golden(cid, k)) for k in ("weight", "grad", "mean", "var"))
    assert not w.is_contiguous()
    out = adamop.adam_update(w, g, m, v, out=w, backend=backend, **CASES[cid]["kwargs"])
    assert out is w and not w.is_contiguous()
    expect(cid, w, m, v)


def test_non_contiguous_out_none(backend):
    cid = "c0453"
    w, g, m, v = (_sliced(golden(cid, k)) for k in ("weight", "grad", "mean", "var"))
    out = adamop.adam_update(w, g, m, v, backend=backend, **CASES[cid]["kwargs"])
    assert_bitexact(out, golden(cid, "weight_out"), "weight")
    assert_bitexact(w, golden(cid, "weight"), "weight input unchanged")


def test_leaf_parameter_requires_grad(backend):
    cid = "c0453"
    p = torch.nn.Parameter(t(golden(cid, "weight")))
    p.grad = t(golden(cid, "grad"))
    m, v = t(golden(cid, "mean")), t(golden(cid, "var"))
    ptr = p.data_ptr()
    out = adamop.adam_update(p, p.grad, m, v, out=p, backend=backend, **CASES[cid]["kwargs"])
    assert out is p and p.data_ptr() == ptr
    assert p.requires_grad and p.is_leaf
    expect(cid, p, m, v)
    # out=None returns a tensor that carries no autograd history
    p2 = torch.nn.Parameter(t(golden(cid, "weight")))
    r = adamop.adam_update(p2, t(golden(cid, "grad")), t(golden(cid, "mean")),
                           t(golden(cid, "var")), backend=backend, **CASES[cid]["kwargs"])
    assert not r.requires_grad
    assert_bitexact(r, golden(cid, "weight_out"), "weight")


def test_multi_mixed_dtypes_in_place(backend):
    ids = ["c0436", "c0453", "c0470"]   # float16, float32, float64
    ws, gs, ms, vs = ([t(golden(c, k)) for c in ids] for k in ("weight", "grad", "mean", "var"))
    ptrs = [w.data_ptr() for w in ws]
    kws = [CASES[c]["kwargs"] for c in ids]
    assert all(k == kws[0] for k in kws)
    res = adamop.adam_update_multi(ws, gs, ms, vs, out=ws, backend=backend, **kws[0])
    assert all(r is w for r, w in zip(res, ws))
    assert [w.data_ptr() for w in ws] == ptrs
    for c, w, m, v in zip(ids, ws, ms, vs):
        expect(c, w, m, v)
