"""MXNet side of tests/test_optimizer_errors.py (runs under MXNet 1.9.1).

Usage: python optimizer_errors.py in.npz out.npz
in.npz ``__meta__`` = {"rows": [{"id", "target", "kwargs", "call"}]}: ``target`` is a scheduler
class, "Adam" or "create" (kwargs then hold "name"); ``call`` = [method, args] is called on the
object built; a kwarg ``lr_scheduler`` is {"class", "kwargs"}.
out.npz ``__meta__`` = {id: null (MXNet accepted it) or [exception type name, message]}.
"""
import json
import sys

import mxnet as mx
import numpy as np


def build(row):
    kwargs = dict(row["kwargs"])
    if isinstance(kwargs.get("lr_scheduler"), dict):
        spec = kwargs["lr_scheduler"]
        kwargs["lr_scheduler"] = getattr(mx.lr_scheduler, spec["class"])(**spec["kwargs"])
    target = row["target"]
    if target == "create":
        return mx.optimizer.create(kwargs.pop("name"), **kwargs)
    if target == "Adam":
        return mx.optimizer.Adam(**kwargs)
    return getattr(mx.lr_scheduler, target)(**kwargs)


def main(src, dst):
    with np.load(src, allow_pickle=False) as f:
        meta = json.loads(str(f["__meta__"]))
    out = {}
    for row in meta["rows"]:
        try:
            obj = build(row)
            if row.get("call"):
                method, args = row["call"]
                getattr(obj, method)(*args)
            out[row["id"]] = None
        except Exception as e:   # what MXNet raises is the answer
            out[row["id"]] = [type(e).__name__, str(e)]
    np.savez(dst, __meta__=np.array(json.dumps(out)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
