"""Which storage each call returns (SPEC B §3): what MXNet 1.9.1's storage inference gives."""
from __future__ import annotations

import numpy as np
import pytest

import adamop
from adamop import RowSparseArray


def _inputs(shape=(4, 3)):
    rng = np.random.default_rng(1)
    w = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    return w, g, np.zeros(shape, np.float32), np.zeros(shape, np.float32)


def test_fallback_with_new_output_returns_dense(backend):
    # MXNet: a row_sparse weight with a dense grad falls back, and a new output is 'default'.
    w, g, m, v = _inputs()
    result = adamop.adam_update(RowSparseArray.from_dense(w, all_rows=True), g, m, v, lr=0.1,
                                backend=backend)
    assert isinstance(result, np.ndarray)


@pytest.mark.parametrize("lazy", [True, False])
def test_row_sparse_update_with_new_output_keeps_row_sparse(backend, lazy):
    # MXNet requires out=weight here; adamop also allows a new output, in the weight's storage.
    w, g, m, v = _inputs()
    weight = RowSparseArray.from_dense(w, all_rows=True)
    grad = RowSparseArray(g[[1, 3]], np.array([1, 3]), w.shape)
    result = adamop.adam_update(weight, grad, m, v, lr=0.1, lazy_update=lazy, backend=backend)
    assert isinstance(result, RowSparseArray) and result.stores_all_rows()
    assert np.array_equal(weight.todense(), w)   # the weight itself is left alone


def test_empty_row_sparse_states_are_stored_back_with_every_row(backend):
    w, g, _, _ = _inputs()
    def empty():
        return RowSparseArray(np.zeros((0, 3), np.float32), np.zeros(0, np.int64), w.shape)

    weight, mean, var = RowSparseArray.from_dense(w, all_rows=True), empty(), empty()
    grad = RowSparseArray(g[[2]], np.array([2]), w.shape)
    adamop.adam_update(weight, grad, mean, var, lr=0.1, out=weight, backend=backend)
    assert mean.stores_all_rows() and var.stores_all_rows()
    assert mean.todense()[2].any() and not mean.todense()[[0, 1, 3]].any()


def test_torch_in_place_update_bumps_autograd_version(backend):
    torch = pytest.importorskip("torch")
    w = torch.nn.Parameter(torch.ones(5))
    g, m, v = torch.ones(5), torch.zeros(5), torch.zeros(5)
    before = (w._version, m._version, v._version)
    adamop.adam_update(w, g, m, v, lr=0.1, out=w, backend=backend)
    after = (w._version, m._version, v._version)
    assert all(a > b for a, b in zip(after, before))
    loss = (w * w).sum()
    adamop.adam_update(w, g, m, v, lr=0.1, out=w, backend=backend)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()   # autograd sees the weight it saved has changed, as with torch.optim


@pytest.mark.parametrize("shared", ["mean", "var", "out", "mean-view"])
def test_batch_refuses_state_shared_by_two_parameters(backend, shared):
    # In a parallel batch the two updates would race on the shared array.
    ws = [np.ones(4, np.float32) for _ in range(3)]
    gs = [np.ones(4, np.float32) for _ in range(3)]
    ms = [np.zeros(4, np.float32) for _ in range(3)]
    vs = [np.zeros(4, np.float32) for _ in range(3)]
    outs = [np.empty(4, np.float32) for _ in range(3)]
    if shared == "mean":
        ms[2] = ms[0]
    elif shared == "var":
        vs[1] = vs[0]
    elif shared == "out":
        outs[2] = outs[1]
    else:
        base = np.zeros(6, np.float32)
        ms[0], ms[1] = base[:4], base[2:]
    snapshot = [a.tobytes() for a in ws + gs + ms + vs]
    with pytest.raises(ValueError, match=r"share memory that one of them writes"):
        adamop.adam_update_multi(ws, gs, ms, vs, lr=0.1, out=outs, backend=backend)
    assert [a.tobytes() for a in ws + gs + ms + vs] == snapshot


def test_batch_allows_a_grad_shared_by_two_parameters(backend):
    g = np.ones(4, np.float32)
    ws = [np.ones(4, np.float32) for _ in range(2)]
    ms = [np.zeros(4, np.float32) for _ in range(2)]
    vs = [np.zeros(4, np.float32) for _ in range(2)]
    adamop.adam_update_multi(ws, [g, g], ms, vs, lr=0.1, out=ws, backend=backend)
    assert np.array_equal(ws[0], ws[1])


def test_address_description_agrees_with_numpy_views():
    """The overlap checks of device tensors use arrays that only describe addresses; built from
    CPU tensors, they must give every overlap answer that the real NumPy views give."""
    torch = pytest.importorskip("torch")
    from adamop import _arrays

    base = torch.zeros(6, 10)
    views = {"all": base, "row": base[1], "rows": base[2:4], "cols": base[:, 3:5],
             "step": base[:, ::3], "t": base.t(), "flat": base.reshape(-1)[7:19],
             "other": torch.zeros(6, 10), "empty": base[3:3], "half": base.to(torch.float16)}
    for a_name, a in views.items():
        da = _arrays.describe_addresses(a)
        assert da.shape == tuple(a.shape) and da.itemsize == a.element_size()
        for b_name, b in views.items():
            db, na, nb = _arrays.describe_addresses(b), a.numpy(), b.numpy()
            assert _arrays.overlap(da, db) == _arrays.overlap(na, nb), (a_name, b_name)
            if a.numel() and b.numel():   # an empty tensor touches nothing: no address kept
                assert _arrays.same_view(da, db) == _arrays.same_view(na, nb), (a_name, b_name)
            if a.numel():
                assert _arrays.byte_bounds(da) == _arrays.byte_bounds(na)
