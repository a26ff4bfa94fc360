"""Train a tiny linear model with an adamop.sym update graph: build, save, load, bind, forward.

Run: python examples/symbolic_training.py
"""
import os
import tempfile

import numpy as np

from adamop import sym

rng = np.random.default_rng(0)
x = rng.standard_normal((64, 3)).astype(np.float32)
y = x @ np.array([[1.0, -2.0], [0.5, 0.0], [-1.0, 3.0]], np.float32) + np.float32(0.5)

# One adam_update node per parameter, grouped into one graph, written as MXNet symbol JSON.
shapes = {"fc_weight": (3, 2), "fc_bias": (2,)}
update = sym.Group([
    sym.adam_update(sym.var(p), sym.var(p + "_grad"), sym.var(p + "_mean"), sym.var(p + "_var"),
                    lr=0.1, wd=1e-4, name=p + "_adam")
    for p in shapes])
with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "update.json")
    update.save(path)                  # mx.sym.load(path) reads this file too
    graph = sym.load(path)

arrays = {p: np.zeros(s, np.float32) for p, s in shapes.items()}
arrays.update({p + "_grad": np.zeros(s, np.float32) for p, s in shapes.items()})
states = {f"{p}_{k}": np.zeros(s, np.float32) for p, s in shapes.items() for k in ("mean", "var")}
ex = graph.bind(args=arrays, aux_states=states)       # mean/var are updated in place

for step in range(1, 51):
    w, b = ex.arg_dict["fc_weight"], ex.arg_dict["fc_bias"]
    err = x @ w + b - y
    ex.arg_dict["fc_weight_grad"][:] = x.T @ err / len(x)     # write this step's gradients
    ex.arg_dict["fc_bias_grad"][:] = err.mean(axis=0)
    new_w, new_b = ex.forward()        # the new weights; the bound weights are left alone
    w[:], b[:] = new_w, new_b          # so copy them back, as a training loop does
    if step % 10 == 0:
        print(f"step {step:2d}  loss {float((err ** 2).mean()):.4f}")
print("bias", np.round(ex.arg_dict["fc_bias"], 2))
