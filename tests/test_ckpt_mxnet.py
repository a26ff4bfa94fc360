"""Live round trips with MXNet 1.9.1 (tests/mxnet_side/ckpt_side.py): MXNet writes random
``.params`` and ``.states`` files that adamop reads bit for bit; adamop writes files that MXNet
reads back equal, byte for byte as MXNet itself writes the same arrays; states both ways. Two
MXNet runs, about 5 s.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from mxnet_oracle import require_mxnet, run_mxnet
from mxnet_side.ckpt_values import plain
from test_states import install_stand_ins

from adamop import RowSparseArray, nd, states
from adamop import _ndfile as F
from adamop import _ndvalues as V

pytestmark = [pytest.mark.mxnet,
              pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")]

SEEDS = (101, 202)
RUNS = [
    {"name": "fp32_factor", "kwargs": {"learning_rate": 0.01, "wd": 0.01, "clip_gradient": 1.0},
     "scheduler": {"class": "FactorScheduler", "kwargs": {"step": 2, "factor": 0.8,
                                                          "base_lr": 0.01, "warmup_steps": 2}},
     "params": [{"shape": [4, 3], "dtype": "float32", "stype": "default"},
                {"shape": [5], "dtype": "float32", "stype": "default"}], "steps": 3},
    {"name": "fp16_mp_poly", "kwargs": {"learning_rate": 0.005, "multi_precision": True},
     "scheduler": {"class": "PolyScheduler", "kwargs": {"max_update": 10, "base_lr": 0.005,
                                                        "warmup_steps": 2,
                                                        "warmup_mode": "constant"}},
     "params": [{"shape": [3, 4], "dtype": "float16", "stype": "default"}], "steps": 3},
    {"name": "rsp_multifactor", "kwargs": {"learning_rate": 0.02, "begin_num_update": 5},
     "scheduler": {"class": "MultiFactorScheduler", "kwargs": {"step": [6, 7], "factor": 0.5,
                                                               "base_lr": 0.02}},
     "params": [{"shape": [6, 2], "dtype": "float32", "stype": "row_sparse"},
                {"shape": [2, 2], "dtype": "float32", "stype": "default"}], "steps": 4},
    {"name": "f64_cosine", "kwargs": {"learning_rate": 0.01, "rescale_grad": 0.5},
     "scheduler": {"class": "CosineScheduler", "kwargs": {"max_update": 6, "base_lr": 0.01,
                                                          "final_lr": 0.001}},
     "params": [{"shape": [2, 2], "dtype": "float64", "stype": "default"}], "steps": 2},
    {"name": "plain", "kwargs": {"learning_rate": 0.1, "beta1": 0.8, "epsilon": 1e-6},
     "scheduler": None, "params": [{"shape": [3], "dtype": "float32", "stype": "default"}],
     "steps": 1},
]


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def entries(value) -> list[np.ndarray]:
    """data, then the index arrays (row_sparse: indices; csr: indices, indptr), as MXNet's
    ``.data``, ``.indices``, ``.indptr`` give them."""
    rec = V.to_record(value, "value")
    if rec.stype == F.CSR:
        return [rec.data, rec.aux[1], rec.aux[0]]
    return [rec.data, *rec.aux]


def described(arrays, key, stype) -> list[np.ndarray]:
    names = {"default": ["data"], "row_sparse": ["data", "indices"],
             "csr": ["data", "indices", "indptr"]}[stype]
    return [arrays[f"{key}__{n}"] for n in names]


def adamop_files(rng):
    """Arrays of every kind a user hands to nd.save, and the files adamop writes from them."""
    torch = pytest.importorskip("torch")
    scipy_sparse = pytest.importorskip("scipy.sparse")
    dense_rows = rng.standard_normal((5, 3)).astype(np.float32)
    dense_rows[[1, 3]] = 0
    main = {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f16_big_endian": rng.standard_normal((2, 3)).astype(">f2"),
        "i64_transposed": np.arange(12, dtype=np.int64).reshape(3, 4).T,
        "u8": rng.integers(0, 255, (4,), dtype=np.uint8),
        "i8": rng.integers(-128, 127, (2, 2), dtype=np.int8),
        "i32": rng.integers(-2 ** 31, 2 ** 31 - 1, (3,), dtype=np.int32),
        "flags": rng.random(5) < 0.5,
        "bf16_torch": torch.randn(2, 3).to(torch.bfloat16),
        "f64_torch": torch.randn(4, dtype=torch.float64),
        "rsp_numpy": RowSparseArray.from_dense(dense_rows),
        "rsp_torch_coo": torch.from_numpy(dense_rows).to_sparse(1),
        "rsp_empty": RowSparseArray(np.zeros((0, 3), np.float32), np.zeros(0, np.int64), (5, 3)),
        "csr_scipy": scipy_sparse.random(4, 5, density=0.4, format="csr", dtype=np.float32,
                                         random_state=int(rng.integers(1000))),
        "csr_torch": torch.from_numpy(dense_rows).to_sparse_csr(),
        "名前 ü/😀": rng.standard_normal((1, 2)).astype(np.float64),
    }
    np_shape = {"scalar": np.float32(rng.standard_normal()), "i0": np.array(7, np.int64),
                "rows0": np.zeros((0, 4), np.float16), "m": np.ones((2, 2), np.float32)}
    return {"ad_main.params": main, "ad_list.params": list(main.values())[:5],
            "ad_np.params": np_shape}


@pytest.fixture(scope="module")
def roundtrip(tmp_path_factory):
    require_mxnet()
    folder = tmp_path_factory.mktemp("ckpt")
    tasks = [{"task": "write", "seed": s, "prefix": f"mx{s}"} for s in SEEDS]
    tasks.append({"task": "states_write", "seed": 7, "runs": RUNS})
    first, written = run_mxnet("ckpt_side.py", {}, {"dir": str(folder), "tasks": tasks})
    with pytest.MonkeyPatch.context() as mp:
        install_stand_ins(mp)
        loaded_states = {}
        for run in RUNS:
            for suffix in ("__states_opt", "__states"):
                key = run["name"] + suffix
                loaded_states[key] = states.loads(first[key].tobytes(), source=key)
        dumped = {f"ad_{k}": np.frombuffer(states.dumps(v), np.uint8)
                  for k, v in loaded_states.items()}
    dumped.update(_through_updater(first))
    mx_files = {name: desc for result in written[:len(SEEDS)] for name, desc in result.items()}
    ours = adamop_files(np.random.default_rng(5))
    for name, data in ours.items():
        nd.save(folder / name, data)
    again = {f"ad_{name}": nd.load(folder / name) for name in mx_files}
    for name, loaded in again.items():   # MXNet's arrays, as fresh arrays: MXNet's own bytes?
        nd.save(folder / name, dict(loaded) if isinstance(loaded, dict) else list(loaded))
    tasks = [{"task": "read", "files": sorted(ours) + sorted(again)},
             {"task": "states_read", "inputs": sorted(dumped)}]
    second, read = run_mxnet("ckpt_side.py", dumped, {"dir": str(folder), "tasks": tasks})
    return {"folder": folder, "first": first, "mx_files": mx_files, "states_meta": written[-1],
            "loaded_states": loaded_states, "dumped": dumped, "ours": ours, "second": second,
            "read": read[0], "states_read": read[1]}


def _real_updater():
    optimizer = pytest.importorskip("adamop.optimizer")
    if not hasattr(optimizer, "Updater"):
        pytest.skip("adamop.optimizer has no Updater yet")
    return optimizer


def _through_updater(first) -> dict:
    """MXNet's states through adamop's own Updater: set_states, then get_states."""
    try:
        optimizer = _real_updater()
    except pytest.skip.Exception:
        return {}
    out = {}
    for run in RUNS:
        for suffix, dump in (("__states_opt", True), ("__states", False)):
            updater = optimizer.get_updater(optimizer.create("adam"))
            updater.set_states(first[run["name"] + suffix].tobytes())
            out[f"up_{run['name']}{suffix}"] = np.frombuffer(updater.get_states(dump), np.uint8)
    return out


def test_mxnet_files_load_bit_for_bit_and_resave_identically(roundtrip):
    folder, arrays = roundtrip["folder"], roundtrip["first"]
    assert len(roundtrip["mx_files"]) == 4 * len(SEEDS)
    for name, desc in roundtrip["mx_files"].items():
        raw = (folder / name).read_bytes()
        loaded = nd.load(folder / name)
        assert isinstance(loaded, dict) == (desc["kind"] == "dict")
        values = list(loaded.items()) if isinstance(loaded, dict) else [(None, v) for v in loaded]
        assert len(values) == len(desc["entries"])
        for i, (entry, (key, value)) in enumerate(zip(desc["entries"], values)):
            assert key == entry["name"] or desc["kind"] == "list"
            want = described(arrays, f"{name}__{i}", entry["stype"])
            got = entries(value)
            assert all(same_bits(g, w) for g, w in zip(got, want)), (name, entry)
        assert nd.save_tobuffer(loaded) == raw, name


def test_mxnet_reads_what_adamop_writes(roundtrip):
    arrays, read = roundtrip["second"], roundtrip["read"]
    for name, data in roundtrip["ours"].items():
        desc = read[name]
        values = list(data.items()) if isinstance(data, dict) else [(None, v) for v in data]
        assert desc["kind"] == ("dict" if isinstance(data, dict) else "list")
        assert [e["name"] for e in desc["entries"]] == [k for k, _ in values] or \
            desc["kind"] == "list"
        for i, (entry, (_, value)) in enumerate(zip(desc["entries"], values)):
            want = described(arrays, f"{name}__{i}", entry["stype"])
            assert all(same_bits(g, w) for g, w in zip(entries(value), want)), (name, entry)
        # MXNet, saving what it loaded, writes the very bytes adamop wrote
        written = (roundtrip["folder"] / name).read_bytes()
        assert arrays[f"{name}__resaved"].tobytes() == written, name


def test_adamop_writes_what_mxnet_writes(roundtrip):
    """MXNet's random arrays, saved by adamop as fresh arrays, are the bytes MXNet writes."""
    arrays = roundtrip["second"]
    for name in roundtrip["mx_files"]:
        written = (roundtrip["folder"] / f"ad_{name}").read_bytes()
        assert arrays[f"ad_{name}__resaved"].tobytes() == written, name


