"""MXNet side of tests/test_optimizer_mxnet.py (runs under MXNet 1.9.1, numpy<1.24).

Usage: python optimizer_runs.py in.npz out.npz
in.npz: ``__meta__`` = {"runs": [RUN...]} (layout: tests/optimizer_configs.py) and each run's
``<run>__w0_<i>`` and ``<run>__s<k>__g<i>`` (+ ``__gidx<i>``/``__gdata<i>`` for row_sparse).
Each run is driven the way Gluon's Trainer drives MXNet: ``mx.optimizer.create`` then
``get_updater``, and per step ``updater(indices, grads, weights)`` (one list call).
out.npz: ``<run>__s<k>__w<i>``, ``__m<i>``, ``__v<i>`` (and ``__w32_<i>``) after every step, dense;
``__meta__`` = {run name: {"error", "warnings" (printed and warned, in order), "state" (repr of
each optimizer attribute but param_dict, sym_info and lr_scheduler), "scheduler" (repr of each
of its attributes), "sym_info" ([attr_dict, arguments]), "rows" (stored rows of row_sparse
weights and states at the end)}}.
"""
import contextlib
import io
import json
import sys
import traceback
import warnings

import mxnet as mx
import numpy as np

R = "row_sparse"


class Param:
    """What MXNet's optimizer reads from a Gluon Parameter in param_dict."""

    def __init__(self, lr_mult, wd_mult):
        self.lr_mult, self.wd_mult = lr_mult, wd_mult


def build(run):
    kwargs = dict(run["create"]["kwargs"])
    if "lr_scheduler" in kwargs:
        spec = kwargs["lr_scheduler"]
        kwargs["lr_scheduler"] = getattr(mx.lr_scheduler, spec["class"])(**spec["kwargs"])
    if run.get("idx2name"):
        kwargs["param_idx2name"] = {int(k): v for k, v in run["idx2name"].items()}
    if run.get("sym"):
        kwargs["sym"] = mx.sym.Group([mx.sym.var(n, **a) for n, a in run["sym"].items()])
    if run.get("param_dict"):
        kwargs["param_dict"] = {int(k): Param(*v) for k, v in run["param_dict"].items()}
    opt = mx.optimizer.create(run["create"]["name"], **kwargs)

    def key(k):
        return int(k) if k.lstrip("-").isdigit() else k
    if run.get("lr_mult"):
        opt.set_lr_mult({key(k): v for k, v in run["lr_mult"].items()})
    if run.get("wd_mult"):
        opt.set_wd_mult({key(k): v for k, v in run["wd_mult"].items()})
    return opt


def run_one(run, z, out):
    name, params = run["name"], run["params"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        opt = build(run)
    updater = mx.optimizer.get_updater(opt)
    weights = []
    for i, p in enumerate(params):
        w0 = z["%s__w0_%d" % (name, i)]
        if p["weight_stype"] == R:
            weights.append(mx.nd.sparse.row_sparse_array(
                (w0, np.arange(w0.shape[0], dtype=np.int64)), shape=w0.shape, dtype=p["dtype"]))
        else:
            weights.append(mx.nd.array(w0, dtype=p["dtype"]))
    rescale = run.get("rescale_grad_per_step")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for k, positions in enumerate(run["schedule"]):
            if rescale is not None:
                opt.rescale_grad = rescale[k]
            pre = "%s__s%d__" % (name, k)
            grads = {}
            for i in dict.fromkeys(positions):
                p = params[i]
                if p["grad_stype"] == R:
                    grads[i] = mx.nd.sparse.row_sparse_array(
                        (z[pre + "gdata%d" % i], z[pre + "gidx%d" % i]), shape=tuple(p["shape"]),
                        dtype=p["dtype"])
                else:
                    grads[i] = mx.nd.array(z[pre + "g%d" % i], dtype=p["dtype"])
            updater([params[i]["index"] for i in positions], [grads[i] for i in positions],
                    [weights[i] for i in positions])
            for i in dict.fromkeys(positions):
                state = updater.states[params[i]["index"]]
                out[pre + "w%d" % i] = weights[i].asnumpy()
                if isinstance(state[1], tuple):
                    out[pre + "w32_%d" % i] = state[0].asnumpy()
                    state = state[1]
                out[pre + "m%d" % i], out[pre + "v%d" % i] = (s.asnumpy() for s in state)
    said = [line for line in printed.getvalue().splitlines() if line]
    said += [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    attrs = {k: repr(v) for k, v in vars(opt).items()
             if k not in ("param_dict", "sym_info", "lr_scheduler")}
    sched = opt.lr_scheduler
    rows = {}
    for i, p in enumerate(params):
        state = updater.states[p["index"]]
        named = {"weight": weights[i]}
        if isinstance(state[1], tuple):
            named["w32"], state = state[0], state[1]
        named["mean"], named["var"] = state
        rows[str(p["index"])] = {n: a.indices.asnumpy().tolist() for n, a in named.items()
                                 if a.stype == R}
    return {"error": None, "warnings": said, "state": attrs, "keys": sorted(vars(opt)),
            "scheduler": None if sched is None else {k: repr(v) for k, v in vars(sched).items()},
            "sym_info": list(opt.sym_info), "rows": rows}


def main(src, dst):
    with np.load(src, allow_pickle=False) as f:
        z = {k: f[k] for k in f.files}
    meta = json.loads(str(z.pop("__meta__")))
    out, report = {}, {}
    for run in meta["runs"]:
        try:
            report[run["name"]] = run_one(run, z, out)
        except Exception:   # reported per run; the test fails on it
            report[run["name"]] = {"error": traceback.format_exc()[-2000:]}
    np.savez(dst, __meta__=np.array(json.dumps(report)), **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
