"""adamop.states against ``.states`` files MXNet 1.9.1 wrote, and against hostile pickles.

The optimizer and scheduler classes here are stand-ins that honour the contract
``adamop.states`` relies on (a ``mxnet_class`` attribute, ``__getstate__`` = MXNet's attribute
dict, ``__new__`` + ``__setstate__``), installed where ``adamop.states`` looks them up; they check
the seam, not the optimizer. About 1 s.
"""
from __future__ import annotations

import json
import os
import pickle
import re

import numpy as np
import pytest
from conftest import DATA
from mxnet_side.ckpt_values import plain

from adamop import RowSparseArray, nd, states

DEV, EXTRA = DATA / "ckpt_dev", DATA / "ckpt_extra"
SCHEDULERS = ("LRScheduler", "FactorScheduler", "MultiFactorScheduler", "PolyScheduler",
              "CosineScheduler")


class _Attrs:
    """MXNet's own pickling contract: the attribute dict, as it is."""

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "param_dict"}

    def __setstate__(self, state: dict) -> None:
        if not isinstance(state, dict) or "base_lr" not in state and "lr" not in state:
            raise ValueError(f"{type(self).__name__}: missing attribute 'lr'")
        self.__dict__.update(state)


class StandInAdam(_Attrs):
    mxnet_class = "mxnet.optimizer.optimizer.Adam"

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.param_dict = {}


def install_stand_ins(patch: pytest.MonkeyPatch) -> dict:
    """Stand-in Adam and schedulers where adamop.states looks for them (undone with ``patch``);
    returns the scheduler stand-ins by name."""
    import adamop.lr_scheduler
    import adamop.optimizer
    patch.setattr(adamop.optimizer, "Adam", StandInAdam)
    made = {n: type(n, (_Attrs,), {"mxnet_class": f"mxnet.lr_scheduler.{n}"}) for n in SCHEDULERS}
    for name, cls in made.items():
        patch.setattr(adamop.lr_scheduler, name, cls)
    return made


@pytest.fixture
def classes(monkeypatch):
    """Stand-in Adam and schedulers where adamop.states looks for them."""
    return install_stand_ins(monkeypatch)


def _expected(folder):
    with np.load(folder / "expected.npz") as z:
        arrays = {k: z[k] for k in z.files}
    key = "manifest" if "manifest" in arrays else "__meta__"
    return json.loads(str(arrays.pop(key))), arrays


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def flat(state):
    """mean, var (and the float32 master weight first, under multi-precision), dense."""
    parts = [state[0], *state[1]] if isinstance(state[1], tuple) else list(state)
    return [p.todense() if isinstance(p, RowSparseArray) else p for p in parts]


# ---- MXNet's files ----------------------------------------------------------------------------
DEV_META, DEV_ARRAYS = _expected(DEV)


@pytest.mark.parametrize("run", DEV_META["runs"], ids=lambda r: r["name"])
def test_dev_states_load_bit_for_bit(run, either_classes):
    raw = (DEV / run["states_file"]).read_bytes()
    loaded = states.loads(raw, source=run["states_file"])
    if run["dump_optimizer"]:
        saved, opt = loaded
        assert type(opt).mxnet_class == "mxnet.optimizer.optimizer.Adam"
        assert opt.param_dict == {}
        assert opt._index_update_count == {int(k): v for k, v in run["saved_counts"].items()}
        assert opt._index_update_count is opt._all_index_update_counts[0]   # shared, as in MXNet
        assert opt.num_update == run["saved_num_update"]
        assert type(opt.lr_scheduler).__name__ == run["scheduler"]["class"]
    else:
        saved = loaded
    assert sorted(saved) == list(range(len(run["param_names"])))
    for i in saved:
        key = f"{run['name']}__state{i}__"
        want = [DEV_ARRAYS[key + n] for n in ("w32", "mean", "var") if key + n in DEV_ARRAYS]
        got = flat(saved[i])
        assert len(got) == len(want) and all(same_bits(g, w) for g, w in zip(got, want))
    assert states.dumps(loaded) == raw        # MXNet's own bytes, as Python's pickle wrote them


EXTRA_META, EXTRA_ARRAYS = _expected(EXTRA)
EXTRA_STATES = sorted(p.name for p in EXTRA.glob("*.states"))


@pytest.fixture(params=["stand-ins", "adamop"])
def either_classes(request):
    """The contract's stand-ins, then adamop's own Adam and schedulers."""
    if request.param == "stand-ins":
        request.getfixturevalue("classes")
    else:
        optimizer = pytest.importorskip("adamop.optimizer")
        assert hasattr(optimizer, "Adam")
    return request.param