def test_mxnet_states_load_bit_for_bit(roundtrip):
    first, meta = roundtrip["first"], roundtrip["states_meta"]
    for run in RUNS:
        want = meta[run["name"]]
        for suffix in ("__states_opt", "__states"):
            loaded = roundtrip["loaded_states"][run["name"] + suffix]
            saved = loaded[0] if suffix == "__states_opt" else loaded
            if suffix == "__states_opt":
                assert plain(loaded[1].__getstate__()) == want["attrs"]
            _check_states(saved, want["states"], first, run["name"])
            # the same bytes as MXNet's pickle, from adamop's objects
            assert states.dumps(loaded) == first[run["name"] + suffix].tobytes()


def test_mxnet_restores_what_adamop_dumps(roundtrip):
    meta, described_back = roundtrip["states_meta"], roundtrip["states_read"]
    arrays = roundtrip["second"]
    for run in RUNS:
        for suffix in ("__states_opt", "__states"):
            back = described_back[f"ad_{run['name']}{suffix}"]
            want = meta[run["name"]]
            assert back["states"] == want["states"]       # classes, storage, dtype, shape
            for idx, kinds in want["states"].items():
                for j, kind in enumerate(kinds):
                    key = f"{run['name']}__s{idx}_{j}"
                    assert same_bits(arrays[f"ad_{run['name']}{suffix}__s{idx}_{j}"],
                                     roundtrip["first"][key])
            if suffix == "__states_opt":
                assert back["optimizer"] == "mxnet.optimizer.optimizer.Adam"
                assert back["attrs"] == want["attrs"]
            assert back["states_synced"] == sorted(want["states"])


