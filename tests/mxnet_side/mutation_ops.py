"""MXNet side of tests/test_mutation.py: which arrays ``adam_update`` changes, per choice of out.

Usage: python mutation_ops.py in.npz out.npz
in.npz: ``<id>__<weight|grad|mean|var>`` (float32) and ``__meta__`` =
{"cases": [{"id", "out": "weight"|"none"|"mean"|"var"|"grad", "kwargs": {...}}]}.
out.npz: ``<id>__<weight|grad|mean|var>_after`` and ``<id>__result`` (the returned array), and
``__meta__`` = {"errors": {id: message}, "result_is_out": {id: bool}}.
"""
import json
import sys

import numpy as np
import mxnet as mx

NAMES = ("weight", "grad", "mean", "var")


def main(src, dst):
    with np.load(src, allow_pickle=False) as f:
        z = {k: f[k] for k in f.files}
    meta = json.loads(str(z.pop("__meta__")))
    out, errors, result_is_out = {}, {}, {}
    for case in meta["cases"]:
        cid = case["id"]
        arrays = {n: mx.nd.array(z[cid + "__" + n], dtype=z[cid + "__" + n].dtype)
                  for n in NAMES}
        args = [arrays[n] for n in NAMES]
        try:
            if case["out"] == "none":
                result = mx.nd.adam_update(*args, **case["kwargs"])
            else:
                target = arrays[case["out"]]
                result = mx.nd.adam_update(*args, out=target, **case["kwargs"])
                result_is_out[cid] = result is target
            mx.nd.waitall()
        except mx.base.MXNetError as e:
            errors[cid] = str(e).split("\n")[0][:300]
            continue
        for n in NAMES:
            out[cid + "__" + n + "_after"] = arrays[n].asnumpy()
        out[cid + "__result"] = result.asnumpy()
    np.savez(dst, __meta__=np.array(json.dumps({"errors": errors,
                                                "result_is_out": result_is_out})), **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
