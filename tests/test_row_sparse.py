"""``RowSparseArray`` and ``adamop.sparse.row_sparse_array``: canonical form, conversions, and
the ``nn.Embedding(sparse=True)`` training step end to end. Expected values are written out by
hand (or are torch's own ``to_dense()``), never computed by the class under test."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from adamop.bitwise import assert_bitexact
from conftest import DATA

import adamop
from adamop import RowSparseArray
from adamop.sparse import row_sparse_array

D = np.array([[1.0, 1.5], [2.0, 2.5], [3.0, 3.5]], np.float32)


def test_unsorted_indices_are_sorted_with_their_rows():
    a = RowSparseArray(D, np.array([5, 0, 2]), shape=(6, 2))
    np.testing.assert_array_equal(a.indices, [0, 2, 5])
    np.testing.assert_array_equal(a.data, [[2.0, 2.5], [3.0, 3.5], [1.0, 1.5]])
    assert a.indices.dtype == np.int64 and a.is_coalesced() and a.duplicates == ()


def test_properties():
    a = RowSparseArray(D, [1, 3, 4], shape=(6, 2))
    assert a.shape == (6, 2) and a.dtype == np.float32 and a.nnz == 3
    assert a.stype == "row_sparse" and a.library == "numpy" and a.device == "cpu"
    assert np.shares_memory(a.data, D)   # already canonical: the rows are not copied
    assert not a.stores_all_rows()
    np.testing.assert_array_equal(a.todense(), [[0, 0], [1, 1.5], [0, 0], [2, 2.5], [3, 3.5],
                                                [0, 0]])
    assert a.todense().dtype == np.float32


def test_duplicates_flagged_and_coalesced():
    a = RowSparseArray(D, [4, 1, 4], shape=(5, 2))
    assert a.duplicates == (4,) and not a.is_coalesced() and not a.stores_all_rows()
    c = a.coalesce()
    assert c.is_coalesced() and c.duplicates == ()
    np.testing.assert_array_equal(c.indices, [1, 4])
    np.testing.assert_array_equal(c.data, [[2.0, 2.5], [4.0, 5.0]])
    np.testing.assert_array_equal(a.todense()[4], [4.0, 5.0])   # todense sums them too
    assert c.coalesce() is c


def test_empty_and_all_rows():
    e = RowSparseArray(np.zeros((0, 3), np.float64), np.zeros(0, np.int64), shape=(4, 3))
    assert e.nnz == 0 and e.dtype == np.float64
    np.testing.assert_array_equal(e.todense(), np.zeros((4, 3)))
    full = RowSparseArray(np.ones((4, 3)), [3, 2, 1, 0], shape=(4, 3))
    assert full.stores_all_rows()


def test_one_dimensional():
    a = RowSparseArray(np.array([7.0, 9.0]), [3, 0], shape=(5,))
    np.testing.assert_array_equal(a.todense(), [9.0, 0, 0, 7.0, 0])


def test_from_dense():
    x = np.array([[0, 0], [1, 0], [0, 0], [0, -2]], np.float32)
    a = RowSparseArray.from_dense(x)
    np.testing.assert_array_equal(a.indices, [1, 3])
    np.testing.assert_array_equal(a.data, [[1, 0], [0, -2]])
    full = RowSparseArray.from_dense(x, all_rows=True)
    np.testing.assert_array_equal(full.indices, [0, 1, 2, 3])
    assert full.stores_all_rows()
    np.testing.assert_array_equal(full.todense(), x)
    t = RowSparseArray.from_dense(torch.from_numpy(x))
    assert t.library == "torch"
    assert t.indices.tolist() == [1, 3]


def test_row_sparse_array_constructor():
    a = row_sparse_array((D, [2, 0, 7]), shape=(9, 2))
    assert a.shape == (9, 2)
    np.testing.assert_array_equal(a.indices, [0, 2, 7])
    inferred = row_sparse_array(([[1.0, 2.0]], [3]))          # MXNet infers max(index) + 1
    assert inferred.shape == (4, 2) and inferred.dtype == np.float32
    cast = row_sparse_array((D, [0, 1, 2]), shape=(3, 2), dtype=np.float16)
    assert cast.dtype == np.float16
    dense = row_sparse_array(np.array([[0.0, 0.0], [5.0, 0.0]]))
    assert dense.indices.tolist() == [1]
    copied = row_sparse_array(a)
    assert copied is not a and copied.data is not a.data
    np.testing.assert_array_equal(copied.todense(), a.todense())
    with pytest.raises(ValueError, match="shape is required"):
        row_sparse_array((np.zeros((0, 2)), []))
    with pytest.raises(TypeError, match=r"row_sparse_array: expected \(data, indices\)"):
        row_sparse_array("abc")


def test_repr_is_readable():
    r = repr(RowSparseArray(D, [4, 1, 4], shape=(5, 2)))
    assert r.startswith("RowSparseArray(shape=(5, 2), dtype=float32, nnz=3, indices=[1, 4, 4]")
    assert "duplicates=[4]" in r and "library=numpy" in r
    long = repr(RowSparseArray(np.ones((100, 1)), np.arange(100), shape=(100, 1)))
    assert "..." in long and len(long) < 200
    t = repr(RowSparseArray(torch.ones(1, 2, dtype=torch.float16), torch.tensor([0]), (3, 2)))
    assert "dtype=float16" in t and "library=torch" in t


# ---- torch -----------------------------------------------------------------------------------
def test_torch_backed():
    a = RowSparseArray(torch.from_numpy(D), torch.tensor([5, 0, 2]), shape=(6, 2))
    assert a.library == "torch" and a.indices.dtype == torch.int64
    assert a.indices.tolist() == [0, 2, 5]
    assert a.data.tolist() == [[2.0, 2.5], [3.0, 3.5], [1.0, 1.5]]
    assert isinstance(a.todense(), torch.Tensor)
    dup = RowSparseArray(torch.ones(3, 2), torch.tensor([1, 1, 0]), shape=(2, 2))
    assert dup.duplicates == (1,)
    assert dup.coalesce().data.tolist() == [[1.0, 1.0], [2.0, 2.0]]


def test_to_torch_and_back():
    a = RowSparseArray(D, [5, 0, 2], shape=(6, 2))
    t = a.to_torch()
    assert t.layout == torch.sparse_coo and t.is_coalesced() and t.sparse_dim() == 1
    np.testing.assert_array_equal(t.to_dense().numpy(), a.todense())
    b = RowSparseArray.from_torch(t)
    assert b.indices.tolist() == [0, 2, 5]
    np.testing.assert_array_equal(b.todense().numpy(), a.todense())


def _embedding_grad(ids: list[int], num: int = 10, dim: int = 4) -> torch.nn.Embedding:
    torch.manual_seed(0)
    emb = torch.nn.Embedding(num, dim, sparse=True)
    ids_t = torch.tensor(ids)
    weights = torch.arange(1, len(ids) + 1, dtype=torch.float32).reshape(-1, 1)
    (emb(ids_t) * weights).sum().backward()
    return emb


def test_from_torch_embedding_grad_with_repeated_ids():
    emb = _embedding_grad([3, 1, 3, 7, 3])
    grad = emb.weight.grad
    assert grad.layout == torch.sparse_coo and not grad.is_coalesced()
    assert grad._indices().shape[1] == 5         # torch keeps one entry per lookup
    a = RowSparseArray.from_torch(grad)
    assert a.is_coalesced() and a.indices.tolist() == [1, 3, 7]
    assert torch.equal(a.todense(), grad.to_dense())
    assert a.data[1].tolist() == [9.0] * 4       # row 3 looked up with weights 1 + 3 + 5


def test_from_torch_sparse_dim_2():
    dense = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [2.0, 0.0, 3.0]])
    coo = dense.to_sparse()                      # sparse_dim=2: one entry per element
    assert coo.sparse_dim() == 2
    a = RowSparseArray.from_torch(coo)
    assert a.indices.tolist() == [0, 2]
    assert torch.equal(a.todense(), dense)
    # and uncoalesced with duplicate elements
    dup = torch.sparse_coo_tensor(torch.tensor([[2, 0, 2], [1, 1, 1]]), torch.tensor([1.0, 2, 4]),
                                  (3, 3))
    assert torch.equal(RowSparseArray.from_torch(dup).todense(), dup.to_dense())


def test_from_torch_coalesced_on_a_device_reads_nothing_back(monkeypatch):
    """Off the CPU, a coalesced COO grad is taken as torch keeps it: no value is read back to the
    host, so a CUDA update needs no synchronisation (``tests/test_gpu.py`` checks that on a GPU).
    Here on the meta device, with every way of reading a tensor's value made to fail."""
    rows = torch.empty((1, 3), dtype=torch.int64, device="meta")    # shapes only, no values
    coo = torch.sparse_coo_tensor(rows, torch.empty((3, 4), device="meta"), (6, 4),
                                  is_coalesced=True)
    assert coo.is_coalesced() and coo._nnz() == 3

    def readback(*args, **kwargs):
        raise AssertionError("a tensor value was read back to the host")
    for name in ("__bool__", "__int__", "__index__", "__float__", "item", "tolist", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, readback)
    a = RowSparseArray.from_torch(coo)
    monkeypatch.undo()
    assert a.is_coalesced() and a.shape == (6, 4) and a.device == "meta" and a.nnz == 3


