"""``mp_adam_update``: MXNet's multi-precision step fused, bit for bit the three operations
``mx.optimizer.Adam(multi_precision=True)`` runs (grad to float32, ``adam_update`` on the float32
master copy, the master cast to float16), on every backend; and MXNet's recorded multi-precision
optimizer runs replayed through it."""
from __future__ import annotations

import numpy as np
import pytest

import adamop
from adamop import RowSparseArray, dispatch
from adamop.bitwise import assert_bitexact

KW = dict(lr=0.01, wd=0.02, rescale_grad=0.5, clip_gradient=0.3, beta1=0.8, epsilon=1e-4)


def _state(rng, shape, gdtype):
    w32 = rng.standard_normal(shape).astype(np.float32)
    return (w32.astype(np.float16), (rng.standard_normal(shape) * 3).astype(gdtype),
            (rng.standard_normal(shape) * 0.1).astype(np.float32),
            (rng.random(shape) * 0.01).astype(np.float32), w32)


def _three_ops(w16, g, m, v, w32, **kw):
    """MXNet's sequence, with adamop's reference backend: what the fused op must equal."""
    m, v, w32 = m.copy(), v.copy(), w32.copy()
    adamop.adam_update(w32, g.astype(np.float32), m, v, out=w32, backend="numpy", **kw)
    return w32.astype(np.float16), m, v, w32


def _on_torch(backend: str) -> bool:
    return next(s for s in dispatch.registry() if s.name == backend).array_library == "torch"


@pytest.mark.parametrize("gdtype", [np.float16, np.float32])
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (1025,), (6, 42, 13)])
@pytest.mark.parametrize("clip", [-1.0, 0.0, 0.3])
def test_equals_the_three_operations(backend, launch_mode, rng, gdtype, shape, clip):
    w16, g, m, v, w32 = _state(rng, shape, gdtype)
    kw = dict(KW, clip_gradient=clip)
    want = _three_ops(w16, g, m, v, w32, **kw)
    got = adamop.mp_adam_update(w16, g, m, v, w32, out=w16, backend=backend, **kw)
    assert got is w16
    for name, a, b in zip(("weight", "mean", "var", "weight32"), (w16, m, v, w32), want):
        assert_bitexact(a, b, f"{backend} {shape} {np.dtype(gdtype)} clip={clip}: {name}")


@pytest.mark.parametrize("layout", ["strided", "transposed", "out_new", "out_is_grad"])
def test_any_layout(backend, rng, layout):
    base = _state(rng, (40, 12), np.float16)
    if layout == "strided":
        w16, g, m, v, w32 = (a[:, ::2] for a in base)
    elif layout == "transposed":
        w16, g, m, v, w32 = (np.ascontiguousarray(a.T).T for a in base)
    else:
        w16, g, m, v, w32 = base
    want = _three_ops(w16, g, m, v, w32, **KW)
    out = {"out_new": np.empty_like(w16), "out_is_grad": g}.get(layout, w16)
    got = adamop.mp_adam_update(w16, g, m, v, w32, out=out, backend=backend, **KW)
    assert got is out
    for name, a, b in zip(("weight", "mean", "var", "weight32"), (out, m, v, w32), want):
        assert_bitexact(a, b, f"{backend} {layout}: {name}")


def test_many_tensors_in_one_call(backend, launch_mode, rng):
    n = 300
    states = [_state(rng, (int(rng.integers(0, 3000)),), (np.float16, np.float32)[i % 2])
              for i in range(n)]
    lrs = [float(x) for x in rng.uniform(1e-4, 1e-1, n)]
    want = [_three_ops(*st, **dict(KW, lr=lr)) for st, lr in zip(states, lrs)]
    cols = [list(c) for c in zip(*states)]
    adamop.mp_adam_update_multi(*cols, out=cols[0], backend=backend, **dict(KW, lr=lrs))
    for i in range(n):
        for name, k, b in zip(("weight", "mean", "var", "weight32"), (0, 2, 3, 4), want[i]):
            assert_bitexact(cols[k][i], b, f"{backend} tensor {i}: {name}")


