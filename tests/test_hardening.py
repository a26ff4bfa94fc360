"""Regressions from hostile inputs (issue 14): a validated RowSparseArray stays valid, COO tensors
and shapes give clear errors, and symbol text round-trips through adamop and MXNet without loss.

Expected values are written out by hand or come from MXNet 1.9.1 (noted ``# MXNet``: printed by
it, or checked live through ``tests/mxnet_side/json_text.py``), never from adamop itself.
"""
from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import torch
from adamop.bitwise import assert_bitexact
from mxnet_oracle import run_mxnet

import adamop
from adamop import RowSparseArray, sym
from adamop.sym.graph import Entry, Node
from adamop.sym.symbol import Symbol

ROWS = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)


def _indices(lib: str, values: list[int]):
    return np.array(values) if lib == "numpy" else torch.tensor(values)


def _data(lib: str):
    return ROWS.copy() if lib == "numpy" else torch.from_numpy(ROWS.copy())


# ---- a RowSparseArray owns what it validated ---------------------------------------------------
@pytest.mark.parametrize("bad", [6, -1, 1], ids=["out_of_range", "negative", "duplicate"])
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_changing_the_callers_indices_cannot_reach_the_array(lib, bad, backend):
    given = _indices(lib, [1, 3])
    g = RowSparseArray(_data(lib), given, shape=(6, 3))
    given[1] = bad                                 # after validation: must not reach g
    assert g.indices.tolist() == [1, 3] and g.is_coalesced()

    def step(grad):
        w = np.arange(18, dtype=np.float32).reshape(6, 3)
        m, v = np.zeros_like(w), np.zeros_like(w)
        if lib == "torch":
            w, m, v = (torch.from_numpy(a) for a in (w, m, v))
        adamop.adam_update(w, grad, m, v, lr=0.1, out=w, backend=backend)
        return w, m, v
    # the same update as with an array built from rows [1, 3] that nobody changed
    fresh = RowSparseArray(_data(lib), _indices(lib, [1, 3]), shape=(6, 3))
    for got, want in zip(step(g), step(fresh)):
        assert_bitexact(got, want)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_indices_handed_out_cannot_change_the_array(lib):
    g = RowSparseArray(_data(lib), _indices(lib, [3, 1]), shape=(6, 3))
    handed = g.indices
    if lib == "numpy":
        with pytest.raises(ValueError, match="read-only"):
            handed[0] = 5
        handed.shape = (2, 1)                      # a view: its shape is its own
    else:
        handed[0] = 5
        handed.resize_(1)
    assert g.indices.tolist() == [1, 3] and g.indices.shape == (2,)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_changing_the_callers_data_object_cannot_reach_the_array(lib):
    """The rows' memory is shared (no copy), but their shape is the array's own: a caller that
    reshapes or re-points its object cannot make the array's data disagree with its indices."""
    data = _data(lib)
    g = RowSparseArray(data, _indices(lib, [1, 3]), shape=(6, 3))
    if lib == "numpy":
        assert np.shares_memory(g.data, data)
        data.shape = (3, 2)
    else:
        assert g.data.data_ptr() == data.data_ptr()
        data.set_(torch.empty(0))                  # now points at no memory at all
    assert tuple(g.data.shape) == (2, 3)
    assert g.todense()[3].tolist() == [4.0, 5.0, 6.0]
    handed = g.data                                # a view handed out: reshaping it is harmless
    if lib == "numpy":
        handed.shape = (6,)
    else:
        handed.resize_(1)
    assert tuple(g.data.shape) == (2, 3)


def test_from_torch_and_to_torch_keep_their_own_indices():
    coo = torch.sparse_coo_tensor(torch.tensor([[4, 1]]), torch.ones(2, 3), (6, 3)).coalesce()
    g = RowSparseArray.from_torch(coo)
    coo._indices()[0, 0] = 5                       # the tensor's own indices, in place
    assert g.indices.tolist() == [1, 4]
    out = RowSparseArray(ROWS.copy(), np.array([1, 4]), shape=(6, 3)).to_torch()
    out._indices()[0, 1] = 9
    back = RowSparseArray(ROWS.copy(), np.array([1, 4]), shape=(6, 3))
    t = back.to_torch()
    t._indices()[0, 0] = 0
    assert back.indices.tolist() == [1, 4]


# ---- clear errors for indices, shapes and COO tensors ------------------------------------------
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_uint64_index_is_reported_as_given(lib):
    big = np.array([2**63 + 5], np.uint64)
    idx = big if lib == "numpy" else torch.from_numpy(big)
    data = ROWS[:1].copy() if lib == "numpy" else torch.from_numpy(ROWS[:1].copy())
    with pytest.raises(ValueError, match=r"row index 9223372036854775813 is out of range"):
        RowSparseArray(data, idx, shape=(6, 3))


