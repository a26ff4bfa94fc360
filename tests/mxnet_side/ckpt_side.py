"""MXNet 1.9.1 side of the checkpoint tests (``.params`` / ``.states``; runs in the MXNet venv).

``python ckpt_side.py in.npz out.npz``; ``__meta__`` is ``{"dir": folder, "tasks": [...]}`` and
the meta written back holds one result per task. Tasks:

* ``{"task": "write", "seed", "prefix"}``: MXNet writes random files into ``dir``
  (``<prefix>_dict.params``: every dtype and storage, names with non-ASCII; ``<prefix>_list``;
  ``<prefix>_np.params`` under np-shape: 0-d and zero-size arrays; ``<prefix>_ctx.params``: other
  contexts) and describes them (below).
* ``{"task": "read", "files": [name, ...]}``: ``mx.nd.load`` of each file (np-shape when its
  first record is V3), described, plus ``<file>__resaved``: the bytes ``mx.nd.save`` writes for
  what it loaded.
* ``{"task": "states_write", "seed", "runs": [RUN]}``: each RUN =
  ``{"name", "kwargs", "scheduler": {"class", "kwargs"} | null, "params": [{"shape", "dtype",
  "stype"}], "steps"}``: an Updater over ``mx.optimizer.create("adam", ...)`` steps with random
  grads, then writes ``<name>__states_opt`` / ``<name>__states`` (uint8: ``get_states(True)`` /
  ``get_states(False)``) and describes its states and optimizer.
* ``{"task": "states_read", "inputs": [name, ...]}``: ``Updater.set_states`` of the uint8 input
  ``<name>`` on a fresh Updater; describes the states and optimizer (``<name>__...``).

A file is described as meta ``{"kind": "dict"|"list", "entries": [{"name", "stype", "dtype",
"shape"}]}`` with arrays ``<file>__<i>__data`` (dense: the array; row_sparse: stored rows; csr:
values), ``__indices`` (row_sparse, csr) and ``__indptr`` (csr).
"""
import json
import os
import sys

import mxnet as mx
import numpy as np
from ckpt_values import plain

BF16 = np.dtype([("bfloat16", np.uint16)])
DTYPES = ["float32", "float64", "float16", "uint8", "int8", "int32", "int64", "bool", "bf16"]
NAMES = ["w", "fc1_weight", "gewicht_ü", "重み", "emoji_😀", "", "a b/c:d", "x" * 300]


