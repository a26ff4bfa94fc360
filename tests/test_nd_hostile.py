"""Broken and hostile NDArray files: each refused with a ValueError that names the input and the
problem, before anything the file's numbers ask for is allocated. Well under 1 s."""
from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest
from conftest import DATA

from adamop import nd

V1, V2, V3 = 0xF993FAC8, 0xF993FAC9, 0xF993FACA


def file_(records, names=None, *, header=(0x112, 0), count=None, tail=b""):
    out = struct.pack("<QQQ", *header, len(records) if count is None else count)
    out += b"".join(records)
    names = names or []
    out += struct.pack("<Q", len(names))
    for n in names:
        raw = n if isinstance(n, bytes) else n.encode()
        out += struct.pack("<Q", len(raw)) + raw
    return out + tail


def shape(*dims, version=V2):
    return struct.pack("<i", len(dims)) + struct.pack(f"<{len(dims)}q", *dims)


def dense(dims=(2,), flag=0, data=None, magic=V2, ctx=(1, 0)):
    body = struct.pack("<Ii", magic, 0) + shape(*dims)
    body += struct.pack("<iii", *ctx, flag)
    if data is None:
        n = int(np.prod(dims)) if dims else 1
        data = np.arange(n, dtype=np.float32).tobytes() if flag == 0 else bytes(n * 8)
    return body + data


def rsp(dims=(4, 2), rows=(1, 3), sshape=None, aux_flag=6, magic=V2):
    rows = np.asarray(rows, np.int64)
    n = len(rows)
    body = struct.pack("<Ii", magic, 1) + shape(*(sshape or (n,) + dims[1:])) + shape(*dims)
    body += struct.pack("<iii", 1, 0, 0) + struct.pack("<i", aux_flag) + shape(n)
    values = np.ones((n,) + tuple(dims[1:]), np.float32).tobytes()
    return body + values + rows.astype(np.int64).tobytes()


def csr(indptr=(0, 1, 2), cols=(0, 2), dims=(2, 3)):
    indptr, cols = np.asarray(indptr, np.int64), np.asarray(cols, np.int64)
    body = struct.pack("<Ii", V2, 2) + shape(len(cols)) + shape(*dims)
    body += struct.pack("<iii", 1, 0, 0)
    body += struct.pack("<i", 6) + shape(len(indptr)) + struct.pack("<i", 6) + shape(len(cols))
    return body + np.ones(len(cols), np.float32).tobytes() + indptr.tobytes() + cols.tobytes()


HEAD1 = struct.pack("<QQQ", 0x112, 0, 1)     # a file of one record, cut short in the record
GOOD = file_([dense(), rsp(), csr()], ["a", "b", "c"])