@pytest.mark.parametrize("shape,exc,match", [
    ((6.5, 3), TypeError, r"holds 6\.5, a float, not an integer"),
    ((6, True), TypeError, r"holds True, a bool, not an integer"),
    ("63", TypeError, r"holds '6', a str, not an integer"),
    (None, TypeError, r"shape must be a tuple of integers, got NoneType"),
    ((-1, 3), ValueError, r"negative size"),
    ((), ValueError, r"has no dimension"),
    ((2**40, 2**40, 3), ValueError, r"more than 2\*\*63 - 1 elements"),
], ids=["float", "bool", "str", "none", "negative", "empty", "too_big"])
def test_shape_errors_say_what_is_wrong(shape, exc, match):
    with pytest.raises(exc, match=match):
        RowSparseArray(np.zeros((0, 3), np.float32), np.zeros(0, np.int64), shape)


def test_integer_shapes_of_any_integer_type():
    for shape in ((6, 3), [6, 3], np.array([6, 3]), torch.Size([6, 3]), (np.int32(6), 3)):
        assert RowSparseArray(np.zeros((0, 3)), [], shape).shape == (6, 3)
    assert RowSparseArray(np.zeros(0), [], 6).shape == (6,)       # as np.zeros(6)


@pytest.mark.parametrize("rows,cols,match", [
    ([1, 2], [7, 2], r"index 7 of dimension 1 is out of range for shape \(4, 5\)"),
    ([1, 2], [-1, 2], r"index -1 of dimension 1 is out of range"),
    ([9, 2], [0, 2], r"row index 9 is out of range"),
], ids=["column_too_big", "column_negative", "row_too_big"])
@pytest.mark.parametrize("coalesced", [False, True])
def test_coo_with_two_sparse_dimensions_checks_every_index(rows, cols, match, coalesced):
    coo = torch.sparse_coo_tensor(torch.tensor([rows, cols]), torch.ones(2), (4, 5),
                                  is_coalesced=coalesced, check_invariants=False)
    with pytest.raises(ValueError, match=match):
        RowSparseArray.from_torch(coo)
    w, m, v = torch.zeros(4, 5), torch.zeros(4, 5), torch.zeros(4, 5)
    with pytest.raises(ValueError, match=match):
        adamop.adam_update(w, coo, m, v, lr=0.1, out=w)
    assert not w.any() and not m.any() and not v.any()


def test_coo_with_no_sparse_dimension_is_every_row():
    dense = torch.tensor([[1.0, 0.0], [0.0, 0.0], [-2.0, 3.0]])
    coo = torch.sparse_coo_tensor(torch.zeros((0, 2), dtype=torch.int64),
                                  torch.stack([dense, dense]), (3, 2))   # two summed copies
    assert coo.sparse_dim() == 0
    g = RowSparseArray.from_torch(coo)
    assert g.indices.tolist() == [0, 1, 2]
    assert g.todense().tolist() == [[2.0, 0.0], [0.0, 0.0], [-4.0, 6.0]]
    empty = torch.sparse_coo_tensor(torch.zeros((0, 0), dtype=torch.int64),
                                    torch.zeros((0, 3, 2)), (3, 2))
    assert RowSparseArray.from_torch(empty).nnz == 0


# ---- sym.var shapes ----------------------------------------------------------------------------
def test_var_shape_is_written_as_mxnet_writes_it():
    # MXNet 1.9.1: mx.sym.var('w', shape=5).list_attr() == {'__shape__': '5'}, a list as '[2, 3]'
    assert sym.var("w", shape=5).list_attr() == {"__shape__": "5"}              # MXNet
    assert sym.var("w", shape=[2, 3]).list_attr() == {"__shape__": "[2, 3]"}    # MXNet
    assert sym.var("w", shape=(np.int64(2), 3)).list_attr() == {"__shape__": "(2, 3)"}


@pytest.mark.parametrize("shape,exc,match", [
    ((2.5, 3), TypeError, r"holds 2\.5, a float, not an integer"),
    (5.0, TypeError, r"shape must be an integer or a sequence of integers, got float"),
    ("5", TypeError, r"holds '5', a str"),
    ((-1, 3), ValueError, r"negative size"),
], ids=["float_size", "float", "str", "negative"])
def test_var_shape_errors(shape, exc, match):
    with pytest.raises(exc, match=match):
        sym.var("w", shape=shape)


# ---- saving ------------------------------------------------------------------------------------
def _named(name: str) -> Symbol:
    """A variable named anything (sym.var itself refuses unwritable names)."""
    return Symbol([Entry(Node(None, name, {}), 0, 0)])


