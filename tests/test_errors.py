"""Errors as data: every bad input raises a clear TypeError/ValueError and changes no input.

Each row of ``ERRORS`` is one test: a description (the test id), a function that builds fresh
inputs, the call, the exception type and a regex on the message. Every array reachable from the
inputs (RowSparseArray data and indices, ``out``, list elements, sparse tensors' parts) is
snapshotted byte for byte before the call and compared afterwards. The GOOD rows below check that
inputs MXNet accepts keep working, against MXNet's own numbers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
import torch
from adamop.bitwise import assert_bitexact
from conftest import DATA

import adamop
from adamop import AdamParams, BackendUnavailableError, RowSparseArray
FLOAT_PARAMS = AdamParams.float_names

update = adamop.adam_update
SHAPE = (4, 3)


# ---- inputs and snapshots --------------------------------------------------------------------
def arrays(shape=SHAPE, dtype=np.float32, lib="numpy") -> dict[str, Any]:
    """weight, grad, mean, var with distinct non-trivial values."""
    rng = np.random.default_rng(7)
    out = {k: rng.standard_normal(shape).astype(dtype) for k in ("w", "g", "m")}
    out["v"] = np.abs(rng.standard_normal(shape)).astype(dtype)
    if lib == "torch":
        out = {k: torch.from_numpy(x) for k, x in out.items()}
    return out


def _leaves(x: Any) -> list[Any]:
    """Every buffer reachable from an input, for the snapshot."""
    if isinstance(x, dict):
        return [leaf for v in x.values() for leaf in _leaves(v)]
    if isinstance(x, (list, tuple)):
        return [leaf for v in x for leaf in _leaves(v)]
    if isinstance(x, RowSparseArray):
        return [x.data, x.indices]
    if isinstance(x, torch.Tensor):
        if x.layout == torch.sparse_coo:
            return [x._indices(), x._values()]
        if x.layout == torch.sparse_csr:
            return [x.crow_indices(), x.col_indices(), x.values()]
        return [x]
    if isinstance(x, np.ndarray):
        return [x]
    if type(x).__module__.startswith("scipy.sparse"):
        return [x.data, x.indices, x.indptr]
    return []


def _bytes(x: Any) -> bytes:
    if isinstance(x, torch.Tensor):
        flat = x.detach().reshape(-1).contiguous()
        return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
    return np.ascontiguousarray(x).tobytes()


def snapshot(inputs: Any) -> list[bytes]:
    return [_bytes(leaf) for leaf in _leaves(inputs)]


@dataclass
class Err:
    desc: str
    make: Callable[[], dict]                  # fresh inputs
    call: Callable[[dict], Any]               # the failing call
    exc: type
    match: str                                # regex searched in the message


def up(a: dict, **kw) -> Any:
    """adam_update on the dict's w, g, m, v (kw overrides; lr=0.1 unless given)."""
    kw.setdefault("lr", 0.1)
    return update(a["w"], a["g"], a["m"], a["v"], **kw)


def with_(**changes) -> Callable[[], dict]:
    """Inputs from ``arrays()`` with some entries replaced (values are callables of the dict)."""
    def make() -> dict:
        a = arrays()
        for k, f in changes.items():
            a[k] = f(a)
        return a
    return make