@pytest.mark.parametrize("name", EXTRA_STATES)
def test_states_as_mxnet_restored_them(name, either_classes):
    """Row-sparse states, every scheduler, and pickle protocols 0-5 (Python 2's MXNet wrote 0)."""
    saved, opt = states.loads((EXTRA / name).read_bytes(), source=name)
    if either_classes == "adamop":
        from adamop.optimizer import Adam
        assert type(opt) is Adam
    base = re.sub(r"_p\d\.states$", ".states", name)
    want = EXTRA_META["states"][base]
    assert plain(opt.__getstate__()) == want["attrs"]
    for idx, kinds in want["states"].items():
        got = flat(saved[int(idx)])
        for j, (kind, part) in enumerate(zip(kinds, got)):
            assert same_bits(part, EXTRA_ARRAYS[f"{base}__s{idx}_{j}"])
            if kind[1] == "row_sparse":
                stored = saved[int(idx)][j]
                assert isinstance(stored, RowSparseArray)
                assert same_bits(stored.indices, EXTRA_ARRAYS[f"{base}__s{idx}_{j}__indices"])
    # whatever protocol it came in, it is written back as MXNet writes it on Python 3
    assert states.dumps((saved, opt)) == (EXTRA / base).read_bytes()


def test_unresolved_and_other_optimizers(classes, tmp_path):
    raw = (DEV / "gluon_fp32.states").read_bytes()
    _saved, opt = states.loads(raw, resolve=False)
    assert isinstance(opt, states.MXNetObject) and opt.mxnet_class.endswith(".Adam")
    assert opt.state["lr_scheduler"].mxnet_class == "mxnet.lr_scheduler.FactorScheduler"
    sgd = type("SGD", (_Attrs,), {"mxnet_class": "mxnet.optimizer.optimizer.SGD"})()
    sgd.lr, sgd.momentum = 0.1, 0.9
    blob = states.dumps(({}, sgd))
    with pytest.raises(ValueError, match=r"mxnet.optimizer.optimizer.SGD optimizer; adamop "
                                         r"implements Adam only"):
        states.loads(blob)
    assert states.loads(blob, resolve=False)[1].state == {"lr": 0.1, "momentum": 0.9}
    states.save(tmp_path / "s.states", ({}, sgd))
    assert states.load(tmp_path / "s.states", resolve=False)[1].mxnet_class.endswith("SGD")


def test_setstate_errors_name_the_file(classes):
    adam = StandInAdam()
    adam.beta1 = 0.9                               # no lr: the stand-in refuses it
    with pytest.raises(ValueError, match=r"^f.states: mxnet.optimizer.optimizer.Adam: "
                                         r"StandInAdam: missing attribute 'lr'"):
        states.loads(states.dumps(({}, adam)), source="f.states")


# ---- dumps ------------------------------------------------------------------------------------
def test_dumps_values():
    torch = pytest.importorskip("torch")
    rsp = RowSparseArray(np.ones((1, 2), np.float32), [2], (4, 2))
    tree = {0: (np.zeros(3, np.float16), rsp), 1: (np.float32(2.5), np.int64(3), True, None),
            "t": (torch.ones(2), rsp.to_torch()), 2: [np.zeros((0, 2)), np.ones(())]}
    back = states.loads(states.dumps(tree))
    assert same_bits(back[0][0], tree[0][0]) and same_bits(back[0][1].todense(), rsp.todense())
    assert back[1] == (2.5, 3, True, None) and type(back[1][0]) is float
    assert same_bits(back["t"][0], np.ones(2, np.float32))
    assert same_bits(back["t"][1].todense(), rsp.todense())
    assert back[2][0].shape == (0, 2) and back[2][1].shape == ()    # V3 records


@pytest.mark.parametrize("obj, match", [
    pytest.param({0: {1, 2}}, r"the object\[0\] is builtins.set", id="set"),
    pytest.param({0: object()}, r"builtins.object", id="object"),
    pytest.param({frozenset(): 1}, r"a key of the object is builtins.frozenset", id="key"),
    pytest.param({0: np.ones(2, np.complex64)}, r"complex64", id="complex"),
    pytest.param(type("Bad", (), {"mxnet_class": "x.Y", "__getstate__": lambda s: [1]})(),
                 r"returned list; expected a dict", id="getstate-list"),
])
def test_dumps_refuses(obj, match):
    with pytest.raises(TypeError, match=match):
        states.dumps(obj)


def test_dumps_refuses_cycles():
    cycle: list = []
    cycle.append(cycle)
    with pytest.raises(TypeError, match="refers to itself"):
        states.dumps(cycle)


# ---- hostile pickles --------------------------------------------------------------------------
def _reduce(func, args):
    """A protocol-2 pickle that calls func(*args) on load, as an attacker would write it."""
    class Payload:
        def __reduce__(self):
            return func, args
    return pickle.dumps(Payload(), protocol=2)


