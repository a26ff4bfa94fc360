"""Every golden case recorded from MXNet 1.9.1 (``tests/data/golden_dev.npz``), bit for bit,
through the public API, on every CPU backend. The comparison rules are those of
``tests/data/GOLDEN_README.md``; the expected values are MXNet's, never adamop's."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

import adamop
from adamop import RowSparseArray, golden
from adamop.bitwise import assert_bitexact
from adamop.params import dmlc_parse_float32

GOLDEN = Path(__file__).resolve().parent / "data" / "golden_dev.npz"


@lru_cache(maxsize=1)
def _load() -> tuple[dict, dict[str, np.ndarray]]:
    return golden.load(GOLDEN)


META, _ = _load()
CASES = [c for c in META["cases"]
         if "csr" not in c["stype"].values() and c["group"] != "optimizer"]
OPTIMIZER = [c for c in META["cases"] if c["group"] == "optimizer"]


def _case_id(c: dict) -> str:
    return f"{c['id']}-{c['group']}-{c['dtype']}"


def _case(c: dict, device: str = "cpu") -> golden.Case:
    return golden.Case(c, _load()[1], device)


def _inputs(c: dict) -> tuple:
    """weight, grad, mean, var exactly as the generator handed them to MXNet."""
    return _case(c).inputs()


def _expected(c: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MXNet's outputs; for unsorted grad indices, its outputs on the sorted input (SPEC A.5)."""
    return _case(c).expected()


def _empty_rsp(shape: tuple, dtype: np.dtype) -> RowSparseArray:
    """A row_sparse array with no stored rows (what ``Optimizer.create_state`` makes)."""
    return RowSparseArray(np.zeros((0,) + shape[1:], dtype), np.zeros(0, np.int64), shape)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_golden_case(case: dict, backend: str) -> None:
    weight, grad, mean, var = _inputs(case)
    out = weight if case["out_is_weight"] else None
    with np.errstate(all="ignore"):
        result = adamop.adam_update(weight, grad, mean, var, out=out, backend=backend,
                                    **case["kwargs"])
    if out is not None:
        assert result is out
    w_exp, m_exp, v_exp = _expected(case)
    what = f"{case['id']} ({case['desc']}, {case['stype']}, {case['kwargs']})"
    assert_bitexact(result, w_exp, f"{what} weight_out")
    assert_bitexact(mean, m_exp, f"{what} mean_out")
    assert_bitexact(var, v_exp, f"{what} var_out")


# A lazy update with an empty grad: MXNet is a no-op with out=weight (recorded), and with
# out=None returns uninitialised memory; adamop returns the unchanged weight (SPEC A.5).
LAZY_EMPTY = [c for c in CASES if c["path"] == "lazy" and _case(c).has("grad_indices")
              and _case(c).array("grad_indices").size == 0]


def test_lazy_empty_cases_exist() -> None:
    assert len(LAZY_EMPTY) >= 10


@pytest.mark.parametrize("case", LAZY_EMPTY, ids=_case_id)
def test_lazy_empty_grad_out_none(case: dict, backend: str) -> None:
    weight, grad, mean, var = _inputs(case)
    before = weight.todense() if isinstance(weight, RowSparseArray) else weight.copy()
    result = adamop.adam_update(weight, grad, mean, var, out=None, backend=backend,
                                **case["kwargs"])
    assert result is not weight
    w_exp, m_exp, v_exp = _expected(case)   # MXNet's no-op, recorded with out=weight
    assert_bitexact(result, w_exp, f"{case['id']} returned weight")
    assert_bitexact(weight, before, f"{case['id']} weight must stay unchanged")
    assert_bitexact(mean, m_exp, f"{case['id']} mean_out")
    assert_bitexact(var, v_exp, f"{case['id']} var_out")


# ---- mx.optimizer.Adam runs -----------------------------------------------------------------
@pytest.mark.parametrize("case", OPTIMIZER, ids=_case_id)
def test_golden_optimizer_run(case: dict, backend: str) -> None:
    """Replay the recorded adam_update calls of an ``mx.optimizer.Adam`` run step by step; a
    multi_precision run updates the float32 master copy and casts it back every step."""
    c = _case(case)
    weight, mean, var = c.optimizer_start()
    for grad, kwargs in c.optimizer_steps():
        with np.errstate(all="ignore"):
            adamop.adam_update(weight, grad, mean, var, out=weight, backend=backend, **kwargs)
    dense = weight.todense() if isinstance(weight, RowSparseArray) else weight
    got = {"weight_out": dense.astype(np.float16) if c.multi_precision else dense,
           "mean_out": mean, "var_out": var, "weight32_out": dense}
    for name, want in c.optimizer_expected():
        assert_bitexact(got[name], want, f"{case['id']} {name}")