def rand_dense(rng, dtype, shape):
    if dtype == "bool":
        return rng.rand(*shape) < 0.5
    if dtype == "bf16":
        return rng.randint(0, 2 ** 16, size=shape).astype(np.uint16).view(BF16).reshape(shape)
    if dtype in ("uint8", "int8", "int32", "int64"):
        info = np.iinfo(dtype)
        return rng.randint(max(info.min, -2 ** 31), min(info.max, 2 ** 31 - 1),
                           size=shape).astype(dtype)
    x = (rng.randn(*shape) * 10 ** rng.uniform(-3, 3, size=shape)).astype(dtype)
    x.reshape(-1)[: x.size // 7] = 0.0
    return x


def nd_dense(x):
    return mx.nd.array(x, dtype=x.dtype)


def rand_array(rng, stype, dtype):
    ndim = rng.randint(1, 5) if stype == "default" else (2 if stype == "csr" else rng.randint(1, 4))
    shape = tuple(int(d) for d in rng.randint(1, 6, size=ndim))
    if stype == "default":
        return nd_dense(rand_dense(rng, dtype, shape))
    if stype == "row_sparse":
        rows = np.sort(rng.choice(shape[0], size=rng.randint(0, shape[0] + 1), replace=False))
        data = rand_dense(rng, dtype, (len(rows),) + shape[1:])
        if rng.rand() < 0.3:
            dense = np.zeros(shape, data.dtype)
            dense[rows] = data
            return nd_dense(dense).tostype("row_sparse")
        return mx.nd.sparse.row_sparse_array((data, rows), shape=shape, dtype=data.dtype)
    dense = rand_dense(rng, dtype, shape)
    dense[rng.rand(*shape) < 0.5] = 0
    if rng.rand() < 0.5:
        return nd_dense(dense).tostype("csr")      # may record the (0,) storage shape
    indptr = np.concatenate([[0], np.cumsum((dense != 0).sum(axis=1))])
    rows, cols = np.nonzero(dense)
    return mx.nd.sparse.csr_matrix((dense[rows, cols], cols, indptr), shape=shape,
                                   dtype=dense.dtype)


def describe(arrays, kind, prefix, out):
    entries = []
    for i, (name, a) in enumerate(arrays):
        dtype = "bfloat16" if a.dtype == BF16 else np.dtype(a.dtype).name
        entries.append({"name": name, "stype": a.stype, "dtype": dtype, "shape": list(a.shape)})
        key = f"{prefix}__{i}"
        if a.stype == "default":
            out[key + "__data"] = a.asnumpy()
        elif a.stype == "row_sparse":
            out[key + "__data"], out[key + "__indices"] = a.data.asnumpy(), a.indices.asnumpy()
        else:
            out[key + "__data"], out[key + "__indices"] = a.data.asnumpy(), a.indices.asnumpy()
            out[key + "__indptr"] = a.indptr.asnumpy()
    return {"kind": kind, "entries": entries}


def task_write(spec, folder, out):
    rng = np.random.RandomState(spec["seed"])
    p, result = spec["prefix"], {}
    arrays = []
    for i in range(14):
        stype = ["default", "default", "row_sparse", "csr"][i % 4]
        dtype = DTYPES[rng.randint(len(DTYPES))]
        if stype != "default" and dtype in ("bool", "bf16"):
            dtype = "float32"
        arrays.append((f"{NAMES[i % len(NAMES)]}_{i}" if i else "", rand_array(rng, stype, dtype)))
    arrays.append(("empty_rows", mx.nd.sparse.zeros("row_sparse", (5, 3))))
    arrays.append(("empty_csr", mx.nd.sparse.zeros("csr", (3, 4))))
    files = {f"{p}_dict.params": ("dict", arrays), f"{p}_list.params": ("list", arrays[:6])}
    for name, (kind, content) in files.items():
        mx.nd.save(os.path.join(folder, name),
                   dict(content) if kind == "dict" else [a for _, a in content])
        result[name] = describe(content, kind, name, out)
    with mx.util.np_shape(True):
        npa = [("scalar", nd_dense(rand_dense(rng, "float32", ()))),
               ("scalar_i64", nd_dense(rand_dense(rng, "int64", ()))),
               ("zero_rows", nd_dense(rand_dense(rng, "float16", (0, 3)))),
               ("zero_mid", nd_dense(rand_dense(rng, "int32", (2, 0, 4)))),
               ("m", nd_dense(rand_dense(rng, "float64", (2, 3))))]
        mx.nd.save(os.path.join(folder, f"{p}_np.params"), dict(npa))
        result[f"{p}_np.params"] = describe(npa, "dict", f"{p}_np.params", out)
    ctx = [("pinned", mx.nd.array(rand_dense(rng, "float32", (2, 2)), ctx=mx.cpu_pinned(0))),
           ("cpu3", mx.nd.array(rand_dense(rng, "float32", (3,)), ctx=mx.cpu(3))),
           ("rsp_cpu2", mx.nd.sparse.row_sparse_array(
               (rand_dense(rng, "float32", (1, 2)), [1]), shape=(3, 2), ctx=mx.cpu(2)))]
    mx.nd.save(os.path.join(folder, f"{p}_ctx.params"), dict(ctx))
    result[f"{p}_ctx.params"] = describe(ctx, "dict", f"{p}_ctx.params", out)
    return result


def task_read(spec, folder, out):
    result = {}
    for name in spec["files"]:
        path = os.path.join(folder, name)
        with open(path, "rb") as f:
            head = f.read(28)
        np_shape = head[24:28] == b"\xca\xfa\x93\xf9"
        with mx.util.np_shape(np_shape):
            loaded = mx.nd.load(path)
            kind = "dict" if isinstance(loaded, dict) else "list"
            items = list(loaded.items()) if kind == "dict" else [(None, a) for a in loaded]
            result[name] = describe(items, kind, name, out)
            resaved = os.path.join(folder, name + ".mxnet")
            mx.nd.save(resaved, loaded)
        out[name + "__resaved"] = np.frombuffer(open(resaved, "rb").read(), np.uint8)
    return result


def describe_updater(upd, prefix, out):
    kinds = {}
    for idx, state in upd.states.items():
        flat = list(state) if isinstance(state, tuple) else [state]
        if len(flat) == 2 and isinstance(flat[1], tuple):        # (weight32, (mean, var))
            flat = [flat[0], *flat[1]]
        kinds[str(idx)] = []
        for j, a in enumerate(flat):
            kinds[str(idx)].append([type(a).__module__ + "." + type(a).__name__, a.stype,
                                    np.dtype(a.dtype).name, list(a.shape)])
            out[f"{prefix}__s{idx}_{j}"] = a.asnumpy()
            if a.stype == "row_sparse":
                out[f"{prefix}__s{idx}_{j}__indices"] = a.indices.asnumpy()
    opt = upd.optimizer
    return {"states": kinds, "optimizer": type(opt).__module__ + "." + type(opt).__name__,
            "attrs": plain({k: v for k, v in vars(opt).items() if k != "param_dict"})}


def task_states_write(spec, folder, out):
    rng = np.random.RandomState(spec["seed"])
    result = {}
    for run in spec["runs"]:
        kwargs = dict(run["kwargs"])
        if run["scheduler"]:
            cls = getattr(mx.lr_scheduler, run["scheduler"]["class"])
            kwargs["lr_scheduler"] = cls(**run["scheduler"]["kwargs"])
        upd = mx.optimizer.get_updater(mx.optimizer.create("adam", **kwargs))
        weights = []
        for p in run["params"]:
            w = nd_dense(rand_dense(rng, p["dtype"], tuple(p["shape"])))
            weights.append(w.tostype("row_sparse") if p["stype"] == "row_sparse" else w)
        for step in range(run["steps"]):
            for i, (p, w) in enumerate(zip(run["params"], weights)):
                g = nd_dense(rand_dense(rng, p["dtype"], tuple(p["shape"])))
                if p["stype"] == "row_sparse":
                    g = g.tostype("row_sparse")
                upd(i, g, w)
        name = run["name"]
        out[name + "__states_opt"] = np.frombuffer(upd.get_states(True), np.uint8)
        out[name + "__states"] = np.frombuffer(upd.get_states(False), np.uint8)
        result[name] = describe_updater(upd, name, out)
    return result


def task_states_read(spec, folder, z, out):
    result = {}
    for name in spec["inputs"]:
        upd = mx.optimizer.get_updater(mx.optimizer.create("sgd"))
        upd.set_states(z[name].tobytes())
        result[name] = describe_updater(upd, name, out)
        result[name]["states_synced"] = sorted(str(k) for k in upd.states_synced)
    return result


def main():
    src, dst = sys.argv[1], sys.argv[2]
    z = np.load(src)
    meta = json.loads(str(z["__meta__"]))
    out, results = {}, []
    for spec in meta["tasks"]:
        task = spec["task"]
        if task == "states_read":
            results.append(task_states_read(spec, meta["dir"], z, out))
        else:
            results.append(globals()["task_" + task](spec, meta["dir"], out))
    np.savez(dst, __meta__=np.array(json.dumps(results)), **out)


if __name__ == "__main__":
    main()