def _attacks(marker: str) -> list:
    cmd = f"touch {marker}"
    nd_global = b"cmxnet.ndarray.ndarray\nNDArray\n"
    return [
        ("os.system", _reduce(os.system, (cmd,)), r"refused global 'posix.system'"),
        ("eval", _reduce(eval, (f"open({marker!r}, 'w')",)),
         r"refused global '(__builtin__|builtins).eval'"),
        ("exec", _reduce(exec, (f"open({marker!r}, 'w')",)),
         r"refused global '(__builtin__|builtins).exec'"),
        ("getattr", b"\x80\x02cbuiltins\ngetattr\ncos\nsystem\n\x86R.",
         r"refused global 'builtins.getattr'"),
        ("subprocess", b"\x80\x02csubprocess\nPopen\n]X\x05\x00\x00\x00touch\x85R.",
         r"refused global 'subprocess.Popen'"),
        ("import", b"\x80\x02cbuiltins\n__import__\nX\x02\x00\x00\x00os\x85R.",
         r"refused global 'builtins.__import__'"),
        ("numpy-reconstruct", pickle.dumps(np.ones(2), protocol=2),
         r"refused global 'numpy.(_core|core).multiarray._reconstruct'"),
        ("inst", f"(S'{cmd}'\nios\nsystem\n.".encode(), r"refused pickle opcode INST"),
        ("obj", f"(cos\nsystem\nS'{cmd}'\no.".encode(), r"refused pickle opcode OBJ"),
        ("persistent-id", b"\x80\x02X\x01\x00\x00\x00aQ.", r"refused pickle opcode BINPERSID"),
        ("ext1", b"\x80\x02\x82\x01.", r"refused pickle opcode EXT1"),
        ("inside-ndarray-args", b"\x80\x02" + nd_global + b"cos\nsystem\n\x85R.",
         r"refused global 'os.system'"),
        ("ndarray-args", b"\x80\x02" + nd_global + b"K\x01K\x02\x86R.",
         r"calls mxnet.ndarray.ndarray.NDArray with \(1, 2\); MXNet pickles it with \(None,\)"),
        ("adam-args", (b"\x80\x02cmxnet.optimizer.optimizer\nAdam\nG?\xb9\x99\x99\x99\x99\x99"
                       b"\x9a\x85R."), r"calls mxnet.optimizer.optimizer.Adam with \(0.1,\)"),
        ("bytearray-size", b"\x80\x02cbuiltins\nbytearray\nJ\x00\x00\x00\x7f\x85R.",
         r"calls builtins.bytearray with \(2130706432,\)"),
        ("reconstructor-os", (b"\x80\x02ccopyreg\n_reconstructor\ncmxnet.lr_scheduler\n"
                              b"PolyScheduler\ncos\nsystem\nN\x87R."),
         r"refused global 'os.system'"),
        ("build-class", b"\x80\x02" + nd_global + b"}b.", r"not a valid .states pickle"),
        ("build-twice", b"\x80\x02" + nd_global + b"N\x85R}b}b.",
         r"builds one mxnet.ndarray.ndarray.NDArray twice"),
        ("memo-index", b"\x80\x02]r\xf0\xff\xff\xff.", r"memo index 4294967280"),
        ("get-unset", b"\x80\x02h\x05.", r"memo index 5 at byte 2, but 0 values"),
        ("huge-int", b"\x80\x02\x8b\x00\x01\x00\x00" + b"\x01" * 256 + b".",
         r"integer of 2041 bits"),
        ("protocol-9", b"\x80\x09N.", r"not a valid .states pickle|protocol"),
        ("trailing", pickle.dumps({}, protocol=4) + b"x", r"1 unexpected bytes after"),
        ("not-a-pickle", (DEV / "nd_list.params").read_bytes(), r"not a valid .states pickle"),
        ("empty", b"", r"not a valid .states pickle"),
        ("deep", b"\x80\x02" + b"]" * 100 + b"a" * 99 + b".", r"nests deeper than 64"),
        ("cycle", b"\x80\x02]q\x00h\x00a.", r"refers to itself"),
        ("ndarray-state", b"\x80\x02" + nd_global + b"N\x85RK\x01b.",
         r"NDArray is pickled with int state"),
        ("ndarray-record", b"\x80\x02" + nd_global + b"N\x85R}X\x06\x00\x00\x00handle"
                           b"cbuiltins\nbytearray\nC\x04abcd\x85Rsb.",
         r"NDArray: starts with 0x64636261, which is not an NDArray record"),
        ("stack-empty", pickle.dumps(None).replace(b"N", b""),
         r"not a valid .states pickle"),
        ("unbuilt-ndarray", b"\x80\x02" + nd_global + b"N\x85R.",
         r"NDArray is pickled with NoneType state"),
    ]


ATTACK_IDS = [a[0] for a in _attacks("m")]


@pytest.mark.parametrize("which", ATTACK_IDS)
def test_hostile_pickle_refused_and_nothing_runs(which, tmp_path, classes):
    marker = tmp_path / "pwned"
    _, data, match = next(a for a in _attacks(str(marker)) if a[0] == which)
    with pytest.raises(ValueError, match=match) as info:
        states.loads(data, source="evil.states")
    assert str(info.value).startswith("evil.states: ")
    assert not marker.exists()
    assert os.listdir(tmp_path) == []


def test_row_sparse_class_with_dense_record():
    record = nd.save_tobuffer([np.ones(2, np.float32)])[24:-8]      # one dense record
    blob = (b"\x80\x02cmxnet.ndarray.sparse\nRowSparseNDArray\nN\x85R}X\x06\x00\x00\x00handle"
            b"cbuiltins\nbytearray\nC" + bytes([len(record)]) + record + b"\x85Rsb.")
    with pytest.raises(ValueError, match=r"RowSparseNDArray: holds a default record"):
        states.loads(blob)
