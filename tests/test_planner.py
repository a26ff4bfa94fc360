"""The update plan: made once, re-run while the arrays keep their layout, refused (before anything
is written) when something changed that invalidates it; a repeated step does no Python work per
tensor; and the bulk path accepts exactly what the general validation accepts, with its result."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import adamop
from adamop import AdamParams, bulk, reference
from adamop.bitwise import assert_bitexact
from adamop.ops.adam import ADAM_UPDATE
from adamop.planner import Planner
from conftest import python_calls

torch = pytest.importorskip("torch")


def _lists(lib: str, n: int, size: int = 64, dtype=np.float32):
    rng = np.random.default_rng(n)
    made = [[rng.standard_normal(size).astype(dtype) for _ in range(n)] for _ in range(4)]
    made[3] = [np.abs(v) for v in made[3]]
    return made if lib == "numpy" else [[torch.from_numpy(a) for a in c] for c in made]


@pytest.mark.parametrize("lib", ["numpy", "torch"])
@pytest.mark.parametrize("lr", ["one lr", "per-tensor lr"])
def test_a_repeated_step_does_no_python_work_per_tensor(lib, lr):
    """The same number of Python calls for 2,000 tensors as for 20: every check of a repeated
    step is a C-level map or a vectorised comparison."""
    counts = {}
    for n in (20, 2000):
        lists = _lists(lib, n)
        lrs = 0.01 if lr == "one lr" else [0.001 * (1 + i % 7) for i in range(n)]

        def step():
            adamop.adam_update_multi(*lists, lr=lrs, out=lists[0])
        step()
        step()
        counts[n] = python_calls(step)
    assert counts[2000] <= counts[20] + 5, f"Python calls per step: {counts}"


def test_a_plan_is_kept_and_run_again():
    planner = Planner(ADAM_UPDATE)
    ws, gs, ms, vs = _lists("numpy", 30)
    p = AdamParams.from_kwargs({"lr": 0.01})
    planner.run([ws, gs, ms, vs, ws], p)
    [(_, kept)] = planner._kept.values()
    planner.run([ws, gs, ms, vs, ws], p)
    assert list(planner._kept.values())[0][1] is kept and len(planner._kept) == 1
    other = [list(c) for c in zip(*[_lists("numpy", 30)[k] for k in range(4)])]
    planner.run([*(list(c) for c in zip(*other)), list(zip(*other))[0]], p)
    assert len(planner._kept) == 2          # other arrays: a plan of their own


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_a_per_parameter_loop_finds_each_parameters_plan_again(lib, monkeypatch):
    """MXNet's updater called ``adam_update`` once per parameter: after the first pass over a
    model, every call runs its kept plan (no bulk read), and the results stay exact."""
    ws, gs, ms, vs = _lists(lib, 200)
    host = (lambda a: a) if lib == "numpy" else torch.Tensor.numpy   # views, no copies
    want = [tuple(host(a).copy() for a in arrays) for arrays in zip(ws, gs, ms, vs)]
    p = AdamParams.from_kwargs({"lr": 0.01})
    for _ in range(2):
        for w, g, m, v in want:
            reference.adam_dense(w, g, m, v, w, p.scalars(np.dtype(np.float32)), reference.DENSE)
    for w, g, m, v in zip(ws, gs, ms, vs):
        adamop.adam_update(w, g, m, v, lr=0.01, out=w)
    reads = []
    monkeypatch.setattr(bulk, "read", lambda *a: reads.append(a) or None)
    for w, g, m, v in zip(ws, gs, ms, vs):
        adamop.adam_update(w, g, m, v, lr=0.01, out=w)
    assert not reads, f"{len(reads)} of 200 calls planned again"
    for (w, m, v), (ew, _, em, ev) in zip(zip(ws, ms, vs), want):
        for got, exp in ((w, ew), (m, em), (v, ev)):
            assert_bitexact(host(got), exp, "per-parameter loop")


def _reshape_in_place(x):
    x.shape = (8, 8)


def _view_as_other_dtype(x):
    x.dtype = np.int32


def _make_read_only(x):
    x.flags.writeable = False


@pytest.mark.parametrize("change, exc, match", [
    (_reshape_in_place, ValueError, r"\[3\] mean has shape \(8, 8\) but \[3\] weight has shape"),
    (_view_as_other_dtype, TypeError, r"\[3\] mean has dtype int32"),
    (_make_read_only, ValueError, r"\[3\] mean is read-only"),
])
def test_a_kept_plan_is_refused_when_an_array_changed(change, exc, match):
    """A NumPy array changed in place between steps (its shape, dtype or flags) invalidates the
    plan: the step is validated again and refused before anything is written."""
    ws, gs, ms, vs = _lists("numpy", 10)
    adamop.adam_update_multi(ws, gs, ms, vs, lr=0.01, out=ws)
    change(ms[3])
    before = [x.tobytes() for c in (ws, gs, ms, vs) for x in c]
    with pytest.raises(exc, match=match):
        adamop.adam_update_multi(ws, gs, ms, vs, lr=0.01, out=ws)
    assert [x.tobytes() for c in (ws, gs, ms, vs) for x in c] == before


@pytest.mark.parametrize("change, exc, match", [
    (lambda t: t.resize_(8, 8), ValueError, r"shape"),
    (lambda t: setattr(t, "data", t.data.double()), TypeError, r"dtype float64"),
    (lambda t: setattr(t, "data", t.data.view(8, 8).t()), ValueError, r"shape"),
])
def test_a_kept_plan_is_refused_when_a_tensor_changed(change, exc, match):
    ws, gs, ms, vs = _lists("torch", 10)
    adamop.adam_update_multi(ws, gs, ms, vs, lr=0.01, out=ws)
    change(vs[4])
    before = [x.numpy().tobytes() for c in (ws, gs, ms) for x in c]
    with pytest.raises(exc, match=match):
        adamop.adam_update_multi(ws, gs, ms, vs, lr=0.01, out=ws)
    assert [x.numpy().tobytes() for c in (ws, gs, ms) for x in c] == before


def test_a_tensor_replaced_at_the_same_address_runs_on_the_new_one():
    """A kept plan holds no arrays: a later call with other tensors at the same addresses and
    layouts runs it, on those tensors, and bumps their autograd versions."""
    ws, gs, ms, vs = _lists("torch", 5)
    adamop.adam_update_multi(ws, gs, ms, vs, lr=0.01, out=ws)
    views = [[x.view(-1) for x in c] for c in (ws, gs, ms, vs)]   # new objects, same memory
    versions = [x._version for x in views[2]]
    expected = [x.numpy().copy() for x in views[0]]
    m2, v2 = ([x.numpy().copy() for x in c] for c in views[2:])
    s = AdamParams.from_kwargs({"lr": 0.01}).scalars(np.dtype(np.float32))
    for w, g, m, v in zip(expected, [x.numpy() for x in views[1]], m2, v2):
        reference.adam_dense(w, g, m, v, w, s, reference.DENSE)
    adamop.adam_update_multi(*views, lr=0.01, out=views[0])
    for got, want in zip(views[0], expected):
        assert_bitexact(got, want, "weight")
    assert [x._version for x in views[2]] > versions


# ---- the bulk path accepts what validation accepts, and no more ---------------------------------
LAYOUTS = ("c", "f", "strided", "reversed", "broadcast", "overlap_prev")


@st.composite
def batches(draw):
    """A batch of small dense updates, some of them odd (layouts, dtypes, aliasing)."""
    n = draw(st.integers(1, 5))
    cols = [[], [], [], [], []]
    base = np.zeros(4096, np.float32)
    offset = 0
    for _ in range(n):
        dtype = draw(st.sampled_from([np.float32, np.float64, np.float16, np.int32]))
        for k in range(4):
            layout = draw(st.sampled_from(LAYOUTS)) if draw(st.booleans()) else "c"
            a = np.ones((3, 4), dtype)
            if layout == "f":
                a = np.asfortranarray(a)
            elif layout == "strided":
                a = np.ones((3, 8), dtype)[:, ::2]
            elif layout == "reversed":
                a = a[::-1]
            elif layout == "broadcast":
                a = np.lib.stride_tricks.as_strided(np.ones(4, dtype), (3, 4), (0, a.itemsize))
            elif layout == "overlap_prev":   # a window of a shared buffer, maybe overlapping
                a = base[offset:offset + 12].reshape(3, 4)
                offset += draw(st.sampled_from([6, 12]))
            cols[k].append(a)
        cols[4].append(draw(st.sampled_from([cols[0][-1], cols[2][-1], None])))
    return cols


@settings(max_examples=200)
@given(batches())
def test_bulk_accepts_only_what_validation_accepts(cols):
    """Every update the bulk rules accept, the general validation accepts too, as a dense update
    (its refusal or acceptance of the others is its own); so the fast path never lets through
    what the slow one refuses."""
    from adamop import validate
    outs = [o if o is not None else np.empty_like(w) for o, w in zip(cols[4], cols[0])]
    columns = [*cols[:4], outs]
    found = bulk.read(ADAM_UPDATE, columns, bulk.fingerprint(columns))
    p = AdamParams.from_kwargs({"lr": 0.01})
    for t in np.flatnonzero(found.ok).tolist():
        u = validate.validate(ADAM_UPDATE, t, [c[t] for c in cols[:4]], p, outs[t])
        assert u.path == "dense"
