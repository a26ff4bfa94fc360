"""Property tests (hypothesis): every CPU backend agrees bit for bit with the NumPy reference on
random updates, and every input drawn from a space of invalid ones raises TypeError/ValueError and
changes nothing.

An example is a *recipe* (plain data: values, layouts, storages, hyperparameters, ``out``) that
:func:`build` turns into fresh inputs, so every backend gets its own identical copy. Every
buffer an input lives in is compared afterwards, gaps between strided elements included (a
stray write shows there). The reference itself is checked against MXNet elsewhere
(``test_golden.py``, ``test_differential_mxnet.py``). Only the public API is used.

Budget (profile ``ci``, see conftest.py): about 30 s on the 2-core development machine with the
kernels already compiled; compiling them is paid once by the whole suite.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from adamop.bitwise import mismatch
from conftest import CPU_BACKENDS
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import adamop
from adamop import RowSparseArray, dispatch

DTYPES = (np.float16, np.float32, np.float64)
LAYOUTS = ("c", "f", "reversed", "strided", "transposed")
TORCH_LAYOUTS = ("c", "f", "strided", "transposed")          # torch has no negative strides
# Strings dmlc-core parses differently from Python or NumPy (tests/test_params.py has MXNet's
# values for them): no integer part, bare 'e', 'f' suffix, > 19 fraction digits, '+', spaces.
DMLC_ODD = (".85", "5.", "1e", "1.5f", "0.5F", "+0.5", " 0.5", "\t0.5", "1E-3", "0.1e1",
            "0.12345678901234567890123", "1.00000000000000000001234", "1.3340153098106382",
            "123456789012", "-1.5e-5", "3.4e+38", "1.17549435e-38", "4.5225262085222267e-05")
SENTINEL = 12345.0          # fills the gaps of strided buffers: any stray write shows


def _examples(n: int) -> int:
    return n if settings.get_current_profile_name() == "ci" else settings.default.max_examples


def available_backends() -> list[str]:
    specs = {s.name: s for s in dispatch.registry()}
    return [b for b in CPU_BACKENDS if specs[b].unavailable_reason() is None]


# ---- building inputs from a recipe -----------------------------------------------------------
def place(values: np.ndarray, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """(view holding ``values`` laid out as ``layout``, the buffer it lives in)."""
    if values.ndim == 0 or layout == "c":
        view = values.copy()
        return view, view
    if layout == "f":   # a copy: asfortranarray hands back ``values`` itself where it is F-ordered
        view = np.array(values, order="F", copy=True)
        return view, view
    if layout == "reversed":
        base = np.empty_like(values)
        view = base[(slice(None, None, -1),) * values.ndim]
    elif layout == "strided":   # every other element of the last axis, offset by one
        base = np.full(values.shape[:-1] + (2 * values.shape[-1] + 1,), SENTINEL, values.dtype)
        view = base[..., 1::2]
    else:                       # transposed: axes reversed over a contiguous buffer
        base = np.empty(values.shape[::-1], values.dtype)
        view = base.T
    view[...] = values
    return view, base


@dataclass
class Built:
    inputs: dict[str, Any]                          # weight, grad, mean, var, out
    buffers: list[np.ndarray] = field(default_factory=list)   # every buffer, for snapshots


def _array(lib: str, values: np.ndarray, layout: str, built: Built) -> Any:
    view, base = place(values, layout)
    built.buffers.append(base)
    return view if lib == "numpy" else torch.from_numpy(view)


def _row_sparse(lib: str, dense: np.ndarray, rows: list[int], layout: str,
                built: Built) -> RowSparseArray:
    data = _array(lib, dense[rows] if rows else dense[:0], layout, built)
    idx = np.array(rows, dtype=np.int64)
    built.buffers.append(idx)
    return RowSparseArray(data, idx if lib == "numpy" else torch.from_numpy(idx), dense.shape)


def build(r: dict) -> Built:
    """Fresh inputs from a recipe (the same recipe always builds the same inputs)."""
    b = Built({})
    for name in ("weight", "grad", "mean", "var"):
        values, layout, rows = r["values"][name], r["layouts"][name], r["rows"][name]
        if rows is None:
            b.inputs[name] = _array(r["lib"], values, layout, b)
        else:
            b.inputs[name] = _row_sparse(r["lib"], values, rows, layout, b)
    out = r["out"]
    if out in ("weight", "grad", "mean", "var"):
        b.inputs["out"] = b.inputs[out]
    elif out == "new":
        b.inputs["out"] = (_array(r["lib"], np.zeros_like(r["values"]["weight"]), "c", b)
                           if r["rows"]["weight"] is None else
                           _row_sparse(r["lib"], np.zeros_like(r["values"]["weight"]),
                                       list(range(r["shape"][0])), "c", b))
    else:
        b.inputs["out"] = None
    return b


# ---- strategies ------------------------------------------------------------------------------
def _values(dtype, shape):
    return hnp.arrays(dtype, shape, elements=hnp.from_dtype(np.dtype(dtype), allow_nan=True,
                                                             allow_infinity=True))


def _hyper_value(name: str):
    plain = {"lr": st.floats(1e-6, 10.0), "beta1": st.floats(0.0, 1.0),
             "beta2": st.floats(0.0, 1.0), "epsilon": st.floats(1e-12, 1.0),
             "wd": st.floats(-1.0, 1.0), "rescale_grad": st.floats(-4.0, 4.0),
             "clip_gradient": st.one_of(st.just(-1.0), st.just(0.0), st.just(-0.0),
                                        st.floats(0.0, 10.0))}[name]
    return st.one_of(plain, st.sampled_from(DMLC_ODD), plain.map(str))


@st.composite
def hyperparameters(draw) -> dict:
    hyper = {"lr": draw(_hyper_value("lr"))}
    for name in ("beta1", "beta2", "epsilon", "wd", "rescale_grad", "clip_gradient"):
        if draw(st.booleans()):
            hyper[name] = draw(_hyper_value(name))
    if draw(st.booleans()):
        hyper["lazy_update"] = draw(st.sampled_from(
            [True, False, "true", "False", "TRUE", "0", "1", 0, 1]))
    return hyper


@st.composite
def recipes(draw, *, min_size: int = 0) -> dict:
    lib = draw(st.sampled_from(["numpy", "torch"]))
    dtype = draw(st.sampled_from(DTYPES))
    sparse = draw(st.sampled_from(["dense", "grad", "all", "states", "mixed"]))
    ndim = draw(st.integers(0 if sparse == "dense" and min_size == 0 else 1, 3))
    shape = tuple(draw(st.lists(st.integers(min_size, 5), min_size=ndim, max_size=ndim)))
    layouts = TORCH_LAYOUTS if lib == "torch" else LAYOUTS
    n = shape[0] if shape else 0
    some_rows = st.lists(st.integers(0, max(n - 1, 0)), unique=True,
                         max_size=n).map(lambda rs: rs if n else [])
    stored = {"dense": (), "grad": ("grad",), "all": ("weight", "grad", "mean", "var"),
              "states": ("grad", "mean", "var"), "mixed": ("weight", "grad")}[sparse]
    r = {"lib": lib, "dtype": dtype, "shape": shape, "values": {}, "layouts": {}, "rows": {}}
    for name in ("weight", "grad", "mean", "var"):
        r["values"][name] = draw(_values(dtype, shape))
        r["layouts"][name] = draw(st.sampled_from(layouts))
        if name not in stored:
            r["rows"][name] = None
        elif name == "grad" or draw(st.booleans()):
            r["rows"][name] = draw(some_rows)        # any rows, in any order
        else:
            r["rows"][name] = list(range(n))         # every row
    r["out"] = draw(st.sampled_from([None, "weight", "new", "grad", "mean", "var"]))
    r["hyper"] = draw(hyperparameters())
    return r


# ---- running and comparing -------------------------------------------------------------------
def run(r: dict, backend: str) -> tuple[Built, Any]:
    """Build the inputs and run one update: (inputs, result or the exception raised)."""
    b = build(r)
    a = b.inputs
    try:
        result = adamop.adam_update(a["weight"], a["grad"], a["mean"], a["var"], out=a["out"],
                                    backend=backend, **r["hyper"])
    except (TypeError, ValueError) as exc:
        return b, exc
    return b, result


def _logical(x: Any) -> Any:
    if x is None:
        return None
    if isinstance(x, RowSparseArray):
        return (x.indices.tolist(), x.todense())
    return x


def same_outcome(got: tuple[Built, Any], want: tuple[Built, Any], what: str) -> None:
    (gb, gr), (wb, wr) = got, want
    if isinstance(wr, Exception) or isinstance(gr, Exception):
        assert type(gr) is type(wr) and str(gr) == str(wr), f"{what}: {gr!r} != {wr!r}"
        return
    for i, (g, w) in enumerate(zip(gb.buffers, wb.buffers)):
        bad = mismatch(g, w)
        assert bad is None, f"{what}: buffer {i}: {bad}"
    for name in ("weight", "grad", "mean", "var", "out"):
        g, w = _logical(gb.inputs[name]), _logical(wb.inputs[name])
        if isinstance(w, tuple):
            assert g[0] == w[0], f"{what}: {name} rows"
            g, w = g[1], w[1]
        if w is not None:
            bad = mismatch(g, w)
            assert bad is None, f"{what}: {name}: {bad}"
    if wb.inputs["out"] is not None:
        assert gr is gb.inputs["out"], f"{what}: the result is not out"
    g, w = _logical(gr), _logical(wr)
    bad = mismatch(g[1] if isinstance(g, tuple) else g, w[1] if isinstance(w, tuple) else w)
    assert bad is None, f"{what}: result: {bad}"


def snapshot(b: Built) -> list[bytes]:
    return [buf.tobytes() for buf in b.buffers]


@settings(max_examples=_examples(250))
@given(recipes())
def test_every_backend_matches_the_reference_bit_for_bit(r):
    reference = run(r, "numpy")
    for backend in available_backends():
        if backend != "numpy":
            same_outcome(run(r, backend), reference, backend)


@settings(max_examples=_examples(150))
@given(recipes())
def test_only_out_mean_and_var_are_written(r):
    """The grad, and the weight unless it is out, end as they began; an error writes nothing."""
    before = build(r)
    b, result = run(r, "numpy")
    a = b.inputs
    written = {id(x) for x in (a["mean"], a["var"], a["out"]) if x is not None}
    if isinstance(result, Exception):
        assert snapshot(b) == snapshot(before)
        return
    for name in ("grad", "weight"):
        if id(a[name]) not in written:
            bad = mismatch(_logical(a[name])[1] if isinstance(a[name], RowSparseArray)
                           else a[name], _logical(before.inputs[name])[1]
                           if isinstance(a[name], RowSparseArray) else before.inputs[name])
            assert bad is None, f"{name} changed: {bad}"


# ---- the error property ----------------------------------------------------------------------
BAD_HYPER = {
    "lr": [float("nan"), float("inf"), "abc", "", "0.5 ", "1e40", None, [0.1], True, 1j, "nan",
           "-inf", b"0.1", np.array([0.1, 0.2])],
    "beta1": ["nan", float("-inf"), "0.9x", "1e-39", object()],
    "epsilon": [float("nan"), "inf", "--1"],
    "wd": ["3.5e38", "1 ", "0x10"],   # (a bare " " parses as 0 in MXNet, as here)
    "rescale_grad": [float("inf"), "1,5"],
    "clip_gradient": [float("nan"), "1e99"],
    "lazy_update": ["maybe", 2, "yes", 1.0, " true", [True]],
}
CORRUPTIONS = ("dtype_int", "dtype_other_float", "dtype_complex", "dtype_bool", "not_an_array",
               "other_library", "extra_row", "extra_axis", "mean_is_var", "overlapping_states",
               "out_overlaps_weight", "grad_is_mean", "read_only", "bad_hyper", "unknown_keyword",
               "duplicate_rows", "weight_missing_rows", "mixed_state_storage",
               "row_sparse_shape", "no_such_backend", "backend_not_a_name", "numpy_subclass",
               "zero_stride_written", "read_only_mapping")


def _other_lib(b: Built, values: np.ndarray, lib: str) -> Any:
    view = values.copy()
    b.buffers.append(view)
    return view if lib == "torch" else torch.from_numpy(view)


def corrupt(b: Built, r: dict, kind: str, data) -> dict:
    """Make the built inputs invalid in the way ``kind`` names; returns extra call keywords."""
    a, lib, shape = b.inputs, r["lib"], r["shape"]
    name = data.draw(st.sampled_from(["weight", "grad", "mean", "var"]), label="input")
    values = r["values"][name]

    def fresh(x: np.ndarray) -> Any:   # a new dense array in the recipe's library
        b.buffers.append(x)
        return x if lib == "numpy" else torch.from_numpy(x)
    if kind.startswith("dtype_"):
        target = {"dtype_int": np.int32, "dtype_complex": np.complex64, "dtype_bool": np.bool_,
                  "dtype_other_float": data.draw(st.sampled_from(
                      [d for d in DTYPES if d != r["dtype"]]), label="dtype")}[kind]
        a[name] = fresh(values.astype(target))
    elif kind == "not_an_array":
        a[name] = data.draw(st.sampled_from([values.tolist(), None, 1.0, "w", (1, 2)]),
                            label="value")
    elif kind == "other_library":
        a[name] = _other_lib(b, values, lib)
    elif kind == "extra_row":
        a[name] = fresh(np.concatenate([values, values[:1]]))
    elif kind == "extra_axis":
        a[name] = fresh(values[None])
    elif kind == "mean_is_var":
        a["var"] = a["mean"]
    elif kind in ("overlapping_states", "out_overlaps_weight", "grad_is_mean"):
        size = values.size
        assume(size >= 2 or kind == "grad_is_mean")
        buf = np.zeros(size + 1, r["dtype"])
        b.buffers.append(buf)
        one, two = (fresh(buf[:size].reshape(shape)), fresh(buf[1:].reshape(shape)))
        if kind == "overlapping_states":
            a["mean"], a["var"] = one, two
        elif kind == "out_overlaps_weight":
            a["weight"], a["out"] = one, two
        else:
            a["grad"] = a["mean"] = one
    elif kind == "read_only":
        target = data.draw(st.sampled_from(["mean", "var", "out"]), label="read_only")
        dense = fresh(r["values"]["weight"].copy())
        if lib == "numpy":
            dense.flags.writeable = False
        else:
            with torch.inference_mode():
                dense = torch.from_numpy(b.buffers[-1])
        a[target] = dense
        for other in ("weight", "grad", "mean", "var"):   # dense, so no storage error comes first
            if isinstance(a[other], RowSparseArray):
                a[other] = fresh(r["values"][other].copy())
    elif kind == "bad_hyper":
        key = data.draw(st.sampled_from(sorted(BAD_HYPER)), label="hyper")
        return {key: data.draw(st.sampled_from(BAD_HYPER[key]), label="value")}
    elif kind == "unknown_keyword":
        return {data.draw(st.sampled_from(["learning_rate", "momentum", "outs", "eps"])): 0.1}
    elif kind == "no_such_backend":
        return {"backend": "no_such_backend"}
    elif kind == "backend_not_a_name":
        return {"backend": data.draw(st.sampled_from([["numpy"], ("numba",), 1, b"numpy"]))}
    elif kind == "numpy_subclass":        # np.matrix keeps 2-D, a masked array its mask
        assume(lib == "numpy")
        sub = data.draw(st.sampled_from(["matrix", "masked"]), label="subclass")
        x = fresh(values.copy())
        a[name] = np.ma.masked_array(x) if sub == "masked" else (
            np.asmatrix(x) if x.ndim == 2 else np.asmatrix(x.reshape(1, -1)))
    elif kind == "zero_stride_written":   # several elements at one address: updates collapse
        assume(values.size >= 2)
        target = data.draw(st.sampled_from(["mean", "var", "out"]), label="written")
        one = fresh(values.reshape(-1)[:1].copy())
        if lib == "numpy":
            a[target] = np.lib.stride_tricks.as_strided(one, shape, (0,) * len(shape))
        else:
            a[target] = one.reshape((1,) * len(shape)).expand(shape)
        for other in ("weight", "grad", "mean", "var"):   # dense, so no storage error comes first
            if isinstance(a[other], RowSparseArray):
                a[other] = fresh(r["values"][other].copy())
    elif kind == "read_only_mapping":     # a read-only file mapping behind torch.from_numpy
        assume(lib == "torch" and values.size >= 1)
        target = data.draw(st.sampled_from(["mean", "var", "out"]), label="mapped")
        a[target] = _read_only_mapping(values)
        for other in ("weight", "grad", "mean", "var"):
            if isinstance(a[other], RowSparseArray):
                a[other] = fresh(r["values"][other].copy())
    else:   # row_sparse storages
        assume(shape and shape[0] >= 1)
        n = shape[0]
        if kind == "duplicate_rows":
            a["grad"] = _row_sparse(lib, r["values"]["grad"], [0, 0], "c", b)
        elif kind == "weight_missing_rows":   # weight and grad row_sparse, states dense: std
            a["weight"] = _row_sparse(lib, r["values"]["weight"], list(range(n - 1)), "c", b)
            a["grad"] = _row_sparse(lib, r["values"]["grad"], [0], "c", b)
            a["mean"], a["var"] = (fresh(r["values"][k].copy()) for k in ("mean", "var"))
        elif kind == "mixed_state_storage":
            a["mean"] = _row_sparse(lib, r["values"]["mean"], list(range(n)), "c", b)
            a["var"] = fresh(r["values"]["var"].copy())
        else:
            a["grad"] = _row_sparse(lib, np.concatenate([r["values"]["grad"]] * 2), [0], "c", b)
    return {}


def _read_only_mapping(values: np.ndarray) -> Any:
    """A tensor over ``values`` in a file mapped read-only (a write there would kill the
    process; torch only warns when it wraps such an array)."""
    import tempfile
    f = tempfile.NamedTemporaryFile(suffix=".npy", delete=False)
    f.close()
    np.save(f.name, np.ascontiguousarray(values))
    mapped = np.load(f.name, mmap_mode="r")
    os.unlink(f.name)                    # the mapping stays valid until it is dropped
    with warnings.catch_warnings():      # torch warns that the array is not writeable
        warnings.simplefilter("ignore")
        return torch.from_numpy(np.asarray(mapped))


def _state(b: Built) -> list:
    """Every buffer's bytes, plus each row_sparse input's rows (which an update may replace)."""
    rows = [(x.indices.tolist(), np.asarray(x.todense()).tobytes())
            for x in b.inputs.values() if isinstance(x, RowSparseArray)]
    return snapshot(b) + rows


@settings(max_examples=_examples(300))
@given(recipes(min_size=1), st.sampled_from(CORRUPTIONS), st.data())
def test_invalid_inputs_raise_and_change_nothing(r, kind, data):
    assume(not isinstance(run(r, "numpy")[1], Exception))   # only the corruption is wrong
    for backend in available_backends():
        b = build(r)
        extra = corrupt(b, r, kind, data)
        before = _state(b)
        a, kw = b.inputs, {"backend": backend, **r["hyper"], **extra}
        with pytest.raises((TypeError, ValueError)):
            adamop.adam_update(a["weight"], a["grad"], a["mean"], a["var"], out=a["out"], **kw)
        assert _state(b) == before, f"{backend}: {kind} changed an input"