CASES = [
    ("empty", b"", r"truncated: the file header needs 16 bytes"),
    ("not-mxnet", b"PK\x03\x04" + bytes(40), r"not an MXNet NDArray file"),
    ("reserved-set", file_([], header=(0x112, 1)), r"0x112, 0x1; expected 0x112, 0"),
    ("count-2^60", file_([], count=2 ** 60), r"says it holds 1152921504606846976 arrays"),
    ("count-too-big", file_([dense()], count=3), r"record 1 of 3: truncated"),
    ("bad-magic", file_([struct.pack("<I", 0xDEADBEEF) + bytes(40)]),
     r"record 0 of 1: starts with 0xDEADBEEF, which is not an NDArray record"),
    ("bad-stype", file_([struct.pack("<Ii", V2, 5) + bytes(40)]), r"storage type 5"),
    ("v3-row-sparse", file_([rsp(magic=V3)]), r"row_sparse record saved under np-shape"),
    ("ndim-1000", file_([struct.pack("<Iii", V2, 0, 1000) + bytes(64)]), r"ndim 1000"),
    ("ndim-negative", file_([struct.pack("<Iii", V2, 0, -3) + bytes(64)]), r"ndim -3"),
    ("dim-negative", file_([dense(dims=(2, -3))]), r"\(2, -3\) has a negative dimension"),
    ("dims-2^40", file_([dense(dims=(2 ** 40, 2 ** 40), data=b"")]),
     r"truncated: the values \(4835703278458516698824704 bytes\)"),
    ("short-data", HEAD1 + dense(dims=(4,), data=bytes(15)),
     r"truncated: the values \(16 bytes\) needs 16 bytes at byte 56, but only 15 remain"),
    ("dtype-99", file_([dense(flag=99)]), r"unknown data type flag 99"),
    ("dtype-negative", file_([dense(flag=-1)]), r"unknown data type flag -1"),
    ("none-record", file_([struct.pack("<Iii", V2, 0, 0)]), r"empty \(none\) NDArray"),
    ("none-v3", file_([struct.pack("<Iii", V3, 0, -1)]), r"empty \(none\) NDArray"),
    ("aux-float", file_([rsp(aux_flag=0)]), r"aux array 0 of type flag 0"),
    ("rsp-storage-shape", file_([rsp(sshape=(3, 2))]),
     r"storage shape \(3, 2\), but its row_sparse indices say \(2, 2\)"),
    ("rsp-row-out-of-range", file_([rsp(rows=(1, 9))], ["emb"]),
     r"record 0 \('emb'\): invalid row_sparse array: .*row index 9 is out of range"),
    ("rsp-negative-row", file_([rsp(rows=(-1, 2))]), r"row index -1 is out of range"),
    ("rsp-0-d", file_([struct.pack("<Ii", V2, 1) + shape(0) + shape() + bytes(40)]),
     r"empty \(none\)"),
    ("csr-3-d", file_([csr(dims=(1, 2, 3))]), r"csr array of shape \(1, 2, 3\)"),
    ("csr-indptr-length", file_([csr(indptr=(0, 2))]), r"indptr of 2 entries for 2 rows"),
    ("csr-indptr-order", file_([csr(indptr=(0, 2, 1))]), r"invalid csr indptr"),
    ("csr-column", file_([csr(cols=(0, 7))]), r"csr column index out of range for 3 columns"),
    ("names-count", file_([dense()], ["a"]).replace(struct.pack("<Q", 1) + struct.pack(
        "<Q", 1) + b"a", struct.pack("<Q", 2) + struct.pack("<Q", 1) + b"a"),
     r"has 2 names for 1 arrays"),
    ("name-length-2^62", file_([dense()])[:-8] + struct.pack("<QQ", 1, 2 ** 62),
     r"truncated: name 0 \(4611686018427387904 bytes\)"),
    ("name-not-utf8", file_([dense()], [b"\xff\xfe"]), r"name 0 is not UTF-8"),
    ("trailing-bytes", GOOD + b"\0", r"1 unexpected bytes after its last name"),
    ("legacy-ndim-33", file_([struct.pack("<I", 33) + bytes(200)]), r"legacy ndim of at most 32"),
    ("v1-truncated", HEAD1 + struct.pack("<Ii", V1, 2) + struct.pack("<q", 3),
     r"truncated: the 2 dims of the shape needs 16 bytes at byte 32, but only 8 remain"),
]


def test_good_file_loads():
    loaded = nd.load_frombuffer(GOOD)
    assert list(loaded) == ["a", "b", "c"] and nd.save_tobuffer(loaded) == GOOD


@pytest.mark.parametrize("data, match", [pytest.param(d, m, id=i) for i, d, m in CASES])
def test_refused(data, match):
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=match) as info:
            nd.load_frombuffer(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(info.value).startswith("<bytes>: ")
    assert peak < 1 << 20           # nothing sized by the file's numbers was allocated


def test_refused_file_names_the_path(tmp_path):
    path = tmp_path / "broken.params"
    path.write_bytes(GOOD[:-3])
    with pytest.raises(ValueError, match=rf"^{path}: truncated: the length of name 2 needs 8"):
        nd.load(path)


def test_every_prefix_of_a_real_file_is_refused():
    raw = (DATA / "ckpt_dev" / "nd_dict.params").read_bytes()
    for end in range(len(raw)):
        with pytest.raises(ValueError, match="truncated|cannot hold that many"):
            nd.load_frombuffer(raw[:end])
