"""Continuing an MXNet run in PyTorch: ``adamop.torch.Adam.from_mxnet``.

A run goes some steps through ``adamop.optimizer``'s Updater (MXNet's optimizer, checked against
MXNet elsewhere), as a Gluon Trainer or a Module drives it; its states and optimizer become a
torch optimizer over torch parameters holding the same weights; both then take the same
gradients, and every weight and state must stay bit-identical. Covered: schedulers and their
state, counts and ``num_update``, lr/wd multipliers (by index, by name, Gluon's param_dict),
float16 master copies, row_sparse weights and gradients (sparse COO in torch), a Module's
states-only file (counts start again). About 3 s.
"""
from __future__ import annotations

import copy
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from adamop import RowSparseArray, lr_scheduler, optimizer
from adamop.bitwise import assert_bitexact
from adamop.torch import Adam

SHAPES = [(6, 4), (4,), (5, 3), (3,)]
NAMES = ["fc1_weight", "fc1_bias", "emb_weight", "bn_beta"]


def grads(k: int, dtype: str, sparse_rows: dict) -> list:
    """Step k's gradients (numpy; a row_sparse one as (rows, data) for the parameters in
    ``sparse_rows``, index -> number of rows)."""
    rng = np.random.default_rng(k)
    out = []
    for i, shape in enumerate(SHAPES):
        g = rng.standard_normal(shape).astype(dtype)
        if i in sparse_rows:
            rows = np.sort(rng.choice(shape[0], sparse_rows[i], replace=False))
            out.append((rows, g[rows]))
        else:
            out.append(g)
    return out


def mx_grad(g, shape):
    return RowSparseArray(g[1], g[0], shape) if isinstance(g, tuple) else g


def torch_grad(g, shape):
    if isinstance(g, tuple):
        return torch.sparse_coo_tensor(torch.from_numpy(g[0])[None], torch.from_numpy(g[1]),
                                       shape, check_invariants=True)
    return torch.from_numpy(g.copy())


_FACTOR = lr_scheduler.FactorScheduler(step=3, factor=0.7, base_lr=0.02, warmup_steps=2)
_POLY = lr_scheduler.PolyScheduler(max_update=9, base_lr=0.005, warmup_steps=2,
                                   warmup_mode="constant")
_MULTI = lr_scheduler.MultiFactorScheduler(step=[7, 9], factor=0.5, base_lr=0.01)
CASES = {   # schedulers are copied for each use (they are stateful)
    "gluon factor": {"dtype": "float32", "param_dict": True, "kwargs": {
        "learning_rate": 0.01, "wd": 1e-3, "clip_gradient": 0.5, "lr_scheduler": _FACTOR}},
    "float16 master poly": {"dtype": "float16", "kwargs": {
        "learning_rate": 0.005, "multi_precision": True, "lr_scheduler": _POLY}},
    "row_sparse lazy": {"dtype": "float32", "sparse": {0: 3, 2: 2}, "rsp_weight": 2,
                        "kwargs": {"learning_rate": 0.02, "wd": 1e-2}},
    "row_sparse standard": {"dtype": "float64", "sparse": {2: 1},
                            "kwargs": {"learning_rate": 0.02, "lazy_update": False}},
    "module names and lr_mult": {"dtype": "float32", "names": True,
                                 "lr_mult": {1: 2.0, "emb_weight": 0.5}, "kwargs": {
        "learning_rate": 0.01, "wd": 1e-2, "rescale_grad": 0.25, "begin_num_update": 5,
        "lr_scheduler": _MULTI}},
    "module states only": {"dtype": "float32", "names": True, "states_only": True,
                           "kwargs": {"learning_rate": 0.01, "wd": 1e-2}},
}


def start(case: dict, k_steps: int) -> tuple:
    """The MXNet side after ``k_steps``: its updater, weights and the updater's arguments."""
    dtype, sparse = case["dtype"], case.get("sparse", {})
    kwargs = copy.deepcopy(case["kwargs"])   # a scheduler of its own
    if case.get("names"):
        kwargs["param_idx2name"] = dict(enumerate(NAMES))
    if case.get("param_dict"):   # Gluon Parameters: lr_mult / wd_mult
        kwargs["param_dict"] = {i: types.SimpleNamespace(lr_mult=m, wd_mult=1.0)
                                for i, m in enumerate([1.0, 2.0, 1.0, 0.5])}
    opt = optimizer.create("adam", **kwargs)
    if case.get("lr_mult"):
        opt.set_lr_mult(case["lr_mult"])
    updater = optimizer.get_updater(opt)
    rng = np.random.default_rng(99)
    weights = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    if "rsp_weight" in case:
        i = case["rsp_weight"]
        weights[i] = RowSparseArray.from_dense(weights[i], all_rows=True)
    for k in range(k_steps):
        updater(list(range(4)), [mx_grad(g, s) for g, s in zip(grads(k, dtype, sparse), SHAPES)],
                weights)
    return updater, weights


