"""adamop.nd against files MXNet 1.9.1 wrote: every array bit for bit, re-saved byte for byte.

The fixtures are MXNet's (tests/data/ckpt_dev: the project's dev set; tests/data/ckpt_extra:
edge cases written by tests/mxnet_side/make_ckpt_fixtures.py); their expected values are what
MXNet's own ``mx.nd.load`` returned. About 1 s.
"""
from __future__ import annotations

import json
import os
import stat
import sys

import numpy as np
import pytest
from conftest import DATA

from adamop import RowSparseArray, nd
from adamop import _ndfile as F

DEV, EXTRA = DATA / "ckpt_dev", DATA / "ckpt_extra"
BF16 = F.BFLOAT16


def _manifest(folder):
    with np.load(folder / "expected.npz") as z:
        arrays = {k: z[k] for k in z.files}
    key = "manifest" if "manifest" in arrays else "__meta__"
    return json.loads(str(arrays.pop(key))), arrays


DEV_META, DEV_ARRAYS = _manifest(DEV)
EXTRA_META, EXTRA_ARRAYS = _manifest(EXTRA)
DEV_FILES = {f["file"]: f for f in DEV_META["files"]}
EXTRA_FILES = EXTRA_META["files"]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def items(loaded):
    return list(loaded.items()) if isinstance(loaded, dict) else [(None, v) for v in loaded]


# ---- the dev set ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DEV_FILES))
def test_dev_file_loads_bit_for_bit(name):
    spec = DEV_FILES[name]
    loaded = nd.load(DEV / name)
    assert isinstance(loaded, nd.NDArrayDict if spec["kind"] == "dict" else nd.NDArrayList)
    assert loaded.np_shape == spec["np_shape"]
    assert len(loaded) == len(spec["entries"])
    for entry, (key, value) in zip(spec["entries"], items(loaded)):
        assert key == entry["name"]
        dense = DEV_ARRAYS[entry["key"] + "__dense"]
        if entry["stype"] == "default":
            assert isinstance(value, np.ndarray) and same_bits(value, dense)
        elif entry["stype"] == "row_sparse":
            assert isinstance(value, RowSparseArray) and value.shape == tuple(entry["shape"])
            assert same_bits(value.indices, DEV_ARRAYS[entry["key"] + "__indices"])
            assert same_bits(value.data, DEV_ARRAYS[entry["key"] + "__data"])
            assert same_bits(value.todense(), dense)
        else:
            assert value.format == "csr" and same_bits(value.toarray(), dense)


@pytest.mark.parametrize("name", sorted(DEV_FILES))
def test_dev_file_resaves_byte_identical(name, tmp_path):
    raw = (DEV / name).read_bytes()
    loaded = nd.load(DEV / name)
    nd.save(tmp_path / name, loaded)
    assert (tmp_path / name).read_bytes() == raw
    assert nd.save_tobuffer(nd.load_frombuffer(raw)) == raw


def test_csr_storage_shape_quirk_kept():
    """MXNet recorded the csr's storage shape as (0,) (it writes the shape before the operator
    that made the array has run); the values count comes from the aux shapes, and a re-save keeps
    the recorded (0,), while a fresh array is written with its real storage shape."""
    raw = (DEV / "nd_dict.params").read_bytes()
    loaded = nd.load_frombuffer(raw)
    fresh = nd.save_tobuffer(dict(loaded))
    assert fresh != raw and len(fresh) == len(raw)
    diff = [i for i in range(len(raw)) if raw[i] != fresh[i]]
    assert len(diff) == 1 and raw[diff[0]] == 0 and fresh[diff[0]] == 14   # nnz 14, not 0
    assert same_bits(nd.load_frombuffer(fresh)["csr_m"].toarray(), loaded["csr_m"].toarray())


# ---- edge cases MXNet wrote -------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(EXTRA_FILES))
def test_extra_file_loads_as_mxnet_loaded_it(name):
    spec = EXTRA_FILES[name]
    loaded = nd.load(EXTRA / name)
    assert isinstance(loaded, dict) == (spec["kind"] == "dict")
    assert [k for k, _ in items(loaded)] == [e["name"] for e in spec["entries"]]
    for i, (entry, (_, value)) in enumerate(zip(spec["entries"], items(loaded))):
        key = f"{name}__{i}"
        if entry["stype"] == "default":
            assert same_bits(value, EXTRA_ARRAYS[key + "__data"])
        else:   # MXNet keeps a row_sparse array's rows in file order; adamop sorts them
            order = np.argsort(EXTRA_ARRAYS[key + "__indices"], kind="stable")
            assert same_bits(value.indices, EXTRA_ARRAYS[key + "__indices"][order])
            assert same_bits(value.data, EXTRA_ARRAYS[key + "__data"][order])
    assert nd.save_tobuffer(loaded) == (EXTRA / name).read_bytes()