def readonly(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x.flags.writeable = False
    return x


def rsp_all(x) -> RowSparseArray:
    return RowSparseArray.from_dense(x, all_rows=True)


def inference_tensor(x: np.ndarray) -> torch.Tensor:
    with torch.inference_mode():
        return torch.from_numpy(x).clone()


def _shared_states() -> dict:
    a = arrays()
    base = np.zeros((8, 3), np.float32)
    a["m"], a["v"] = base[:4], base[2:6]      # partially overlapping views
    return a


def _same_states() -> dict:
    a = arrays()
    a["v"] = a["m"]
    return a


def _torch_shared_states() -> dict:
    a = arrays(lib="torch")
    base = torch.zeros(8, 3)
    a["m"], a["v"] = base[:4], base[3:7]
    return a


def _multi(n: int = 3, bad: int | None = None, **bad_kw) -> Callable[[], dict]:
    def make() -> dict:
        groups = [arrays(shape=(i + 2, 3)) for i in range(n)]
        a = {k: [g[k] for g in groups] for k in ("w", "g", "m", "v")}
        if bad is not None:
            for k, f in bad_kw.items():
                a[k][bad] = f(a[k][bad])
        return a
    return make


def multi(a: dict, **kw) -> Any:
    kw.setdefault("lr", 0.1)
    return adamop.adam_update_multi(a["w"], a["g"], a["m"], a["v"], **kw)


# ---- the table -------------------------------------------------------------------------------
NON_FINITE = [float("nan"), float("inf"), float("-inf"), "nan", "inf", "-inf", "NaN", "Infinity"]

ERRORS: list[Err] = [
    # hyperparameters
    Err("lr missing", arrays, lambda a: update(a["w"], a["g"], a["m"], a["v"]), TypeError,
        r"'lr'"),
    Err("lr=None", arrays, lambda a: up(a, lr=None), ValueError, r"lr is missing; pass lr="),
    Err("unknown keyword", arrays, lambda a: up(a, foo=1), TypeError,
        r"unknown keyword argument\(s\) foo; expected lr, beta1"),
    Err("AdamParams unknown name", dict, lambda a: AdamParams.from_kwargs({"lr": 1, "lrr": 2}),
        TypeError, r"unknown parameter 'lrr'; expected one of lr, beta1"),
    *[Err(f"{p}={v!r}", arrays, lambda a, p=p, v=v: up(a, **{p: v}), ValueError,
          rf"{p}='{v}' is not finite.*pass a finite value")
      for p in FLOAT_PARAMS for v in NON_FINITE],
    Err("lr=1e-39", arrays, lambda a: up(a, lr=1e-39), ValueError,
        r"Out of range value for lr: '1e-39'"),
    Err("lr=1e40", arrays, lambda a: up(a, lr=1e40), ValueError,
        r"Out of range value for lr: '1e\+40'"),
    Err("lr=3.5e38", arrays, lambda a: up(a, lr=3.5e38), ValueError,
        r"Out of range value for lr: '3.5e\+38'"),
    Err("lr='3.402823466e38' (inf after scaling)", arrays, lambda a: up(a, lr="3.402823466e38"),
        ValueError, r"lr='3.402823466e38' is not finite"),
    Err("epsilon=1e-38", arrays, lambda a: up(a, epsilon=1e-38), ValueError,
        r"Out of range value for epsilon"),
    Err("lr='abc'", arrays, lambda a: up(a, lr="abc"), ValueError,
        r"Invalid value for lr: expected a float, got 'abc'.*pass a Python float"),
    Err("lr=''", arrays, lambda a: up(a, lr=""), ValueError, r"lr: expected a float, got ''"),
    Err("lr='0.5 '", arrays, lambda a: up(a, lr="0.5 "), ValueError,
        r"lr: trailing characters ' ' in '0.5 '"),
    Err("lr=True", arrays, lambda a: up(a, lr=True), ValueError,
        r"lr: expected a float, got 'True' \(received bool\)"),
    Err("lr=[0.1]", arrays, lambda a: up(a, lr=[0.1]), ValueError,
        r"lr: expected a float, got '\[0.1\]' \(received list\)"),
    Err("beta1='0.9x'", arrays, lambda a: up(a, beta1="0.9x"), ValueError,
        r"beta1: trailing characters 'x'"),
    Err("lazy_update='maybe'", arrays, lambda a: up(a, lazy_update="maybe"), ValueError,
        r"lazy_update: expected a boolean \(True/False, 1/0\), got 'maybe'"),
    Err("lazy_update=1.0", arrays, lambda a: up(a, lazy_update=1.0), ValueError,
        r"lazy_update: expected a boolean"),
    # dtypes
    *[Err(f"all {dt}", with_(**{k: (lambda a, k=k, dt=dt: a[k].astype(dt)) for k in "wgmv"}),
          up, TypeError, rf"weight has dtype {dt}; adam_update supports float16, float32 and "
                         rf"float64.*convert it")
      for dt in ("int32", "int64", "uint8", "bool", "complex64")],
    Err("grad int64", with_(g=lambda a: a["g"].astype(np.int64)), up, TypeError,
        r"grad has dtype int64"),
    Err("mean float64 vs float32", with_(m=lambda a: a["m"].astype(np.float64)), up, TypeError,
        r"mean has dtype float64 but weight has float32; all inputs and out must share"),
    Err("grad float16 vs float32", with_(g=lambda a: a["g"].astype(np.float16)), up, TypeError,
        r"grad has dtype float16 but weight has float32"),
    Err("torch bfloat16", lambda: {k: x.to(torch.bfloat16) for k, x in
                                   arrays(lib="torch").items()},
        up, TypeError, r"weight has dtype bfloat16; .*convert it with"),
    Err("torch var float64", lambda: {**arrays(lib="torch"),
                                      "v": torch.zeros(SHAPE, dtype=torch.float64)},
        up, TypeError, r"var has dtype float64 but weight has float32"),
    # shapes
    Err("grad (3, 4) vs (4, 3)", with_(g=lambda a: a["g"].reshape(3, 4)), up, ValueError,
        r"grad has shape \(3, 4\) but weight has shape \(4, 3\); all inputs"),
    Err("equal size, (6,) vs (2, 3)",
        lambda: {**{k: x.reshape(-1)[:6].copy() for k, x in arrays().items()},
                 "g": arrays()["g"].reshape(-1)[:6].reshape(2, 3).copy()},
        up, ValueError, r"grad has shape \(2, 3\) but weight has shape \(6,\)"),
    Err("var (4,)", with_(v=lambda a: a["v"][:, 0].copy()), up, ValueError,
        r"var has shape \(4,\) but weight has shape \(4, 3\)"),
    Err("rsp grad of another shape",
        with_(g=lambda a: RowSparseArray(a["g"][:2], [0, 1], (5, 3))), up, ValueError,
        r"grad has shape \(5, 3\) but weight has shape \(4, 3\)"),
    # out
    Err("out shape", with_(o=lambda a: np.zeros((3, 4), np.float32)),
        lambda a: up(a, out=a["o"]), ValueError, r"out has shape \(3, 4\) but weight"),
    Err("out dtype", with_(o=lambda a: np.zeros(SHAPE, np.float64)),
        lambda a: up(a, out=a["o"]), TypeError, r"out has dtype float64 but weight has float32"),
    Err("out torch for numpy", with_(o=lambda a: torch.zeros(SHAPE)),
        lambda a: up(a, out=a["o"]), TypeError, r"out is a torch array but weight is a numpy"),
    Err("out row_sparse for dense weight", with_(o=lambda a: rsp_all(np.zeros(SHAPE, np.float32))),
        lambda a: up(a, out=a["o"]), TypeError,
        r"out has storage row_sparse but weight has default"),
    Err("out a list", with_(o=lambda a: [a["w"]]), lambda a: up(a, out=a["o"]), TypeError,
        r"out: expected a numpy.ndarray, torch.Tensor or adamop.RowSparseArray, got builtins.list"),
    # read-only
    Err("read-only mean", with_(m=lambda a: readonly(a["m"])), up, ValueError,
        r"mean is read-only, but adam_update writes it in place; pass a writeable array"),
    Err("read-only var", with_(v=lambda a: readonly(a["v"])), up, ValueError, r"var is read-only"),
    Err("read-only out", with_(o=lambda a: readonly(a["w"])), lambda a: up(a, out=a["o"]),
        ValueError, r"out is read-only"),
    Err("read-only weight, out=weight", with_(w=lambda a: readonly(a["w"])),
        lambda a: up(a, out=a["w"]), ValueError, r"out is read-only"),
    Err("read-only row_sparse mean",
        with_(m=lambda a: RowSparseArray(readonly(a["m"]), np.arange(4), SHAPE),
              v=lambda a: rsp_all(a["v"]),
              w=lambda a: rsp_all(a["w"]), g=lambda a: rsp_all(a["g"])),
        lambda a: up(a, out=a["w"]), ValueError, r"mean is read-only"),
    Err("torch inference-mode mean", lambda: {**arrays(lib="torch"),
                                               "m": inference_tensor(arrays()["m"])},
        up, ValueError, r"mean is read-only"),
    # not an array
    Err("weight a list", with_(w=lambda a: a["w"].tolist()), up, TypeError,
        r"weight: expected a numpy.ndarray, torch.Tensor or adamop.RowSparseArray, got "
        r"builtins.list; convert it with numpy.asarray\(weight\)"),
    Err("grad a float", with_(g=lambda a: 1.0), up, TypeError,
        r"grad: expected .* got builtins.float"),
    Err("mean None", with_(m=lambda a: None), up, TypeError,
        r"mean: expected .* got builtins.NoneType"),
    Err("var a string", with_(v=lambda a: "var"), up, TypeError,
        r"var: expected .* got builtins.str"),
    # unsupported storage
    Err("torch sparse_csr grad",
        lambda: {**arrays(lib="torch"), "g": torch.from_numpy(arrays()["g"]).to_sparse_csr()},
        up, TypeError, r"grad: torch layout sparse_csr is not supported \(csr storage is out of "
                       r"scope\); convert it with .to_dense\(\)"),
    Err("torch sparse COO mean",
        lambda: {**arrays(lib="torch"), "m": torch.from_numpy(arrays()["m"]).to_sparse()},
        up, TypeError, r"mean: a torch sparse COO tensor cannot be updated in place"),
    Err("torch sparse COO weight",
        lambda: {**arrays(lib="torch"), "w": torch.from_numpy(arrays()["w"]).to_sparse()},
        up, TypeError, r"weight: a torch sparse COO tensor"),
    # row_sparse
    Err("indices out of range", lambda: {"d": np.ones((2, 3), np.float32), "i": np.array([0, 4])},
        lambda a: RowSparseArray(a["d"], a["i"], SHAPE), ValueError,
        r"row index 4 is out of range for shape \(4, 3\) \(expected 0 <= index < 4\)"),
    Err("negative index", lambda: {"d": np.ones((2, 3), np.float32), "i": np.array([-1, 2])},
        lambda a: RowSparseArray(a["d"], a["i"], SHAPE), ValueError,
        r"row index -1 is out of range"),
    Err("float indices", lambda: {"d": np.ones((2, 3), np.float32), "i": np.array([0.0, 2.0])},
        lambda a: RowSparseArray(a["d"], a["i"], SHAPE), TypeError,
        r"indices must be integers, got dtype float64; convert with indices.astype\(np.int64\)"),
    Err("torch float indices", lambda: {"d": torch.ones(2, 3), "i": torch.tensor([0.0, 2.0])},
        lambda a: RowSparseArray(a["d"], a["i"], SHAPE), TypeError,
        r"indices must be integers, got dtype torch.float32; convert with indices.long\(\)"),
    Err("2-D indices", lambda: {"d": np.ones((2, 3), np.float32), "i": np.array([[0], [2]])},
        lambda a: RowSparseArray(a["d"], a["i"], SHAPE), ValueError,
        r"indices must be 1-D, got shape \(2, 1\)"),
    Err("data rows != indices", lambda: {"d": np.ones((3, 3), np.float32), "i": np.array([0, 2])},
        lambda a: RowSparseArray(a["d"], a["i"], SHAPE), ValueError,
        r"data has shape \(3, 3\), expected \(2, 3\) .*give one data row per index"),
    Err("data row shape", lambda: {"d": np.ones((2, 4), np.float32), "i": np.array([0, 2])},
        lambda a: RowSparseArray(a["d"], a["i"], SHAPE), ValueError, r"expected \(2, 3\)"),
    Err("numpy data, torch indices", lambda: {"d": np.ones((2, 3), np.float32),
                                              "i": torch.tensor([0, 2])},
        lambda a: RowSparseArray(a["d"], a["i"], SHAPE), TypeError, r"use the same library"),
    Err("row_sparse weight missing rows (lazy)",
        with_(w=lambda a: RowSparseArray(a["w"][[0, 2]], [0, 2], SHAPE),
              g=lambda a: RowSparseArray(a["g"][[1]], [1], SHAPE),
              m=lambda a: rsp_all(a["m"]), v=lambda a: rsp_all(a["v"])),
        lambda a: up(a, out=a["w"]), ValueError,
        r"weight is row_sparse with 2 of 4 rows stored; .*RowSparseArray.from_dense\(w, "
        r"all_rows=True\)"),
    Err("row_sparse weight missing rows (std, dense states)",
        with_(w=lambda a: RowSparseArray(a["w"][[0, 2]], [0, 2], SHAPE),
              g=lambda a: RowSparseArray(a["g"][[1]], [1], SHAPE)),
        lambda a: up(a, out=a["w"], lazy_update=False), ValueError, r"2 of 4 rows stored"),
    Err("duplicate grad indices",
        with_(g=lambda a: RowSparseArray(a["g"][:3], [2, 0, 2], SHAPE)), up, ValueError,
        r"grad stores rows \[2\] more than once; .*grad.coalesce\(\)"),
    Err("duplicate grad indices, torch",
        lambda: {**arrays(lib="torch"),
                 "g": RowSparseArray(torch.ones(3, 3), torch.tensor([1, 1, 3]), SHAPE)},
        up, ValueError, r"rows \[1\] more than once"),
    Err("mean dense, var row_sparse", with_(v=lambda a: rsp_all(a["v"]),
                                            g=lambda a: rsp_all(a["g"])),
        up, ValueError, r"mean has storage default but var has row_sparse"),
    # mixed libraries
    Err("numpy weight, torch grad", with_(g=lambda a: torch.from_numpy(a["g"].copy())), up,
        TypeError, r"grad is a torch array but weight is a numpy array; pass every array from one"),
    Err("torch weight, numpy mean", lambda: {**arrays(lib="torch"), "m": arrays()["m"]}, up,
        TypeError, r"mean is a numpy array but weight is a torch array"),
    Err("numpy weight, torch row_sparse grad",
        with_(g=lambda a: RowSparseArray(torch.ones(1, 3), torch.tensor([1]), SHAPE)), up,
        TypeError, r"grad is a torch array but weight is a numpy array"),
    # aliasing
    Err("mean is var", _same_states, up, ValueError,
        r"mean and var share memory; .*must be separate arrays"),
    Err("mean/var partial overlap", _shared_states, up, ValueError, r"mean and var share memory"),
    Err("torch mean/var overlap", _torch_shared_states, up, ValueError,
        r"mean and var share memory"),
    Err("weight is mean", with_(m=lambda a: a["w"]), up, ValueError,
        r"weight and mean share memory"),
    Err("grad overlaps var", with_(v=lambda a: a["g"][::-1]), up, ValueError,
        r"grad and var share memory"),
    Err("out partly overlaps weight",
        lambda: (lambda b: {**arrays(), "w": b[:4], "o": b[1:5]})(np.zeros((5, 3), np.float32)),
        lambda a: up(a, out=a["o"]), ValueError, r"out partly overlaps weight"),
    Err("out=mean with row_sparse lazy grad",
        with_(g=lambda a: RowSparseArray(a["g"][[1]], [1], SHAPE)),
        lambda a: up(a, out=a["m"]), ValueError,
        r"out shares memory with mean; with a row_sparse grad and lazy_update=True"),
    # adam_update_multi
    Err("multi: lists of different lengths",
        lambda: {**_multi()(), "g": _multi()()["g"][:2]}, multi, ValueError,
        r"grads has 2 entries but weights has 3; give one entry per parameter"),
    Err("multi: out list too short", lambda: (lambda a: {**a, "o": a["w"][:1]})(_multi()()),
        lambda a: multi(a, out=a["o"]), ValueError, r"out has 1 entries but weights has 3"),
    Err("multi: not a list", lambda: {k: v[0] for k, v in _multi()().items()}, multi, TypeError,
        r"weights must be a list or tuple of arrays, got ndarray"),
    Err("multi: one int tensor among many", _multi(bad=2, m=lambda x: x.astype(np.int32)), multi,
        TypeError, r"\[2\] mean has dtype int32"),
    Err("multi: one shape mismatch", _multi(bad=1, g=lambda x: x[:1].copy()), multi, ValueError,
        r"\[1\] grad has shape \(1, 3\) but \[1\] weight has shape \(3, 3\)"),
    Err("multi: one read-only var", _multi(bad=2, v=readonly), multi, ValueError,
        r"\[2\] var is read-only"),
    Err("multi: duplicate indices in the last",
        _multi(bad=2, g=lambda x: RowSparseArray(x[:2], [1, 1], x.shape)), multi, ValueError,
        r"\[2\] grad stores rows \[1\] more than once"),
    Err("multi: one bad lr", _multi(), lambda a: multi(a, lr=[0.1, 0.1, "nan"]), ValueError,
        r"tensor 2: lr='nan' is not finite"),
    Err("multi: lr list too short", _multi(), lambda a: multi(a, lr=[0.1, 0.2]), ValueError,
        r"lr has 2 values for 3 tensors"),
    Err("multi: lr an array", _multi(), lambda a: multi(a, lr=np.ones(3)), TypeError,
        r"lr must be a number or a list of numbers, got an array"),
    Err("multi: unknown backend", _multi(), lambda a: multi(a, backend="nope"),
        BackendUnavailableError, r"unknown backend 'nope'"),
    # backends
    Err("backend='nope'", arrays, lambda a: up(a, backend="nope"), BackendUnavailableError,
        r"unknown backend 'nope'; expected one of numpy.*adamop info"),
    Err("backend='triton' on CPU arrays", arrays, lambda a: up(a, backend="triton"),
        BackendUnavailableError, r"backend 'triton' cannot run these arrays: .*cuda.*Leave "
                                 r"backend=None"),
]


@pytest.mark.parametrize("case", ERRORS, ids=[e.desc for e in ERRORS])
def test_error(case: Err):
    inputs = case.make()
    before = snapshot(inputs)
    with pytest.raises(case.exc, match=case.match):
        case.call(inputs)
    assert snapshot(inputs) == before, "an input changed although the call raised"


def test_backend_error_is_a_value_error():
    assert issubclass(BackendUnavailableError, ValueError)


def test_scipy_csr_grad():
    sparse = pytest.importorskip("scipy.sparse", reason="scipy is not installed")
    a = arrays()
    a["g"] = sparse.csr_matrix(a["g"])
    before = snapshot(a)
    with pytest.raises(TypeError, match=r"grad: scipy sparse matrices \(csr_matrix\) are not "
                                        r"supported .*pass grad.toarray\(\)"):
        up(a)
    assert snapshot(a) == before


def test_multi_bad_tensor_writes_nothing_anywhere():
    """A later tensor's error stops the whole batch before the first tensor is written."""
    a = _multi(n=4, bad=3, w=lambda x: x.astype(np.float64))()
    before = snapshot(a)
    with pytest.raises(TypeError, match=r"\[3\] grad has dtype float32 but \[3\] weight"):
        multi(a, out=a["w"])
    assert snapshot(a) == before


# ---- good inputs MXNet accepts ---------------------------------------------------------------
def _golden() -> tuple[dict, dict]:
    with np.load(DATA / "golden_dev.npz") as z:
        meta = json.loads(str(z["meta_json"]))
        cases = {c["id"]: c for c in meta["cases"]}
        return cases, {k: z[k] for k in z.files if k != "meta_json"}


GOLDEN_CASES, GOLDEN = _golden()


def run_golden(cid: str, backend: str, layout: Callable = np.copy, **override) -> None:
    """Run a dense golden case with (possibly re-spelled) kwargs; compare with MXNet's result."""
    case = GOLDEN_CASES[cid]
    w, g, m, v = (layout(GOLDEN[f"{cid}__{k}"]) for k in ("weight", "grad", "mean", "var"))
    kw = {**case["kwargs"], **override}
    out = update(w, g, m, v, out=w, backend=backend, **kw)
    assert out is w
    for name, got in (("weight", w), ("mean", m), ("var", v)):
        assert_bitexact(got, GOLDEN[f"{cid}__{name}_out"], f"{cid} {name}")


# c0438: float32, kwargs {'lr': '0.01'}; c0441 clip_gradient '0.0'; c0443 epsilon '0.0'.
@pytest.mark.parametrize("lr", ["0.01", 0.01, np.float32(0.01), np.float64(0.01), " 0.01",
                                "+0.01", "1e-2", "1E-2", "0.01f"], ids=repr)
def test_good_lr_spellings(lr, backend):
    run_golden("c0438", backend, lr=lr)


def test_clip_gradient_zero_clips_to_zero(backend):
    assert GOLDEN_CASES["c0441"]["kwargs"]["clip_gradient"] == "0.0"
    run_golden("c0441", backend, clip_gradient=0)
    run_golden("c0441", backend, clip_gradient=0.0)


def test_epsilon_zero(backend):
    assert GOLDEN_CASES["c0443"]["kwargs"]["epsilon"] == "0.0"
    run_golden("c0443", backend, epsilon=0)


def _sparse_golden(lazy: str) -> str:
    return next(c["id"] for c in GOLDEN_CASES.values()
                if c["group"] == "sparse" and c["kwargs"].get("lazy_update") == lazy
                and c["dtype"] == "float32" and c["extra"].get("indices_sorted") is True
                and c["stype"]["weight"] == "default" and c["path"] == ("lazy" if lazy == "True"
                                                                        else "std"))


@pytest.mark.parametrize("spelling,lazy", [("TRUE", "True"), ("1", "True"), (1, "True"),
                                           ("true", "True"), ("0", "False"), (0, "False"),
                                           ("FALSE", "False"), (False, "False")], ids=repr)
def test_good_lazy_update_spellings(spelling, lazy, backend):
    cid = _sparse_golden(lazy)
    z = GOLDEN
    w, m, v = (z[f"{cid}__{k}"].copy() for k in ("weight", "mean", "var"))
    g = RowSparseArray(z[f"{cid}__grad_data"], z[f"{cid}__grad_indices"], w.shape)
    kw = {**GOLDEN_CASES[cid]["kwargs"], "lazy_update": spelling}
    update(w, g, m, v, out=w, backend=backend, **kw)
    for name, got in (("weight", w), ("mean", m), ("var", v)):
        assert_bitexact(got, z[f"{cid}__{name}_out"], f"{cid} {name}")


# Printed by MXNet 1.9.1 (CPU) for adam_update(w, g, m, v, lr=-0.01, wd=0.1) on these float32
# inputs: MXNet accepts a negative lr (no range check) and so does adamop.
NEG_LR_IN = {"w": [0.5, -1.0, 2.0, 0.0], "g": [0.1, -0.2, 3.0, 0.0], "m": [0.01, 0.0, -0.5, 0.25],
             "v": [0.1, 0.2, 0.0, 0.5]}
NEG_LR_OUT = {"weight": [0x3f0031c2, 0xbf8015fd, 0x3ffe5b09, 0x3b50a37c],
              "mean": [0x3cc49ba8, 0xbcf5c294, 0xbe051eb2, 0x3e666666],
              "var": [0x3dcca42b, 0x3e4caff7, 0x3c27c51f, 0x3effbe77]}


def test_negative_lr_matches_mxnet(backend):
    w, g, m, v = (np.array(NEG_LR_IN[k], np.float32) for k in "wgmv")
    out = update(w, g, m, v, lr=-0.01, wd=0.1, backend=backend)
    for name, got in (("weight", out), ("mean", m), ("var", v)):
        assert_bitexact(got, np.array(NEG_LR_OUT[name], np.uint32).view(np.float32), name)


# ---- strided inputs work and match contiguous ones bit for bit --------------------------------
def _stepped(x: np.ndarray) -> np.ndarray:
    """The same values in every other element of a larger buffer (a non-contiguous view)."""
    buf = np.full((2 * x.shape[0],) + x.shape[1:], 7.0, x.dtype)
    buf[::2] = x
    return buf[::2]


def _fortran(x: np.ndarray) -> np.ndarray:
    return np.asfortranarray(x)


def _reversed(x: np.ndarray) -> np.ndarray:
    return x[::-1].copy()[::-1]


def _transposed(x: np.ndarray) -> np.ndarray:
    return x.T.copy().T


LAYOUTS = {"stepped": _stepped, "fortran": _fortran, "reversed": _reversed,
           "transposed": _transposed}


# c0453: float32 (6, 5) huge magnitudes; c0436 / c0470 the float16 / float64 twins;
# c0968: float32 (121, 117) with clipping.
@pytest.mark.parametrize("cid", ["c0436", "c0453", "c0470", "c0968"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_strided_matches_golden_and_contiguous(cid, layout, backend):
    make = LAYOUTS[layout]
    probe = make(GOLDEN[f"{cid}__weight"])
    if layout != "stepped":
        assert not probe.flags.c_contiguous or probe.ndim == 1
    run_golden(cid, backend, layout=make)
    # and the strided call equals a contiguous copy's call, bit for bit
    z, kw = GOLDEN, GOLDEN_CASES[cid]["kwargs"]
    strided = [make(z[f"{cid}__{k}"]) for k in ("weight", "grad", "mean", "var")]
    dense = [np.ascontiguousarray(x).copy() for x in strided]
    r1 = update(*strided, backend=backend, **kw)
    r2 = update(*dense, backend=backend, **kw)
    for a, b, what in zip((r1, *strided[2:]), (r2, *dense[2:]), ("weight", "mean", "var")):
        assert_bitexact(a, b, what)


def test_strided_out_and_row_sparse(backend):
    """A strided out and a strided row_sparse grad over dense states (lazy and std)."""
    for lazy in ("True", "False"):
        cid = _sparse_golden(lazy)
        z = GOLDEN
        w, m, v = (_stepped(z[f"{cid}__{k}"]) for k in ("weight", "mean", "var"))
        g = RowSparseArray(_stepped(z[f"{cid}__grad_data"]), z[f"{cid}__grad_indices"], w.shape)
        out = _stepped(np.zeros_like(z[f"{cid}__weight"]))
        r = update(w, g, m, v, out=out, backend=backend, **GOLDEN_CASES[cid]["kwargs"])
        assert r is out
        for name, got in (("weight", out), ("mean", m), ("var", v)):
            assert_bitexact(got, z[f"{cid}__{name}_out"], f"{cid} lazy={lazy} {name}")
