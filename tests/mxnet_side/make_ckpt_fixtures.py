"""Writes tests/data/ckpt_extra/: edge-case checkpoint files written (or loaded) by MXNet 1.9.1.

Run once, in the MXNet venv: ``.mxnet/bin/python tests/mxnet_side/make_ckpt_fixtures.py``.
Each ``.params`` file is what MXNet wrote (or, for the legacy formats MXNet no longer writes,
bytes laid out as ``NDArray::LegacyLoad`` reads them); ``expected.npz`` holds what MXNet's
``mx.nd.load`` returned for each (meta ``files``: name -> description, see ckpt_side.describe),
and for each ``.states`` file the arrays and optimizer attributes MXNet's ``Updater.set_states``
restored (meta ``states``; ckpt_side.describe_updater).
"""
import json
import os
import pickle
import struct
import sys

import mxnet as mx
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ckpt_side import BF16, describe, describe_updater  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "ckpt_extra")
HEADER = struct.pack("<QQ", 0x112, 0)


def container(records, names=()):
    out = HEADER + struct.pack("<Q", len(records)) + b"".join(records)
    out += struct.pack("<Q", len(names))
    for n in names:
        out += struct.pack("<Q", len(n.encode())) + n.encode()
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.RandomState(11)
    files = {}

    def save(name, data, np_shape=False):
        with mx.util.np_shape(np_shape):
            mx.nd.save(os.path.join(OUT, name), data)

    bf = rng.randint(0, 2 ** 16, size=(2, 3)).astype(np.uint16).view(BF16).reshape(2, 3)
    save("bf16_bool.params", {"bf": mx.nd.array(bf, dtype=BF16),
                              "flags": mx.nd.array(rng.rand(5) < 0.5, dtype=np.bool_),
                              "u8": mx.nd.array(rng.randint(0, 255, (2, 2)), dtype=np.uint8)})
    save("single.params", mx.nd.array(rng.randn(3).astype(np.float32)))
    save("empty_dict.params", {})
    rsp = mx.nd.sparse.row_sparse_array((rng.randn(3, 2).astype(np.float32), [4, 1, 1]),
                                        shape=(6, 2))
    rsp2 = mx.nd.sparse.row_sparse_array((rng.randn(2, 2).astype(np.float32), [3, 0]),
                                         shape=(5, 2))
    save("unsorted_rsp.params", {"dup": rsp, "unsorted": rsp2})
    save("zero_size_v2.params", {"rows0": mx.nd.array(np.zeros((0, 3), np.float32)),
                                 "cols0": mx.nd.array(np.zeros((2, 0), np.float32))})
    save("ctx.params", {"pinned": mx.nd.array([1.5, -2.0], ctx=mx.cpu_pinned(0)),
                        "cpu3": mx.nd.array([[3.0]], ctx=mx.cpu(3), dtype=np.float64)})
    save("np_shape_types.params", {"b0": mx.nd.array(np.bool_(True), dtype=np.bool_),
                                   "i0": mx.nd.array(np.int64(-7), dtype=np.int64),
                                   "e": mx.nd.array(np.zeros((3, 0, 2), np.float16),
                                                    dtype=np.float16)}, np_shape=True)
    # formats MXNet 1.9.1 reads but no longer writes (layouts of LegacyLoad)
    v1 = struct.pack("<Ii", 0xF993FAC8, 2) + struct.pack("<qq", 2, 3) + struct.pack("<iii", 1, 0, 0)
    v1 += rng.randn(6).astype(np.float32).tobytes()
    v1_0d = struct.pack("<Ii", 0xF993FAC8, 0) + struct.pack("<iii", 1, 0, 6)
    v1_0d += np.int64(42).tobytes()
    bare = struct.pack("<I", 2) + struct.pack("<II", 3, 1) + struct.pack("<iii", 1, 0, 1)
    bare += rng.randn(3).astype(np.float64).tobytes()
    with open(os.path.join(OUT, "legacy_v1.params"), "wb") as f:
        f.write(container([v1, v1_0d], ["w", "scalar"]))
    with open(os.path.join(OUT, "legacy_bare.params"), "wb") as f:
        f.write(container([bare]))
    arrays = {}
    for name in sorted(n for n in os.listdir(OUT) if n.endswith(".params")):
        path = os.path.join(OUT, name)
        with open(path, "rb") as f:
            np_shape = f.read(28)[24:28] == b"\xca\xfa\x93\xf9"
        with mx.util.np_shape(np_shape):
            loaded = mx.nd.load(path)
            items = list(loaded.items()) if isinstance(loaded, dict) else \
                [(None, a) for a in loaded]
            files[name] = describe(items, "dict" if isinstance(loaded, dict) else "list",
                                   name, arrays)

    # .states: a row_sparse weight (RowSparseNDArray states), every scheduler, and the same
    # states pickled with other protocols (Python 2 era MXNet wrote protocol 2)
    states = {}
    schedulers = {"multifactor": mx.lr_scheduler.MultiFactorScheduler([2, 4], 0.5, base_lr=0.1),
                  "cosine": mx.lr_scheduler.CosineScheduler(10, base_lr=0.05, final_lr=0.001,
                                                            warmup_steps=2),
                  "factor": mx.lr_scheduler.FactorScheduler(2, 0.9, base_lr=0.02, warmup_steps=3,
                                                            warmup_begin_lr=0.001,
                                                            warmup_mode="constant"),
                  "poly": mx.lr_scheduler.PolyScheduler(12, base_lr=0.03, pwr=3)}
    for tag, sched in schedulers.items():
        opt = mx.optimizer.create("adam", learning_rate=sched.base_lr, lr_scheduler=sched,
                                  begin_num_update=3, wd=0.01)
        upd = mx.optimizer.get_updater(opt)
        w = [mx.nd.array(rng.randn(5, 2).astype(np.float32)).tostype("row_sparse"),
             mx.nd.array(rng.randn(3).astype(np.float32))]
        for step in range(4):
            g0 = mx.nd.sparse.row_sparse_array((rng.randn(2, 2).astype(np.float32),
                                                sorted(rng.choice(5, 2, replace=False))),
                                               shape=(5, 2))
            upd(0, g0, w[0])
            if step % 2:
                upd(1, mx.nd.array(rng.randn(3).astype(np.float32)), w[1])
        blob = upd.get_states(dump_optimizer=True)
        with open(os.path.join(OUT, f"rsp_{tag}.states"), "wb") as f:
            f.write(blob)
        loaded = mx.optimizer.get_updater(mx.optimizer.create("sgd"))
        loaded.set_states(blob)
        states[f"rsp_{tag}.states"] = describe_updater(loaded, f"rsp_{tag}.states", arrays)
        if tag == "multifactor":
            for protocol in (0, 1, 2, 3, 5):
                with open(os.path.join(OUT, f"rsp_{tag}_p{protocol}.states"), "wb") as f:
                    f.write(pickle.dumps((upd.states, upd.optimizer), protocol=protocol))
    np.savez(os.path.join(OUT, "expected.npz"),
             __meta__=np.array(json.dumps({"files": files, "states": states,
                                           "mxnet_version": mx.__version__})), **arrays)


if __name__ == "__main__":
    main()