def test_legacy_records_resave_in_their_format():
    v1 = nd.load(EXTRA / "legacy_v1.params")
    assert v1["scalar"].shape == () and int(v1["scalar"]) == 42
    # written as MXNet 1.9.1 would write the same arrays: V2 for the 2-D array; the 0-d one
    # only under np-shape
    with pytest.raises(ValueError, match="0-d.*np_shape=True"):
        nd.save_tobuffer(v1, np_shape=False)
    assert nd.load_frombuffer(nd.save_tobuffer(v1, np_shape=True)).np_shape


def test_unsorted_row_sparse_rows_sorted_and_written_back_in_file_order():
    loaded = nd.load(EXTRA / "unsorted_rsp.params")
    assert loaded["dup"].duplicates == (1,)
    assert nd.save_tobuffer(loaded) == (EXTRA / "unsorted_rsp.params").read_bytes()
    loaded["unsorted"]._set_rows(loaded["unsorted"].data.copy(), np.array([1, 2]))
    again = nd.load_frombuffer(nd.save_tobuffer(loaded))      # new rows: written as they are
    assert list(again["unsorted"].indices) == [1, 2]


def test_replaced_entry_is_written_as_a_new_array():
    loaded = nd.load(EXTRA / "ctx.params")         # cpu_pinned and cpu(3) contexts
    assert nd.save_tobuffer(loaded) == (EXTRA / "ctx.params").read_bytes()
    loaded["cpu3"] = loaded["cpu3"].copy()
    out = nd.save_tobuffer(loaded)
    assert out != (EXTRA / "ctx.params").read_bytes()
    assert same_bits(nd.load_frombuffer(out)["cpu3"], loaded["cpu3"])


# ---- what save writes -------------------------------------------------------------------------
def test_fresh_arrays_written_as_mxnet_writes_them():
    """Each file here was written by MXNet for the same arrays (see make_ckpt_fixtures.py)."""
    for name in ("bf16_bool.params", "empty_dict.params", "zero_size_v2.params"):
        loaded = nd.load(EXTRA / name)
        data = dict(loaded) if isinstance(loaded, dict) else list(loaded)
        assert nd.save_tobuffer(data, np_shape=None if "zero" not in name else False) == \
            (EXTRA / name).read_bytes(), name
    single = nd.load(EXTRA / "single.params")[0]
    assert nd.save_tobuffer(single.copy()) == (EXTRA / "single.params").read_bytes()
    np_types = dict(nd.load(EXTRA / "np_shape_types.params"))   # 0-d, zero-size: np-shape
    assert nd.save_tobuffer(np_types) == (EXTRA / "np_shape_types.params").read_bytes()


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "uint8", "int8", "int32",
                                   "int64", "bool"])
def test_dtype_round_trip_and_byte_order(dtype):
    x = (np.arange(12).reshape(3, 4) % 3).astype(dtype)
    raw = nd.save_tobuffer({"x": x})
    assert same_bits(nd.load_frombuffer(raw)["x"], x)
    swapped = x.astype(x.dtype.newbyteorder(">"))
    assert nd.save_tobuffer({"x": swapped}) == raw
    assert nd.save_tobuffer({"x": np.asfortranarray(x)}) == raw


def test_torch_in_and_out():
    torch = pytest.importorskip("torch")
    loaded = nd.load(EXTRA / "bf16_bool.params", as_torch=True)
    assert loaded["bf"].dtype == torch.bfloat16 and loaded["flags"].dtype == torch.bool
    assert nd.save_tobuffer(loaded) == (EXTRA / "bf16_bool.params").read_bytes()
    dev = nd.load(DEV / "nd_dict.params", as_torch=True)
    assert dev["emb_float16"].library == "torch"
    assert dev["csr_m"].layout == torch.sparse_csr
    assert nd.save_tobuffer(dev) == (DEV / "nd_dict.params").read_bytes()
    numpy_side = nd.load(DEV / "nd_dict.params")
    coo = numpy_side["emb_float32"].to_torch()
    assert nd.save_tobuffer({"e": coo}) == nd.save_tobuffer({"e": numpy_side["emb_float32"]})
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3).t()        # not contiguous
    assert nd.save_tobuffer([t]) == nd.save_tobuffer([t.numpy().copy()])


