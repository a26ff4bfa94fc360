"""MXNet side of tests/test_mxnet_grid.py: one ``mx.optimizer.Adam`` step per case, as MXNet's own
``test_adam`` does it (``create_state_multi_precision`` then ``update_multi_precision``).

Usage: python grid_adam.py in.npz out.npz
in.npz: ``<id>__weight`` (dense), ``<id>__grad`` or ``<id>__grad_indices``/``<id>__grad_data``,
and ``__meta__`` = {"cases": [{"id", "dtype", "w_stype", "g_stype", "optimizer_kwargs"}]}.
out.npz: ``<id>__<weight|mean|var>_out`` (densified), ``<id>__weight32_out`` for a float16
multi-precision step, and ``__meta__`` = {"calls": {id: the adam_update kwargs as strings}}.
"""
import json
import sys
import warnings

import numpy as np
import mxnet as mx
import mxnet.optimizer.optimizer as opt_module

_calls = []
_adam_update = opt_module.adam_update


def _recording_adam_update(*args, **kwargs):
    _calls.append({k: str(v) for k, v in kwargs.items() if k != "out"})
    return _adam_update(*args, **kwargs)


opt_module.adam_update = _recording_adam_update


def main(src, dst):
    with np.load(src, allow_pickle=False) as f:
        z = {k: f[k] for k in f.files}
    meta = json.loads(str(z.pop("__meta__")))
    out, calls = {}, {}
    for case in meta["cases"]:
        cid, dtype = case["id"], case["dtype"]
        w = z[cid + "__weight"]
        if case["w_stype"] == "row_sparse":   # density 1: every row stored
            W = mx.nd.sparse.row_sparse_array((w, np.arange(w.shape[0])), shape=w.shape,
                                              dtype=dtype)
        else:
            W = mx.nd.array(w, dtype=dtype)
        if case["g_stype"] == "row_sparse":
            G = mx.nd.sparse.row_sparse_array((z[cid + "__grad_data"], z[cid + "__grad_indices"]),
                                              shape=w.shape, dtype=dtype)
        else:
            G = mx.nd.array(z[cid + "__grad"], dtype=dtype)
        opt = mx.optimizer.Adam(**case["optimizer_kwargs"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = opt.create_state_multi_precision(0, W)
        del _calls[:]
        opt.update_multi_precision(0, W, G, state)
        mx.nd.waitall()
        assert len(_calls) == 1, _calls
        calls[cid] = _calls[0]
        if isinstance(state[0], mx.nd.NDArray) and len(state) == 2 and \
                isinstance(state[1], tuple):   # (weight32, (mean, var))
            out[cid + "__weight32_out"] = state[0].asnumpy()
            mean, var = state[1]
        else:
            mean, var = state
        out[cid + "__weight_out"] = W.asnumpy()
        out[cid + "__mean_out"] = mean.asnumpy()
        out[cid + "__var_out"] = var.asnumpy()
    np.savez(dst, __meta__=np.array(json.dumps({"calls": calls})), **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
