"""Seeded random ``adam_update`` cases and parameter strings for the differential tests.

A case is JSON metadata plus named numpy arrays, so one ``.npz`` carries a whole batch to the
MXNet side (``tests/mxnet_side/diff_cases.py``) and the same inputs are rebuilt here for adamop.
Everything is drawn from MXNet's valid input space: the deliberate differences of SPEC A.5
(NaN/inf hyperparameters, unsorted or duplicate indices, an rsp grad without ``out=weight``)
and the inputs MXNet refuses are left out.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from adamop import RowSparseArray

D, R = "default", "row_sparse"
DTYPES = ("float16", "float32", "float64")

# (weight, grad, states) storage types, with their weights in the draw.
STORAGES = [
    ((D, D, D), 35),   # dense kernel
    ((D, R, D), 20),   # lazy or std, by lazy_update
    ((R, R, R), 20),   # lazy or std, by lazy_update
    ((R, R, D), 10),   # always std
    ((D, D, R), 4),    # the rest fall back to the dense kernel with write-back
    ((R, D, D), 4),
    ((R, D, R), 4),
    ((D, R, R), 3),
]

# Strings that dmlc parses in its own way (all accepted by MXNet).
QUIRKY_STRINGS = [".85", "+0.5", "1E-3", " 0.1", "5", "0.5f", "1e-3F", "+.25", "3.", "  2.5e-2",
                  "1.00000000000000000000000001", "9.99999999999999999999e-6", "0.1e1", "1e+0"]


def _float_1_10(rng: np.random.Generator) -> float:
    return float(rng.uniform(1, 10))


def _float_tiny(rng: np.random.Generator) -> float:   # Python writes these in e-notation
    return float(10 ** rng.uniform(-9, -5))


def _float_unit(rng: np.random.Generator) -> float:
    return float(10 ** rng.uniform(-4, 0))


def _pick(rng: np.random.Generator, options: list) -> Any:
    choice = options[int(rng.integers(len(options)))]
    return choice(rng) if callable(choice) else choice


_UNSET = object()

HYPER = {
    "lr": [_float_tiny, _float_unit, _float_1_10, 0.001, 0.01, "-0.01", 1, *QUIRKY_STRINGS],
    "beta1": [_UNSET, _UNSET, 0.9, _float_unit, lambda r: float(r.uniform(0.5, 1)), 0, 0.0, 1,
              1.0, 1.5, -1, ".85", "0.95"],
    "beta2": [_UNSET, _UNSET, 0.999, lambda r: float(1 - 10 ** r.uniform(-5, -1)), 0, 1, 1.5,
              -1.0, ".99", "9.99e-1"],
    "epsilon": [_UNSET, _UNSET, 0, 0.0, _float_tiny, _float_unit, 1e-8, "1E-6", "1e-08"],
    "wd": [_UNSET, _UNSET, 0, 0.0, _float_unit, _float_tiny, "0", ".01", _float_1_10],
    "rescale_grad": [_UNSET, _UNSET, lambda r: 1.0 / int(r.integers(1, 300)), _float_1_10,
                     _float_tiny, _float_unit, "5", 0, 1, "+0.5"],
    "clip_gradient": [_UNSET, _UNSET, -1, -1.0, 0, 0.0, -0.0, "-0.0", _float_tiny, _float_unit,
                      1e3, _float_1_10, "0.5", "1E2"],
    "lazy_update": [_UNSET, True, False, "true", "0", "FALSE", "1", "True", "False", 1, 0],
}


def draw_kwargs(rng: np.random.Generator) -> dict[str, Any]:
    """Hyperparameters as a caller passes them (floats, ints, bools or strings)."""
    kwargs = {}
    for name, options in HYPER.items():
        value = _pick(rng, options)
        if value is not _UNSET:
            kwargs[name] = value
    return kwargs


def lazy_of(kwargs: dict[str, Any]) -> bool:
    return str(kwargs.get("lazy_update", True)).lower() in ("true", "1")


def _shape(rng: np.random.Generator) -> tuple[int, ...]:
    if rng.random() < 0.03:   # a few larger arrays, for the backends' blocked and parallel paths
        return (int(rng.integers(200, 700)), int(rng.integers(1, 40)))
    ndim = int(rng.integers(1, 5))
    dims = [1 if rng.random() < 0.2 else int(rng.integers(2, 8)) for _ in range(ndim)]
    return tuple(dims)


def _special(rng: np.random.Generator, arrays: dict[str, np.ndarray], dtype: np.dtype) -> None:
    """Sprinkle NaN, infinities, huge values, subnormals, signed zeros and negative var."""
    info = np.finfo(dtype)
    values = [np.nan, np.inf, -np.inf, info.max, -info.max, info.max / 4, info.smallest_subnormal,
              -info.smallest_subnormal * 3, info.tiny, 0.0, -0.0]
    for name, x in arrays.items():
        flat = x.reshape(-1)
        k = int(rng.integers(1, max(2, flat.size // 4) + 1))
        pos = rng.integers(0, flat.size, size=k)
        flat[pos] = np.array([values[int(i)] for i in rng.integers(0, len(values), k)], dtype)
        if name == "var" and rng.random() < 0.5:
            flat[int(rng.integers(flat.size))] = -abs(flat[int(rng.integers(flat.size))]) - 1


def make_cases(n: int, seed: int) -> tuple[list[dict], dict[str, np.ndarray]]:
    """``n`` random cases: (metadata list, arrays keyed ``<id>__<name>``)."""
    rng = np.random.default_rng(seed)
    storages, weights = zip(*STORAGES)
    p = np.array(weights, float) / sum(weights)
    cases, arrays = [], {}
    for i in range(n):
        cid = f"r{i:05d}"
        dtype = np.dtype(DTYPES[int(rng.integers(3))])
        shape = _shape(rng)
        w_st, g_st, s_st = storages[int(rng.choice(len(storages), p=p))]
        kwargs = draw_kwargs(rng)
        scale = 10 ** rng.uniform(-3, 1.5, size=4)
        data = {"weight": rng.standard_normal(shape) * scale[0],
                "grad": rng.standard_normal(shape) * scale[1],
                "mean": rng.standard_normal(shape) * scale[2] * 0.1,
                "var": np.abs(rng.standard_normal(shape)) * scale[3] * 0.05}
        with np.errstate(over="ignore"):
            data = {k: v.astype(dtype) for k, v in data.items()}
        special = bool(rng.random() < 0.15)
        if special:
            _special(rng, data, dtype)
        # Empty row_sparse states (as create_state makes them); MXNet's std update refuses them.
        state_empty = s_st == R and rng.random() < 0.3 and not (w_st == g_st == R
                                                                 and not lazy_of(kwargs))
        if state_empty:
            data["mean"][...] = 0
            data["var"][...] = 0
        for k, v in data.items():
            arrays[f"{cid}__{k}"] = v
        if g_st == R:
            rows = shape[0]
            u = rng.random()
            nnz = 0 if u < 0.1 else rows if u < 0.25 else int(rng.integers(0, rows + 1))
            idx = np.sort(rng.choice(rows, nnz, replace=False)).astype(np.int64)
            arrays[f"{cid}__grad_indices"] = idx
            arrays[f"{cid}__grad_data"] = data["grad"][idx].copy()
        # MXNet requires out=weight for a row_sparse grad (SPEC B §2).
        out = "weight" if g_st == R or rng.random() < 0.6 else "none"
        cases.append({"id": cid, "dtype": dtype.name, "shape": list(shape),
                      "stype": {"weight": w_st, "grad": g_st, "states": s_st},
                      "state_empty": state_empty, "out": out, "kwargs": kwargs,
                      "special": special})
    return cases, arrays


def pinned_cases() -> tuple[list[dict], dict[str, np.ndarray]]:
    """Hand-made cases for behaviour a random batch may miss.

    Fallback write-back: MXNet stores a fallback's row_sparse results through a dense->row_sparse
    cast that drops rows holding only zeros, so a row of -0.0 reads back as +0.0 (beta1=0 and
    clip_gradient=0 make every new mean a signed zero; lr=0 keeps a -0.0 weight row).
    """
    f = np.float32
    w = np.array([[-0.0, -0.0], [1.0, -0.0], [2.0, 3.0]], f)
    g = np.array([[1.0, -1.0], [-1.0, 1.0], [-2.0, -3.0]], f)
    m = np.array([[-1.0, -1.0], [1.0, -1.0], [0.5, -0.5]], f)
    v = np.full((3, 2), 0.25, f)
    zero_mean = {"lr": 0.1, "beta1": 0, "clip_gradient": 0}
    specs = [((D, D, R), zero_mean, "weight"), ((D, D, R), zero_mean, "none"),
             ((D, R, R), zero_mean, "weight"), ((R, D, R), zero_mean, "weight"),
             ((R, D, D), {"lr": 0.0, "beta1": 0, "clip_gradient": 0}, "weight")]
    cases, arrays = [], {}
    for i, ((w_st, g_st, s_st), kwargs, out) in enumerate(specs):
        cid = f"p{i:03d}"
        arrays.update({f"{cid}__weight": w, f"{cid}__grad": g, f"{cid}__mean": m,
                       f"{cid}__var": v})
        if g_st == R:
            arrays[f"{cid}__grad_indices"] = np.array([0, 2], np.int64)
            arrays[f"{cid}__grad_data"] = g[[0, 2]]
        cases.append({"id": cid, "dtype": "float32", "shape": [3, 2],
                      "stype": {"weight": w_st, "grad": g_st, "states": s_st},
                      "state_empty": False, "out": out, "kwargs": kwargs, "special": False})
    return cases, arrays


def adamop_inputs(case: dict, arrays: dict[str, np.ndarray]) -> tuple:
    """(weight, grad, mean, var) for adamop, built as the MXNet side builds its NDArrays."""
    cid, st, shape = case["id"], case["stype"], tuple(case["shape"])

    def get(name: str) -> np.ndarray:
        return arrays[f"{cid}__{name}"].copy()

    w = get("weight")
    weight = RowSparseArray.from_dense(w, all_rows=True) if st["weight"] == R else w
    if st["grad"] == R:
        grad = RowSparseArray(get("grad_data"), get("grad_indices"), shape)
    else:
        grad = get("grad")
    states = []
    for name in ("mean", "var"):
        if st["states"] == D:
            states.append(get(name))
        elif case["state_empty"]:
            states.append(RowSparseArray(np.zeros((0,) + shape[1:], w.dtype),
                                         np.zeros(0, np.int64), shape))
        else:
            states.append(RowSparseArray.from_dense(get(name), all_rows=True))
    return (weight, grad, *states)


# ---- parameter strings ------------------------------------------------------------------------
FIXED_PROBES = [
    "0.9", "1e-08", "1.3340153098106382", "5", "+5", "-5", ".5", "5.", "+.5", "-.5e-3", "1E-3",
    "1e+3", "1e", "1e+", "e5", ".", "-", "+", "", " ", "  0.1", "\t3", "0.1 ", "0.1\n", "1e-3f",
    "1.5F", "1.5f ", "1ff", "nan", "NaN", "nan(abc)", "nan(", "nan()", "-nan", "inf", "-Inf",
    "infinity", "INFINITY", "infin", "infinit", "infinityx", "0x10", "1_000", "1,5", "1.2.3",
    "abc", "--1", "+-1", "1e-38", "1.2e-38", "1.1e-38", "1.17549435e-38", "3.4028234e38",
    "3.4028235e38", "3.5e38", "3.4e+38", "1e38", "1e39", "0e39", "0e38", "0.01e-37", "1e-45",
    "123456789012345678901234567890", "18446744073709551615", "18446744073709551616",
    "0.12345678901234567890123", "1.00000000000000000000000001", "99999999999999999999e-20",
    "1e0000000000000000005", "4294967297e-9", "1e4294967297", "9.99999999999999999999e-6",
    "0.000099999999999999999", "16777217", "16777219", "33554435", "2.5e-1", "7e-07",
]

_ALPHABET = "0123456789" * 3 + ".eE+-fF nNaAiI"


def make_probes(n: int, seed: int) -> list[str]:
    """Fixed tricky strings, then ``n`` random ones: float reprs in odd spellings and noise."""
    rng = np.random.default_rng(seed)
    probes = list(FIXED_PROBES)
    for _ in range(n):
        kind = int(rng.integers(6))
        x = float(10 ** rng.uniform(-40, 39)) if kind == 0 else float(10 ** rng.uniform(-10, 10))
        if kind <= 1:
            probes.append(repr(x))
        elif kind == 2:
            digits, e = int(rng.integers(1, 25)), "eE"[int(rng.integers(2))]
            probes.append(f"{x:.{digits}e}".replace("e", e))
        elif kind == 3:
            probes.append(f"{x:.{int(rng.integers(1, 30))}f}")
        elif kind == 4:
            text = repr(_float_1_10(rng) if rng.random() < 0.5 else _float_tiny(rng))
            prefix = ["", "+", "-", " ", "  "][int(rng.integers(5))]
            suffix = ["", "", "f", "F", " ", "x"][int(rng.integers(6))]
            probes.append(prefix + text.lstrip("0") + suffix)
        else:
            length = int(rng.integers(0, 12))
            picks = rng.integers(0, len(_ALPHABET), length)
            probes.append("".join(_ALPHABET[int(i)] for i in picks))
    return probes