def test_scipy_csr_and_missing_scipy(monkeypatch):
    scipy_sparse = pytest.importorskip("scipy.sparse")
    loaded = nd.load(DEV / "nd_dict.params")
    m = loaded["csr_m"]
    assert same_bits(nd.load_frombuffer(nd.save_tobuffer([m]))[0].toarray(), m.toarray())
    with pytest.raises(TypeError, match=r"coo matrix.*tocsr"):
        nd.save_tobuffer([scipy_sparse.coo_matrix(m)])
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.sparse", None)
    with pytest.raises(ImportError, match=r"record 10 \('csr_m'\) is a csr matrix.*scipy"):
        nd.load(DEV / "nd_dict.params")
    assert nd.load(DEV / "nd_dict.params", as_torch=True)["csr_m"].shape == (4, 6)


def test_np_shape_choice():
    scalar, rows0 = np.float32(2.5), np.zeros((0, 3), np.float32)
    assert nd.load_frombuffer(nd.save_tobuffer([scalar])).np_shape       # automatic: V3
    assert not nd.load_frombuffer(nd.save_tobuffer([rows0], np_shape=False)).np_shape
    assert nd.load_frombuffer(nd.save_tobuffer([np.ones(2)], np_shape=True)).np_shape
    rsp = RowSparseArray(np.ones((1, 2)), [0], (3, 2))
    with pytest.raises(ValueError, match=r"item 1 is row_sparse.*np-shape.*0-d or zero-size"):
        nd.save_tobuffer([scalar, rsp])
    with pytest.raises(ValueError, match="np_shape=True"):
        nd.save_tobuffer([rsp], np_shape=True)
    with pytest.raises(ValueError, match=r"'s' is 0-d"):
        nd.save_tobuffer({"s": scalar}, np_shape=False)


@pytest.mark.parametrize("data, error, match", [
    pytest.param({1: np.ones(2)}, TypeError, "names must be str", id="int-name"),
    pytest.param({"a": [1.0, 2.0]}, TypeError, r"'a' is builtins.list", id="python-list"),
    pytest.param({"a": np.ones(2, np.complex64)}, TypeError, "complex64.*cannot store",
                 id="complex"),
    pytest.param({"a": np.ones(2, np.int16)}, TypeError, "int16.*cannot read.*int32",
                 id="int16"),
    pytest.param({"a": np.array(["x"])}, TypeError, "cannot store", id="strings"),
    pytest.param(42, TypeError, "expected a dict", id="int"),
    pytest.param([None], TypeError, "item 0 is builtins.NoneType", id="none"),
])
def test_save_refuses(data, error, match, tmp_path):
    target = tmp_path / "x.params"
    target.write_bytes(b"old")
    with pytest.raises(error, match=match):
        nd.save(target, data)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["x.params"]


def test_save_is_atomic_and_keeps_the_mode(tmp_path, monkeypatch):
    target = tmp_path / "w.params"
    nd.save(target, {"a": np.ones(3, np.float32)})
    os.chmod(target, 0o640)
    before = target.read_bytes()

    def broken_write(write, records, names, progress=None):
        write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(F, "write_file", broken_write)
    with pytest.raises(OSError, match="disk full"):
        nd.save(target, {"a": np.zeros(3, np.float32)})
    assert target.read_bytes() == before and os.listdir(tmp_path) == ["w.params"]
    monkeypatch.undo()
    nd.save(target, {"a": np.zeros(3, np.float32)})
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640


def test_load_frombuffer_types():
    raw = (DEV / "nd_list.params").read_bytes()
    for buf in (raw, bytearray(raw), memoryview(raw)):
        assert len(nd.load_frombuffer(buf)) == 6
    with pytest.raises(TypeError, match="expected bytes"):
        nd.load_frombuffer(raw.decode("latin-1"))


def test_docstring_examples():
    import doctest
    failed, attempted = doctest.testmod(nd, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert attempted and not failed


def test_dropped_entries_are_freed_and_bad_names_refused():
    import gc
    import weakref
    loaded = nd.load(DEV / "gluon_fp32.params")
    ref = weakref.ref(loaded["0.weight"])
    del loaded["0.weight"]
    gc.collect()
    assert ref() is None
    with pytest.raises(ValueError, match="cannot be written as UTF-8"):
        nd.save_tobuffer({"\udcff": np.ones(1)})
