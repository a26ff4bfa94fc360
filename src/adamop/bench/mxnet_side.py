"""Run under MXNet 1.9.1's own interpreter (it needs numpy<1.24, so it cannot share adamop's).

A line protocol on stdin/stdout, one JSON object per line, so the parent can interleave MXNet's
steps with its own: ``{"op": "setup", "case": {...}}`` builds the arrays and runs one checked
step; ``{"op": "time", "calls": k}`` answers the seconds k steps took (``waitall`` included);
``{"op": "quit"}`` ends. This file imports neither adamop nor anything outside MXNet and NumPy.
"""
import json
import sys
import time

import mxnet as mx
import numpy as np

state = {}


def setup(case, lr):
    rng = np.random.default_rng(0)
    dt = np.dtype(case["dtype"])

    def arrays(shape):
        return [mx.nd.array(x.astype(dt), dtype=dt) for x in (
            rng.standard_normal(shape), rng.standard_normal(shape),
            rng.standard_normal(shape) * 0.1, rng.random(shape) * 0.1)]
    kind = case["kind"]
    idx = None
    if kind == "dense":
        tensors = [arrays((case["size"],))]
    elif kind == "multi":
        tensors = [arrays((case["size"],)) for _ in range(case["count"])]
    else:
        w, _, m, v = arrays((case["size"], case["row_length"]))
        idx = np.sort(rng.choice(case["size"], case["rows"], replace=False))
        data = rng.standard_normal((case["rows"], case["row_length"])).astype(dt)
        g = mx.nd.sparse.row_sparse_array((data, idx), shape=w.shape, dtype=dt)
        tensors = [[w, g, m, v]]
    lazy = kind != "std"
    rows = idx if kind == "lazy" else slice(None)   # lazy: only the grad's rows move

    def step():
        for w, g, m, v in tensors:
            mx.nd.adam_update(w, g, m, v, lr=lr, lazy_update=lazy, out=w)
        mx.nd.waitall()
    before = tensors[0][0].asnumpy()
    step()
    moved = np.abs(tensors[0][0].asnumpy().astype(np.float64) - before)[rows]
    finite = moved[np.isfinite(moved)]
    if not (finite.size >= 0.99 * moved.size and 0 < np.median(finite) <= 100 * lr):
        raise ValueError("implausible MXNet result (median |change| %g)" % np.median(finite))
    state["step"] = step


def main():
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            if msg["op"] == "quit":
                break
            if msg["op"] == "version":
                reply = {"ok": True, "version": mx.__version__}
            elif msg["op"] == "setup":
                setup(msg["case"], msg["lr"])
                reply = {"ok": True, "version": mx.__version__}
            else:
                step = state["step"]
                t0 = time.perf_counter()
                for _ in range(msg["calls"]):
                    step()
                reply = {"ok": True, "seconds": time.perf_counter() - t0}
        except Exception as exc:   # report to the parent, keep serving
            reply = {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
