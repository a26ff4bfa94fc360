"""MXNet 1.9.1 side of the symbol round-trip tests (runs in the MXNet venv, see mxnet_oracle.py).

``python sym_roundtrip.py in.npz out.npz``. ``__meta__`` is a list of cases, each with
``id``, ``forward_calls`` and one way of getting a graph:
* ``json``: symbol JSON text, loaded with ``mx.sym.load_json``;
* ``compose``: ``{"vars": [{"name", "attr"}], "ops": [{"name", "inputs", "params"}],
  "heads": [names]}``, composed positionally with ``_symbol_creator`` (``mx.sym.adam_update``
  cannot build the op in 1.9.1, apache/mxnet #5045);
* ``imperative``: ``[{"inputs": [w, g, m, v], "params"}]``, run with ``mx.nd.adam_update`` in
  order, ``out=weight`` (the only way MXNet runs a row_sparse grad).
Arrays come in as ``<id>__arg__<name>`` / ``<id>__aux__<name>``; a row_sparse array as
``<id>__rsp__<name>__data`` + ``__indices`` + ``__shape``. Graph cases write ``<id>__out__<i>``
and ``<id>__aux_out__<name>``; imperative cases write ``<id>__w__<name>`` (new weights) and
``<id>__aux_out__<name>``. The meta written back maps id -> MXNet's ``tojson()`` and lists.
"""
import ctypes
import json
import sys

import mxnet as mx
import numpy as np
from mxnet._ctypes.symbol import _symbol_creator
from mxnet.base import OpHandle, _LIB, c_str, check_call


def arrays_of(z, cid, kind):
    prefix = f"{cid}__{kind}__"
    return {k[len(prefix):]: z[k] for k in z.files if k.startswith(prefix)}


def nd(a):
    return mx.nd.array(a, dtype=a.dtype)


def rsp_arrays(z, cid):
    out = {}
    for name in {k.split("__")[2] for k in z.files if k.startswith(f"{cid}__rsp__")}:
        p = f"{cid}__rsp__{name}__"
        out[name] = mx.nd.sparse.row_sparse_array(
            (nd(z[p + "data"]), mx.nd.array(z[p + "indices"], dtype="int64")),
            shape=tuple(int(s) for s in z[p + "shape"]))
    return out


def compose(spec):
    handle = OpHandle()
    check_call(_LIB.NNGetOpHandle(c_str("adam_update"), ctypes.byref(handle)))
    made = {v["name"]: mx.sym.var(v["name"], attr=v.get("attr") or None) for v in spec["vars"]}
    for op in spec["ops"]:
        keys = list(op["params"])
        made[op["name"]] = _symbol_creator(handle.value, [made[i] for i in op["inputs"]], {},
                                           keys, [op["params"][k] for k in keys], op["name"],
                                           False)
    heads = [made[h] for h in spec["heads"]]
    return heads[0] if len(heads) == 1 else mx.sym.Group(heads)


def main(src, dst):
    z = np.load(src, allow_pickle=False)
    cases = json.loads(str(z["__meta__"]))
    out, meta = {}, {}
    for case in cases:
        cid = case["id"]
        if "imperative" in case:
            dense = {**arrays_of(z, cid, "arg"), **arrays_of(z, cid, "aux")}
            bound = {k: nd(a) for k, a in dense.items()}
            bound.update(rsp_arrays(z, cid))
            for step in case["imperative"]:
                w, g, m, v = (bound[n] for n in step["inputs"])
                for _ in range(case["forward_calls"]):
                    mx.nd.adam_update(w, g, m, v, out=w, **step["params"])
                out[f"{cid}__w__{step['inputs'][0]}"] = w.asnumpy()
                for n in step["inputs"][2:]:
                    out[f"{cid}__aux_out__{n}"] = bound[n].asnumpy()
            continue
        sym = mx.sym.load_json(case["json"]) if "json" in case else compose(case["compose"])
        args = {k: nd(a) for k, a in arrays_of(z, cid, "arg").items()}
        aux = {k: nd(a) for k, a in arrays_of(z, cid, "aux").items()}
        meta[cid] = {"tojson": sym.tojson(), "arguments": sym.list_arguments(),
                     "aux_states": sym.list_auxiliary_states(), "outputs": sym.list_outputs()}
        if case["forward_calls"] == 0:
            continue
        ex = sym.bind(mx.cpu(), args=args, aux_states=aux)
        for _ in range(case["forward_calls"]):
            outs = ex.forward()
        for i, o in enumerate(outs):
            out[f"{cid}__out__{i}"] = o.asnumpy()
        for k, a in aux.items():
            out[f"{cid}__aux_out__{k}"] = a.asnumpy()
    np.savez(dst, __meta__=np.array(json.dumps(meta)), **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