def test_from_torch_coalesced_on_the_cpu_is_checked():
    """In host memory the indices are checked even when torch calls them coalesced (torch itself
    does not check unless asked): out-of-range rows are refused, good ones give torch's rows."""
    emb = _embedding_grad([3, 1, 3, 7, 3])
    coo = emb.weight.grad.coalesce()
    a = RowSparseArray.from_torch(coo)
    assert torch.equal(a.indices, coo.indices()[0]) and torch.equal(a.data, coo.values())
    bad = torch.sparse_coo_tensor(torch.tensor([[1, 12]]), torch.ones(2, 4), (10, 4),
                                  is_coalesced=True, check_invariants=False)
    with pytest.raises(ValueError, match="row index 12 is out of range"):
        RowSparseArray.from_torch(bad)


def test_from_torch_rejects_other_layouts():
    with pytest.raises(TypeError, match=r"sparse_csr tensors are not supported"):
        RowSparseArray.from_torch(torch.eye(3).to_sparse_csr())
    with pytest.raises(TypeError, match=r"from_torch: expected a torch.Tensor"):
        RowSparseArray.from_torch(np.eye(3))


@pytest.mark.parametrize("lazy", [True, False])
def test_embedding_training_step(lazy, backend):
    """nn.Embedding(sparse=True): updating emb.weight in place from its COO grad equals the same
    update on a NumPy copy with a RowSparseArray built from the coalesced grad."""
    emb = _embedding_grad([3, 1, 3, 7, 3, 8])
    before = emb.weight.detach().clone()
    m, v = torch.zeros_like(before), torch.full_like(before, 0.25)
    ptr = emb.weight.data.data_ptr()
    kw = dict(lr=0.05, wd=0.01, rescale_grad=0.5, lazy_update=lazy)
    out = adamop.adam_update(emb.weight.data, emb.weight.grad, m, v, out=emb.weight.data,
                             backend=backend, **kw)
    assert out.data_ptr() == ptr == emb.weight.data_ptr()

    grad = emb.weight.grad.coalesce()
    g_np = RowSparseArray(grad.values().numpy().copy(), grad.indices()[0].numpy().copy(),
                          tuple(grad.shape))
    w_np, m_np = before.numpy().copy(), np.zeros(before.shape, np.float32)
    v_np = np.full(before.shape, 0.25, np.float32)
    adamop.adam_update(w_np, g_np, m_np, v_np, out=w_np, backend=backend, **kw)
    assert_bitexact(emb.weight.detach(), w_np, "weight")
    assert_bitexact(m, m_np, "mean")
    assert_bitexact(v, v_np, "var")

    touched = [1, 3, 7, 8]
    untouched = [r for r in range(10) if r not in touched]
    changed = (emb.weight.detach() != before).any(dim=1)
    assert changed[touched].all()
    if lazy:   # only the looked-up rows move; the others keep their exact bits
        assert_bitexact(emb.weight.detach()[untouched], before[untouched], "untouched rows")
        assert not m[untouched].any()
    else:      # std: every row's states decay (v = beta2 * 0.25)
        assert (v[untouched] != 0.25).all()