@pytest.mark.parametrize("case", OPTIMIZER, ids=_case_id)
def test_bias_corrected_lr_matches_mxnet_optimizer(case: dict) -> None:
    """The lr MXNet's optimizer passed at each step, as a Python double and as its string."""
    okw = case["extra"]["optimizer_kwargs"]
    assert not {"lr_scheduler", "set_lr_mult"} & okw.keys()
    lr = float(okw.get("learning_rate", 0.001))
    b1, b2 = float(okw.get("beta1", 0.9)), float(okw.get("beta2", 0.999))
    recorded = _case(case).array("lr_t")
    for t, step in enumerate(case["extra"]["steps"], start=1):
        got = adamop.bias_corrected_lr(lr, b1, b2, t)
        assert got == recorded[t - 1] and str(got) == step["lr"], (t, got, step["lr"])


# ---- parameter parsing and refusals ---------------------------------------------------------
@pytest.mark.parametrize("probe", META["param_parse"], ids=lambda p: p["str"])
def test_param_parse_probe(probe: dict) -> None:
    got = dmlc_parse_float32("lr", probe["str"])
    assert int(np.float32(got).view(np.uint32)) == probe["f32_bits"], \
        f"{probe['str']!r}: got {got!r}, MXNet parsed {probe['f32']!r}"


def test_param_parse_probe_count() -> None:
    assert len(META["param_parse"]) == 59


def _a(shape=(2, 3), dtype="float32") -> list[np.ndarray]:
    return [np.full(shape, 0.5, dtype) for _ in range(4)]


def _rsp_missing_rows() -> tuple:
    w = RowSparseArray(np.ones((1, 3), np.float32), [0], (2, 3))
    g = RowSparseArray(np.ones((1, 3), np.float32), [1], (2, 3))
    return w, g, _empty_rsp((2, 3), np.float32), _empty_rsp((2, 3), np.float32)


def _mixed_states() -> tuple:
    w, _, m, v = _a()
    g = RowSparseArray(np.ones((1, 3), np.float32), [1], (2, 3))
    return w, g, m, RowSparseArray.from_dense(v)


# Recorded MXNet errors (by their description in the golden file) that adamop refuses as well.
REFUSALS = {
    "lr missing": lambda: adamop.adam_update(*_a()),
    "lr='abc'": lambda: adamop.adam_update(*_a(), lr="abc"),
    "lr=1e40 (out of float32 range)": lambda: adamop.adam_update(*_a(), lr=1e40),
    "lr=1e-39 (exponent > 38 rejected)": lambda: adamop.adam_update(*_a(), lr=1e-39),
    "lr='0.5 ' (trailing characters rejected)": lambda: adamop.adam_update(*_a(), lr="0.5 "),
    "unknown kwarg": lambda: adamop.adam_update(*_a(), lr=0.1, foo=1),
    "lazy_update='maybe'": lambda: adamop.adam_update(*_a(), lr=0.1, lazy_update="maybe"),
    "grad shape mismatch": lambda: adamop.adam_update(
        *(_a()[:1] + [np.ones((3, 2), np.float32)] + _a()[2:]), lr=0.1),
    "mean dtype float64 vs float32": lambda: adamop.adam_update(
        *(_a()[:2] + [np.ones((2, 3), np.float64)] + _a()[3:]), lr=0.1),
    "int32 inputs": lambda: adamop.adam_update(*_a(dtype="int32"), lr=0.1),
    "uint8 inputs": lambda: adamop.adam_update(*_a(dtype="uint8"), lr=0.1),
    "3 inputs": lambda: adamop.adam_update(*_a()[:3], lr=0.1),
    "mean default / var row_sparse": lambda: adamop.adam_update(*_mixed_states(), lr=0.1),
    "row_sparse weight with missing rows": lambda: adamop.adam_update(*_rsp_missing_rows(),
                                                                     lr=0.1),
}


@pytest.mark.parametrize("desc", sorted(REFUSALS))
def test_refuses_what_mxnet_refuses(desc: str) -> None:
    recorded = {e["desc"]: e for e in META["errors"]}
    assert recorded[desc]["exception"] == "MXNetError", recorded[desc]
    with pytest.raises((TypeError, ValueError)):
        REFUSALS[desc]()
