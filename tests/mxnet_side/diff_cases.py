"""MXNet side of tests/test_differential_mxnet.py (runs under MXNet 1.9.1, numpy<1.24).

Usage: python diff_cases.py in.npz out.npz
in.npz: ``<id>__<weight|grad|mean|var|grad_indices|grad_data>`` arrays and ``__meta__`` =
{"cases": [...], "probes": [str, ...]} (case layout: tests/cases.py).
out.npz: ``<id>__<weight|mean|var>_out`` (densified) for every case MXNet ran, ``probe_bits``
(uint32, the float32 MXNet parsed for each probe string as lr), and ``__meta__`` =
{"errors": {case id: message}, "probe_errors": {index: message}}.
"""
import json
import sys

import numpy as np
import mxnet as mx

D, R = "default", "row_sparse"


def nd(x, stype, dtype):
    """A dense numpy array as an NDArray; a row_sparse one stores every row."""
    if stype == R:
        return mx.nd.sparse.row_sparse_array((x, np.arange(x.shape[0], dtype=np.int64)),
                                             shape=x.shape, dtype=dtype)
    return mx.nd.array(x, dtype=dtype)


def run_case(case, z):
    cid, dtype, st, shape = case["id"], case["dtype"], case["stype"], tuple(case["shape"])
    W = nd(z[cid + "__weight"], st["weight"], dtype)
    if st["grad"] == R:
        G = mx.nd.sparse.row_sparse_array((z[cid + "__grad_data"], z[cid + "__grad_indices"]),
                                          shape=shape, dtype=dtype)
    else:
        G = nd(z[cid + "__grad"], D, dtype)
    if case["state_empty"]:
        M, V = (mx.nd.sparse.zeros(R, shape, dtype=dtype) for _ in range(2))
    else:
        M, V = (nd(z[cid + "__" + k], st["states"], dtype) for k in ("mean", "var"))
    if case["out"] == "weight":
        mx.nd.adam_update(W, G, M, V, out=W, **case["kwargs"])
        O = W
    else:
        O = mx.nd.adam_update(W, G, M, V, **case["kwargs"])
    return O.asnumpy(), M.asnumpy(), V.asnumpy()


def probe_lr(text):
    """The float32 MXNet parses for ``lr=text``: w=-0, g=0, m=1, v=0, b1=b2=eps=1 -> out = -lr
    (w = -0.0 keeps the sign of a zero lr)."""
    W, G, M, V = mx.nd.array([-0.0]), mx.nd.zeros((1,)), mx.nd.ones((1,)), mx.nd.zeros((1,))
    out = mx.nd.adam_update(W, G, M, V, lr=text, beta1=1, beta2=1, epsilon=1).asnumpy()
    return np.float32(-out[0])


def main(src, dst):
    with np.load(src, allow_pickle=False) as f:
        z = {k: f[k] for k in f.files}
    meta = json.loads(str(z.pop("__meta__")))
    out, errors = {}, {}
    with np.errstate(all="ignore"):
        for case in meta.get("cases", []):
            try:
                w, m, v = run_case(case, z)
            except mx.base.MXNetError as e:
                errors[case["id"]] = str(e).split("\n")[0][:300]
                continue
            out[case["id"] + "__weight_out"] = w
            out[case["id"] + "__mean_out"] = m
            out[case["id"] + "__var_out"] = v
        bits, probe_errors = [], {}
        for i, text in enumerate(meta.get("probes", [])):
            try:
                bits.append(int(probe_lr(text).view(np.uint32)))
            except mx.base.MXNetError as e:
                probe_errors[str(i)] = str(e).split("\n")[0][:200]
                bits.append(0)
    out["probe_bits"] = np.array(bits, dtype=np.uint32)
    np.savez(dst, __meta__=np.array(json.dumps({"errors": errors, "probe_errors": probe_errors})),
             **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