# ---- golden: torch-backed and numpy RowSparseArray grads give MXNet's numbers ---------------
def _golden_sparse_case(kind: str):
    with np.load(DATA / "golden_dev.npz") as z:
        meta = json.loads(str(z["meta_json"]))
        case = next(c for c in meta["cases"] if c["group"] == "sparse" and c["path"] == kind
                    and c["dtype"] == "float32" and c["stype"]["weight"] == "default"
                    and c["extra"].get("indices_sorted") is False)
        return case, {k.split("__", 1)[1]: z[k] for k in z.files if k.startswith(case["id"] + "__")}


@pytest.mark.parametrize("kind", ["lazy", "std"])
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_unsorted_golden_grad(kind, lib, backend):
    """MXNet's unsorted-index case: adamop sorts on construction and gives MXNet's result for the
    sorted input (the ``_sorted`` outputs where the order matters)."""
    case, a = _golden_sparse_case(kind)
    conv = (lambda x: torch.from_numpy(x.copy())) if lib == "torch" else np.copy
    w, m, v = (conv(a[k]) for k in ("weight", "mean", "var"))
    g = RowSparseArray(conv(a["grad_data"]), conv(a["grad_indices"]), tuple(case["shape"]))
    assert g.library == lib
    adamop.adam_update(w, g, m, v, out=w, backend=backend, **case["kwargs"])
    for name, got in (("weight", w), ("mean", m), ("var", v)):
        expected = a.get(f"{name}_out_sorted", a[f"{name}_out"])
        assert_bitexact(got, expected, f"{case['id']} {name}")