@pytest.mark.parametrize("name", ["a\ud800b", "a\x00b"], ids=["lone_surrogate", "nul"])
def test_save_refuses_an_unwritable_graph_before_touching_the_file(tmp_path, name):
    path = tmp_path / "graph.json"
    path.write_text("the previous graph")
    with pytest.raises(ValueError, match="node name"):
        _named(name).save(str(path))
    assert path.read_text() == "the previous graph"
    assert os.listdir(tmp_path) == ["graph.json"]
    with pytest.raises(ValueError):
        sym.var(name)


def test_save_replaces_the_file_atomically(tmp_path, monkeypatch):
    path = tmp_path / "graph.json"
    path.write_text("the previous graph")
    os.chmod(path, 0o640)

    def interrupted(src, dst):
        raise OSError("interrupted")
    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(OSError, match="interrupted"):
        sym.var("w").save(str(path))
    monkeypatch.undo()
    assert path.read_text() == "the previous graph"
    assert os.listdir(tmp_path) == ["graph.json"]            # no temporary file left behind
    link = tmp_path / "link.json"
    link.symlink_to(path)
    sym.var("w").save(link)                                  # os.PathLike; the link is followed
    assert link.is_symlink() and sym.load(str(path)).name == "w"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


# ---- symbol text -------------------------------------------------------------------------------
ODD = ["a\x01b", "\x1f", "del\x7f", "bs\x08ff\x0c", "tab\tnl\ncr\rq\"bs\\", "é中😀", "a\u2028b"]


@pytest.mark.parametrize("text", ODD, ids=lambda t: t.encode("unicode_escape").decode())
def test_names_and_values_with_any_character_round_trip(text):
    s = sym.adam_update(sym.var(text, attr={"__note__": text}), sym.var("g"), sym.var("m"),
                        sym.var("v"), lr=0.1, name=f"u{text}")
    back = sym.load_json(s.tojson())
    assert back.tojson() == s.tojson()
    assert back.get_internals().list_outputs()[0] == text
    assert back.get_internals()[0].list_attr() == {"__note__": text}


@pytest.mark.parametrize("key", ['__a"b__', "__a\\b__", "__a\nb__", "__a\x01b__"],
                         ids=["quote", "backslash", "newline", "control"])
def test_attribute_names_that_dmlc_would_break_round_trip(key):
    s = sym.var("w", attr={key: "v"})
    assert sym.load_json(s.tojson()).list_attr() == {key: "v"}


@pytest.mark.parametrize("text,match", [
    ('{"nodes": [{"op": "null", "name": "a\x00b", "inputs": []}]}', "NUL character"),
    ('{"nodes": [{"op": "null", "name": "a\\ud800", "inputs": []}], "arg_nodes": [0], '
     '"heads": [[0, 0, 0]]}', "lone surrogate"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"a": ' * 50_000 + "1" + "}" * 50_000, "nested too deeply"),
    ('{"nodes": [], "arg_nodes": [' + "1" * 5000 + '], "heads": []}',
     r"integer 1{24}\.\.\. \(5000 characters\) is out of range"),
    ('{"nodes": [], "arg_nodes": [-' + "9" * 19 + '], "heads": []}', "out of range"),
], ids=["nul", "lone_surrogate", "deep_list", "deep_object", "5000_digits", "int64_underflow"])
def test_load_json_refuses_with_value_error(text, match):
    with pytest.raises(ValueError, match=match):
        sym.load_json(text)


def test_mxnet_reads_adamops_text_and_writes_the_same():
    """MXNet 1.9.1 loads every text adamop writes (odd characters in names and values, and keys
    dmlc itself would write unreadably) and writes the same text back where its writer can."""
    graphs = [sym.var(t, attr={"__note__": t}) for t in ODD]
    keyed = sym.var("w", attr={'__a"b__': "1", "__a\\b__": "2"})
    texts = [g.tojson() for g in graphs] + [keyed.tojson()]
    _, got = run_mxnet("json_text.py", {}, texts)
    for t, g, mx in zip(ODD, graphs, got):
        assert "error" not in mx, mx
        assert mx["names"] == [t] and mx["attrs"] == {t: {"__note__": t}}
        assert mx["tojson"] == g.tojson()                          # MXNet
    assert got[-1]["attrs"] == {"w": {'__a"b__': "1", "__a\\b__": "2"}}   # MXNet
    assert json.loads(texts[-1])["nodes"][0]["attrs"] == {'__a"b__': "1", "__a\\b__": "2"}


@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0), (2, 0, 4)], ids=str)
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_from_dense_of_an_empty_array(lib, shape):
    """Found by test_properties.py: reshape(n, -1) fails on 0 elements (a RuntimeError in torch)."""
    dense = np.zeros(shape, np.float32) if lib == "numpy" else torch.zeros(shape)
    assert RowSparseArray.from_dense(dense).nnz == 0
    full = RowSparseArray.from_dense(dense, all_rows=True)
    assert full.nnz == shape[0] and full.stores_all_rows()
