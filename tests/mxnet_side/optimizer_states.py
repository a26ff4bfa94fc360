"""MXNet side of tests/test_optimizer_mxnet.py::test_dev_run_ends_with_mxnet_s_pickled_optimizer.

Usage: python optimizer_states.py in.npz out.npz
in.npz: ``<run>__states`` (uint8: ``updater.get_states(dump_optimizer=True)`` as MXNet wrote it).
out.npz ``__meta__`` = {run: {"state": {attribute: repr} (but param_dict, sym_info and
lr_scheduler), "keys": sorted attribute names, "scheduler": {attribute: repr} or null,
"indices": sorted state indices}}.
"""
import json
import pickle
import sys

import mxnet as mx  # noqa: F401  (the pickle's classes)
import numpy as np


def main(src, dst):
    out = {}
    with np.load(src, allow_pickle=False) as f:
        for key in f.files:
            if not key.endswith("__states"):
                continue
            states, opt = pickle.loads(f[key].tobytes())
            sched = opt.lr_scheduler
            out[key[:-len("__states")]] = {
                "state": {k: repr(v) for k, v in vars(opt).items()
                          if k not in ("param_dict", "sym_info", "lr_scheduler")},
                "keys": sorted(vars(opt)),
                "scheduler": (None if sched is None
                              else {k: repr(v) for k, v in vars(sched).items()}),
                "indices": sorted(states)}
    np.savez(dst, __meta__=np.array(json.dumps(out)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