# ---- the in-place embedding step ---------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("lazy", [True, False])
@pytest.mark.parametrize("clip", [-1.0, 0.5])
def test_in_place_row_sparse_step_matches_reference(backend, dtype, lazy, clip):
    """``adam_update(w, rsp_grad, m, v, out=w)`` gives the reference's bits, on arrays that own
    their memory and with a view among the inputs alike."""
    from adamop import AdamParams, reference
    from adamop.bitwise import assert_bitexact

    rng = np.random.default_rng(7)
    kw = dict(lr=0.01, wd=0.05, rescale_grad=0.7, clip_gradient=clip, lazy_update=lazy)
    shape, rows = (50, 6), np.array([0, 3, 4, 17, 49])
    params = AdamParams.from_kwargs(kw)
    rule = reference.LAZY if lazy else reference.STD

    def inputs():
        w = rng.standard_normal(shape).astype(dtype)
        m = (rng.standard_normal(shape) * 0.1).astype(dtype)
        v = (rng.random(shape) * 0.1).astype(dtype)
        return w, RowSparseArray(rng.standard_normal((5, 6)).astype(dtype), rows, shape), m, v
    for framed in (False, True):
        w, g, m, v = inputs()
        if framed:                                      # m as a view into a larger array
            frame = np.zeros((shape[0] + 2, shape[1]), dtype)
            frame[1:-1] = m
            m = frame[1:-1]
        want = [a.copy() for a in (w, m, v)]
        reference.adam_rows(want[0], g.data, g.indices, want[1], want[2], want[0],
                            params.scalars(np.dtype(dtype)), rule)
        assert adamop.adam_update(w, g, m, v, out=w, backend=backend, **kw) is w
        for got, exp, name in zip((w, m, v), want, ("weight", "mean", "var")):
            assert_bitexact(got, exp, f"{name} (m a view: {framed})")