def test_updater_set_and_get_states_with_mxnet(roundtrip):
    """adamop's Updater: MXNet's .states in with set_states, get_states(True/False) out; MXNet's
    Updater.set_states restores from those bytes the states and optimizer it had."""
    optimizer = _real_updater()
    first, meta = roundtrip["first"], roundtrip["states_meta"]
    described_back, arrays = roundtrip["states_read"], roundtrip["second"]
    for run in RUNS:
        updater = optimizer.get_updater(optimizer.create("adam"))
        updater.set_states(first[run["name"] + "__states_opt"].tobytes())
        assert isinstance(updater.optimizer, optimizer.Adam)
        assert plain(updater.optimizer.__getstate__()) == meta[run["name"]]["attrs"]
        _check_states(updater.states, meta[run["name"]]["states"], first, run["name"])
        for suffix in ("__states_opt", "__states"):
            back = described_back[f"up_{run['name']}{suffix}"]
            assert back["states"] == meta[run["name"]]["states"]
            for idx, kinds in back["states"].items():
                for j in range(len(kinds)):
                    assert same_bits(arrays[f"up_{run['name']}{suffix}__s{idx}_{j}"],
                                     first[f"{run['name']}__s{idx}_{j}"])
            if suffix == "__states_opt":
                assert back["attrs"] == meta[run["name"]]["attrs"]


def _check_states(saved, kinds, arrays, run):
    assert sorted(map(str, saved)) == sorted(kinds)
    for idx, parts in kinds.items():
        state = saved[int(idx)]
        flat = [state[0], *state[1]] if isinstance(state[1], tuple) else list(state)
        assert len(flat) == len(parts)
        for j, (kind, value) in enumerate(zip(parts, flat)):
            assert re.search(r"(RowSparse)?NDArray$", kind[0])
            assert isinstance(value, RowSparseArray) == (kind[1] == "row_sparse")
            dense = value.todense() if isinstance(value, RowSparseArray) else value
            assert same_bits(dense, arrays[f"{run}__s{idx}_{j}"])
            if isinstance(value, RowSparseArray):
                assert same_bits(value.indices, arrays[f"{run}__s{idx}_{j}__indices"])
