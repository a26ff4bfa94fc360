"""Replay recorded ``mx.optimizer.Adam`` runs through ``adamop.torch.Adam`` and compare every step.

The runs are in the layout of ``data/optimizer_dev.npz`` (``optimizer_runs.py`` replays them
through ``adamop.optimizer``). Here each MXNet index is a ``torch.nn.Parameter`` (a row_sparse
MXNet weight is a dense one, its gradients sparse COO tensors) and each recorded step is one or
more ``step()`` calls: where MXNet's order of updates within a step differs from the
parameters' order (or repeats an index), the step is cut into several ``step()`` calls, each
with gradients only for its parameters, so the updates happen in MXNet's order. The optimizer is built two ways: from the
MXNet optimizer (``Adam.from_mxnet``), or with torch's arguments and one param group per
parameter holding its MXNet multipliers.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from optimizer_runs import build, scheduler

import adamop.torch
from adamop.bitwise import mismatch, to_numpy

R = "row_sparse"


def make_optimizer(run: Mapping, params: list, how: str) -> adamop.torch.Adam:
    """``how``: ``from_mxnet`` (the MXNet optimizer, converted) or ``direct`` (torch's
    constructor, MXNet's arguments renamed, a group per parameter with its multipliers)."""
    mx = build(run)
    by_index = {p["index"]: params[i] for i, p in enumerate(run["params"])}
    if how == "from_mxnet":
        return adamop.torch.Adam.from_mxnet(by_index, ({}, mx))
    kw = dict(run["create"]["kwargs"])
    lm, wm = mx._multipliers(list(by_index))
    lm = [lm] * len(by_index) if isinstance(lm, float) else lm
    wm = [wm] * len(by_index) if isinstance(wm, float) else wm
    groups = [{"params": [p], "lr_mult": a, "wd_mult": b}
              for p, a, b in zip(by_index.values(), lm, wm)]
    return adamop.torch.Adam(
        groups, lr=kw.get("learning_rate", 0.001), betas=(kw.get("beta1", 0.9),
                                                           kw.get("beta2", 0.999)),
        eps=kw.get("epsilon", 1e-8), weight_decay=kw.get("wd", 0.0),
        rescale_grad=kw.get("rescale_grad", 1.0), clip_gradient=kw.get("clip_gradient"),
        lazy_update=kw.get("lazy_update", True), multi_precision=kw.get("multi_precision", False),
        lr_scheduler=scheduler(kw.get("lr_scheduler")),
        begin_num_update=kw.get("begin_num_update", 0))


def _grad(run: Mapping, z: Mapping, k: int, i: int) -> torch.Tensor:
    name, p = run["name"], run["params"][i]
    pre = f"{name}__s{k}__"
    if p["grad_stype"] == R:
        idx = torch.from_numpy(z[f"{pre}gidx{i}"].astype(np.int64))[None]
        return torch.sparse_coo_tensor(idx, torch.from_numpy(z[f"{pre}gdata{i}"].copy()),
                                       tuple(p["shape"]), check_invariants=True)
    return torch.from_numpy(z[f"{pre}g{i}"].copy())


def replay(run: Mapping, z: Mapping, how: str = "from_mxnet", limit: int = 8,
           device: str = "cpu") -> tuple[list[str], adamop.torch.Adam, list, list[str]]:
    """Replay ``run`` with parameters on ``device``: (the first ``limit`` differences from
    MXNet, the optimizer, the parameters, the warnings given)."""
    name = run["name"]
    params = [torch.nn.Parameter(torch.from_numpy(z[f"{name}__w0_{i}"].copy()).to(device))
              for i in range(len(run["params"]))]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt = make_optimizer(run, params, how)
        problems = _steps(run, z, opt, params, limit, device)
    said = [str(w.message) for w in caught if w.category is UserWarning]
    return problems[:limit], opt, params, said


def _steps(run: Mapping, z: Mapping, opt: adamop.torch.Adam, params: list, limit: int,
           device: str) -> list[str]:
    rescale = run.get("rescale_grad_per_step")
    problems: list[str] = []
    for k, positions in enumerate(run["schedule"]):
        if rescale is not None:
            for group in opt.param_groups:
                group["rescale_grad"] = rescale[k]
        waves: list[list[int]] = []   # MXNet's order, cut where torch's order would differ
        for i in positions:
            if not waves or i <= waves[-1][-1]:
                waves.append([])
            waves[-1].append(i)
        for wave in waves:
            for i, p in enumerate(params):
                p.grad = _grad(run, z, k, i).to(device) if i in wave else None
            opt.step()
        for i in dict.fromkeys(positions):
            problems += _compare(f"{run['name']} step {k} param {i}", z,
                                 f"{run['name']}__s{k}__", i, params[i], opt.state[params[i]],
                                 run["params"][i]["weight_stype"] == R)
        if len(problems) >= limit:
            break
    return problems


def _compare(where: str, z: Mapping, pre: str, i: int, weight: Any, state: dict,
             row_sparse_weight: bool) -> list[str]:
    """Differences of a parameter and its states from MXNet's. An MXNet row_sparse weight
    stores no all-zero row (its cast back from the master copy drops them: they read back as
    +0.0); the torch parameter is dense and keeps -0.0 there, so for such weights a row of
    zeros compares equal to a row of zeros whatever their signs. Every other bit counts."""
    got = {"w": weight, "m": state["exp_avg"], "v": state["exp_avg_sq"]}
    if f"{pre}w32_{i}" in z:
        got["w32_"] = state["master_weight"]
    out = []
    for what, value in got.items():
        want = z[f"{pre}{what}{i}"]
        if what == "w" and row_sparse_weight:
            value, want = _unsigned_zero_rows(to_numpy(value)), _unsigned_zero_rows(want)
        msg = mismatch(value, want)
        if msg:
            out.append(f"{where} {what}: {msg}")
    return out


def _unsigned_zero_rows(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a[(a == 0).reshape(a.shape[0], -1).all(axis=1)] = 0
    return a