def test_torch_tensors(backend, rng):
    torch = pytest.importorskip("torch")
    if _on_torch(backend):   # (the NumPy case above already runs it on torch tensors)
        pytest.skip("triton in its interpreter: covered through NumPy inputs")
    st = _state(rng, (33, 17), np.float16)
    want = _three_ops(*st, **KW)
    t = [torch.from_numpy(a.copy()) for a in st]
    versions = [x._version for x in t]
    adamop.mp_adam_update(*t, out=t[0], backend=backend, **KW)
    for name, k, b in zip(("weight", "mean", "var", "weight32"), (0, 2, 3, 4), want):
        assert_bitexact(t[k], b, f"torch {name}")
    assert [x._version > v for x, v in zip(t, versions)] == [True, False, True, True, True]


def test_mxnet_multi_precision_runs_replay_through_the_fused_op(backend):
    """MXNet's recorded float16 multi_precision runs (tests/data/golden_dev.npz): every step as
    one fused call on the float16 weight, its float32 master copy and states."""
    from test_golden import OPTIMIZER, _case
    runs = [c for c in OPTIMIZER if c["extra"]["multi_precision"]
            and c["extra"]["weight_stype"] == c["extra"]["grad_stype"] == "default"]
    assert runs, "the golden file has dense multi-precision runs"
    for case in runs:
        c = _case(case)
        w32, mean, var = c.optimizer_start()
        w16 = w32.astype(np.float16)
        for grad, kwargs in c.optimizer_steps():
            adamop.mp_adam_update(w16, grad.astype(np.float16), mean, var, w32, out=w16,
                                  backend=backend, **kwargs)
        got = {"weight_out": w16, "mean_out": mean, "var_out": var, "weight32_out": w32}
        for name, want in c.optimizer_expected():
            assert_bitexact(got[name], want, f"{case['id']} {name}")


def _inputs(**change):
    """Fresh valid inputs (weight, grad, mean, var, weight32), with some replaced."""
    arrays = dict(weight=np.zeros(4, np.float16), grad=np.zeros(4, np.float16),
                  mean=np.zeros(4, np.float32), var=np.zeros(4, np.float32),
                  weight32=np.zeros(4, np.float32))
    for name, make in change.items():
        arrays[name] = make(arrays)
    return list(arrays.values())


@pytest.mark.parametrize("args, exc, match", [
    (dict(weight32=lambda a: a["weight32"].astype(np.float16)), TypeError,
     r"weight32 has dtype float16; mp_adam_update takes float32 as its weight32"),
    (dict(weight=lambda a: a["weight"].astype(np.float32)), TypeError,
     r"weight has dtype float32; mp_adam_update takes float16 as its weight"),
    (dict(mean=lambda a: a["mean"].astype(np.float64)), TypeError, r"mean has dtype float64"),
    (dict(grad=lambda a: a["grad"].astype(np.float64)), TypeError, r"grad has dtype float64"),
    (dict(grad=lambda a: RowSparseArray(np.zeros((1,), np.float16), [0], (4,))), TypeError,
     r"grad has storage row_sparse; mp_adam_update updates dense arrays only"),
    (dict(var=lambda a: a["mean"]), ValueError, r"mean and var share memory"),
    (dict(weight32=lambda a: a["mean"]), ValueError, r"mean and weight32 share memory"),
], ids=["master-f16", "weight-f32", "mean-f64", "grad-f64", "rsp-grad", "mean-is-var",
        "master-is-mean"])
def test_errors(args, exc, match):
    inputs = _inputs(**args)
    before = [a.tobytes() if isinstance(a, np.ndarray) else None for a in inputs]
    with pytest.raises(exc, match=match):
        adamop.mp_adam_update(*inputs, lr=0.1, out=inputs[0])
    assert [a.tobytes() if isinstance(a, np.ndarray) else None for a in inputs] == before


def test_four_arrays_are_refused():
    with pytest.raises(TypeError, match=r"takes the arrays weight, grad, mean, var, weight32"):
        adamop.mp_adam_update(*_inputs()[:4], lr=0.1)
