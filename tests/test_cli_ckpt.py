"""``adamop inspect`` and ``adamop convert`` on MXNet's checkpoint files. About 3 s."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import DATA

from adamop import RowSparseArray, nd
from adamop.cli import main

DEV, EXTRA = DATA / "ckpt_dev", DATA / "ckpt_extra"
with np.load(DEV / "expected.npz") as _z:
    MANIFEST = json.loads(str(_z["manifest"]))
    INDICES = {k: _z[k] for k in _z.files if k.endswith("__indices")}
DEV_FILES = {f["file"]: f for f in MANIFEST["files"]}


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_inspect_params(capsys):
    code, out, err = run(capsys, "inspect", str(DEV / "nd_dict.params"))
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].endswith("nd_dict.params: 11 arrays, 626 bytes of values")
    assert lines[1].split() == ["name", "storage", "dtype", "shape", "stored", "rows", "bytes"]
    for entry, line in zip(DEV_FILES["nd_dict.params"]["entries"], lines[2:]):
        name, stype, dtype, rest = line.split(None, 3)
        assert (name, stype, dtype) == (entry["name"], entry["stype"], entry["dtype"])
        assert rest.startswith(str(tuple(entry["shape"])))
        if stype == "row_sparse":
            assert rest.split()[-2] == str(len(INDICES[entry["key"] + "__indices"]))
    assert lines[-1].split()[-2:] == ["14", "208"]      # csr: 14 values, 4*14 + 8*(5+14) bytes


def test_inspect_states(capsys):
    code, out, _ = run(capsys, "inspect", str(DEV / "gluon_fp32.states"))
    assert code == 0
    assert "the optimizer is included" in out
    assert "optimizer mxnet.optimizer.optimizer.Adam" in out
    assert "lr_scheduler mxnet.lr_scheduler.FactorScheduler" in out
    assert "update counts: 0:7 1:7 2:7 3:7 4:7" in out
    assert sum(line.split()[:1] in (["4"],) for line in out.splitlines()) == 2   # mean, var
    code, out, _ = run(capsys, "inspect", str(DEV / "gluon_fp16mp.states"))
    assert "weight32" in out and "clip_gradient=None" in out
    code, out, _ = run(capsys, "inspect", str(DEV / "module_fp32-0003.states"))
    assert "no optimizer" in out and len(out.splitlines()) == 3 + 12


@pytest.mark.parametrize("ext", ["npz", "pt", "safetensors"])
@pytest.mark.parametrize("name", ["nd_dict.params", "gluon_fp32.params",
                                  "module_fp32-0003.params"])
def test_convert_round_trip(ext, name, tmp_path, capsys):
    pytest.importorskip({"npz": "numpy", "pt": "torch", "safetensors": "safetensors"}[ext])
    middle, back = tmp_path / f"x.{ext}", tmp_path / "back.params"
    assert run(capsys, "convert", str(DEV / name), str(middle))[0] == 0
    code, out, _ = run(capsys, "inspect", str(middle))
    assert code == 0 and f"{len(DEV_FILES[name]['entries'])} arrays" in out
    assert run(capsys, "convert", str(middle), str(back))[0] == 0
    original = nd.load(DEV / name)
    # what a fresh save of the same arrays gives (the csr's recorded storage shape is not kept)
    assert back.read_bytes() == nd.save_tobuffer(dict(original))


def test_convert_dense_and_lists(tmp_path, capsys):
    code, _, err = run(capsys, "convert", str(DEV / "nd_list.params"), str(tmp_path / "l.npz"),
                       "--dense")
    assert code == 0 and "named '0' to '5'" in err
    with np.load(tmp_path / "l.npz") as z:
        assert z.files == [str(i) for i in range(6)]
        for i, entry in enumerate(DEV_FILES["nd_list.params"]["entries"]):
            with np.load(DEV / "expected.npz") as e:
                assert same_bits(z[str(i)], e[entry["key"] + "__dense"])


def test_convert_sparse_encoding(tmp_path, capsys):
    code, _, err = run(capsys, "convert", str(DEV / "nd_dict.params"), str(tmp_path / "s.npz"))
    assert code == 0 and "emb_float32@row_sparse.*" in err and "csr_m@csr.*" in err
    with np.load(tmp_path / "s.npz") as z:
        assert {"emb_float32@row_sparse.data", "emb_float32@row_sparse.indices",
                "emb_float32@row_sparse.shape", "csr_m@csr.indptr"} <= set(z.files)
    assert run(capsys, "convert", str(tmp_path / "s.npz"), str(tmp_path / "b.params"))[0] == 0
    back, loaded = nd.load(tmp_path / "b.params"), nd.load(DEV / "nd_dict.params")
    assert same_bits(back["emb_float32"].indices, loaded["emb_float32"].indices)
    assert same_bits(back["csr_m"].toarray(), loaded["csr_m"].toarray())


def test_convert_torch_keeps_sparse_tensors(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    assert run(capsys, "convert", str(DEV / "nd_dict.params"), str(tmp_path / "s.pt"))[0] == 0
    sd = torch.load(tmp_path / "s.pt", weights_only=True)
    assert sd["emb_float16"].layout == torch.sparse_coo
    assert sd["csr_m"].layout == torch.sparse_csr
    loaded = nd.load(DEV / "nd_dict.params")
    rsp = RowSparseArray.from_torch(sd["emb_float16"])
    assert same_bits(rsp.todense().numpy(), loaded["emb_float16"].todense())


def _bad_npz(path):
    np.savez(path, **{"x@row_sparse.data": np.ones((1, 2)), "x@row_sparse.shape": np.array([3])})


@pytest.mark.parametrize("argv, code, message", [
    pytest.param(["convert", "{DEV}/nd_dict.params", "{tmp}/x.h5"], 2, "unknown extension '.h5'",
                 id="unknown-extension"),
    pytest.param(["convert", "{DEV}/gluon_fp32.states", "{tmp}/x.params"], 2,
                 "optimizer states, not arrays", id="states"),
    pytest.param(["inspect", "{tmp}/bad.params"], 1, "bad.params: truncated", id="truncated"),
    pytest.param(["convert", "{tmp}/bad.npz", "{tmp}/x.params"], 1, "not a NumPy .npz file",
                 id="not-npz"),
    pytest.param(["convert", "{tmp}/half.npz", "{tmp}/x.params"], 1,
                 r"entry 'x' has the row_sparse parts \['data', 'shape'\]", id="half-sparse"),
    pytest.param(["inspect", "{tmp}/missing.params"], 1, "No such file", id="missing"),
])
def test_cli_errors(argv, code, message, tmp_path, capsys):
    (tmp_path / "bad.params").write_bytes((DEV / "nd_list.params").read_bytes()[:-3])
    (tmp_path / "bad.npz").write_bytes(b"PK not a zip")
    _bad_npz(tmp_path / "half.npz")
    argv = [a.format(DEV=DEV, tmp=tmp_path) for a in argv]
    got, out, err = run(capsys, *argv)
    assert got == code and out == ""
    assert err.startswith("error: ") and re.search(message, err), err


def test_missing_safetensors(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    code, _, err = run(capsys, "convert", str(DEV / "nd_list.params"),
                       str(tmp_path / "x.safetensors"))
    assert code == 2 and "pip install safetensors" in err
    assert not (tmp_path / "x.safetensors").exists()


def test_console_entry_point():
    proc = subprocess.run([sys.executable, "-m", "adamop", "inspect",
                           str(EXTRA / "bf16_bool.params")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "bf     default  bfloat16  (2, 3)" in proc.stdout
