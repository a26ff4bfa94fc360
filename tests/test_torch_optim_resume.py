"""MXNet checkpoints resumed in PyTorch, with MXNet's numbers.

Each dev run (``data/ckpt_dev``, written by MXNet 1.9.1: ``.params`` and ``.states`` files, and
what MXNet did after loading them into a fresh trainer or module) is loaded into torch
parameters (``adamop.nd``) and ``adamop.torch.Adam.from_mxnet`` (the ``.states`` file by path or
bytes), then continued with MXNet's gradients: a Gluon run with a sparse-gradient embedding and a
FactorScheduler, a float16 Gluon run with master copies and a PolyScheduler, and a Module run
whose ``.states`` holds no optimizer. Every weight after every step must be MXNet's, bit for bit.
About 3 s.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import DATA

from adamop import RowSparseArray, lr_scheduler, nd, optimizer
from adamop.bitwise import assert_bitexact
from adamop.torch import Adam

DEV = DATA / "ckpt_dev"
with np.load(DEV / "expected.npz") as _z:
    MANIFEST = json.loads(str(_z["manifest"]))
    ARRAYS = {k: _z[k] for k in _z.files if k != "manifest"}


def resume(run: dict, as_bytes: bool) -> tuple[list, Adam]:
    """Torch parameters holding the saved weights, and the optimizer from the .states file."""
    saved = nd.load(DEV / run["params_file"])
    params = []
    for key in run["param_file_keys"]:
        w = saved[key]
        w = w.todense() if isinstance(w, RowSparseArray) else np.asarray(w)
        params.append(torch.nn.Parameter(torch.from_numpy(w.copy())))
    states = (DEV / run["states_file"]).read_bytes() if as_bytes else DEV / run["states_file"]
    if run["api"] == "gluon":   # Trainer.save_states: the optimizer travels in the file
        return params, Adam.from_mxnet(params, states)
    kwargs = dict(run["optimizer_kwargs"])   # Module: states only, built as the module built it
    if run["scheduler"]:
        spec = run["scheduler"]
        kwargs["lr_scheduler"] = getattr(lr_scheduler, spec["class"])(**spec["kwargs"])
    mx = optimizer.create("adam", **kwargs, param_idx2name=dict(enumerate(run["param_names"])))
    return params, Adam.from_mxnet(params, states, optimizer=mx)


def grad(run: dict, step: int, i: int, shape: tuple) -> torch.Tensor:
    key = f"{run['name']}__step{step}__"
    if f"{key}gidx{i}" in ARRAYS:   # MXNet's row_sparse gradient, as sparse COO
        return torch.sparse_coo_tensor(torch.from_numpy(ARRAYS[f"{key}gidx{i}"].astype(
            np.int64))[None], torch.from_numpy(ARRAYS[f"{key}gdata{i}"]), shape,
            check_invariants=True)
    return torch.from_numpy(ARRAYS[f"{key}grad{i}"].copy())


@pytest.mark.parametrize("as_bytes", [False, True], ids=["path", "bytes"])
@pytest.mark.parametrize("run", MANIFEST["runs"], ids=lambda r: r["name"])
def test_resume_matches_mxnet_every_step(run, as_bytes):
    params, opt = resume(run, as_bytes)
    for i, p in enumerate(params):
        assert_bitexact(p, ARRAYS[f"{run['name']}__w0_{i}"], f"saved weight {i}")
    steps = [opt.state[p]["step"] for p in params]
    if run["dump_optimizer"]:
        assert steps == [run["saved_counts"][str(i)] for i in range(len(params))]
        assert opt.num_update == run["saved_num_update"]
    else:   # a module that loads states only counts again from begin_num_update
        assert steps == [0] * len(params) and opt.num_update == 0
    for step in range(run["continue_steps"]):
        for group in opt.param_groups:
            group["rescale_grad"] = run["rescale_grad"]   # what Trainer.step sets
        for i, p in enumerate(params):
            p.grad = grad(run, step, i, tuple(p.shape))
        opt.step()
        for i, p in enumerate(params):
            assert_bitexact(p, ARRAYS[f"{run['name']}__step{step}__w{i}"],
                            f"step {step}, parameter {run['param_names'][i]}")