@pytest.mark.parametrize("name", list(CASES))
def test_continues_the_mxnet_run_bit_for_bit(name):
    case = CASES[name]
    dtype, sparse = case["dtype"], case.get("sparse", {})
    updater, weights = start(case, 4)
    dense = [w.todense() if isinstance(w, RowSparseArray) else w for w in weights]
    params = [torch.nn.Parameter(torch.from_numpy(w.copy())) for w in dense]
    if case.get("states_only"):   # a Module checkpoint: the states, and a fresh optimizer
        def fresh():
            return optimizer.create("adam", **copy.deepcopy(case["kwargs"]),
                                    param_idx2name=dict(enumerate(NAMES)))
        opt = Adam.from_mxnet(params, updater.states, optimizer=fresh())
        updater.optimizer = fresh()
        assert all(opt.state[p]["step"] == 0 for p in params) and opt.num_update == 0
    else:
        opt = Adam.from_mxnet(params, updater)
        counts = updater.optimizer._index_update_count
        assert [opt.state[p]["step"] for p in params] == [counts[i] for i in range(4)]
        assert opt.num_update == updater.optimizer.num_update
    for k in range(4, 9):
        gs = grads(k, dtype, sparse)
        updater(list(range(4)), [mx_grad(g, s) for g, s in zip(gs, SHAPES)], weights)
        for p, g, s in zip(params, gs, SHAPES):
            p.grad = torch_grad(g, s)
        opt.step()
        for i, (p, w) in enumerate(zip(params, weights)):
            where = f"{name} step {k} param {i}"
            assert_bitexact(p, w.todense() if isinstance(w, RowSparseArray) else w, where)
            state = updater.states[i]
            if isinstance(state[1], tuple):
                assert_bitexact(opt.state[p]["master_weight"], state[0], where)
                state = state[1]
            for key, want in zip(("exp_avg", "exp_avg_sq"), state):
                assert_bitexact(opt.state[p][key],
                                want.todense() if isinstance(want, RowSparseArray) else want,
                                f"{where} {key}")
    assert opt.num_update == updater.optimizer.num_update


def test_groups_follow_mxnet_multipliers_in_index_order():
    """Module names: biases and betas get wd_mult 0 (MXNet's rule); lr_mult by index and by
    name; consecutive indices with equal multipliers share a group."""
    updater, _ = start(CASES["module names and lr_mult"], 1)
    params = [torch.nn.Parameter(torch.zeros(s)) for s in SHAPES]
    opt = Adam.from_mxnet(params, updater)
    got = [(len(g["params"]), g["lr_mult"], g["wd_mult"]) for g in opt.param_groups]
    assert got == [(1, 1.0, 1.0), (1, 2.0, 0.0), (1, 0.5, 1.0), (1, 1.0, 0.0)]
    g = opt.param_groups[0]
    assert (g["lr"], g["betas"], g["eps"], g["weight_decay"], g["rescale_grad"]) == (
        0.01, (0.9, 0.999), 1e-8, 1e-2, 0.25)
    assert opt.begin_num_update == 5 and opt.lr_scheduler is not updater.optimizer.lr_scheduler


def test_dict_mapping_and_unmapped_indices():
    updater, _ = start(CASES["gluon factor"], 1)
    params = [torch.nn.Parameter(torch.zeros(s)) for s in SHAPES]
    opt = Adam.from_mxnet({0: params[0], 1: params[1], 2: params[2], 3: params[3]}, updater)
    assert opt.state[params[3]]["step"] == 1
    with pytest.raises(ValueError, match=r"indices \[3\] that params does not map"):
        Adam.from_mxnet(params[:3], updater)


@pytest.mark.parametrize("bad, error, match", [
    ("shape", ValueError, (r"index 1: exp_avg is torch.float32 \(4,\), but the parameter "
                           r"needs torch.float32 \(5,\)")),
    ("dtype", ValueError, "exp_avg is torch.float32 .* needs torch.float64"),
    ("master", ValueError, r"expected \(weight32, \(mean, var\)\)"),
    ("no-optimizer", ValueError, "hold no optimizer"),
    ("two-optimizers", ValueError, "do not pass optimizer="),
    ("not-adam", TypeError, "must be an adamop.optimizer.Adam"),
    ("not-states", TypeError, "states must be a .states path or bytes"),
    ("tensor-params", TypeError, "got a single tensor"),
    ("same-param-twice", ValueError, "maps two indices to one parameter"),
], ids=lambda x: x if isinstance(x, str) and " " not in x else "")
def test_refused(bad, error, match):
    updater, _ = start(CASES["gluon factor"], 1)
    params = [torch.nn.Parameter(torch.zeros(s)) for s in SHAPES]
    args: tuple = (params, updater)
    kw: dict = {}
    if bad == "shape":
        params[1] = torch.nn.Parameter(torch.zeros(5))
    elif bad == "dtype":
        params = [torch.nn.Parameter(p.detach().double()) for p in params]
        args = (params, updater)
    elif bad == "master":
        params = [torch.nn.Parameter(p.detach().half()) for p in params]
        mx = optimizer.create("adam", multi_precision=True)
        args = (params, (updater.states, mx))
    elif bad == "no-optimizer":
        args = (params, updater.states)
    elif bad == "two-optimizers":
        kw = {"optimizer": updater.optimizer}
    elif bad == "not-adam":
        args = (params, (updater.states, object()))
    elif bad == "not-states":
        args = (params, 42)
    elif bad == "tensor-params":
        args = (params[0], updater)
    elif bad == "same-param-twice":
        args = ([params[0]] * 4, updater)
    with pytest.raises(error, match=match):
        Adam.from_mxnet(*args, **kw)
