"""Replay recorded ``mx.optimizer.Adam`` runs through adamop's Updater and compare every step.

A run is in the layout of ``data/optimizer_dev.npz`` (``data/TRAINING_README.md``): the
optimizer's construction, the updater calls of each step, every grad, and every weight and state
MXNet held after each step. The live differential test (``tests/mxnet_side/optimizer_runs.py``)
writes the same layout, so both are replayed here.
"""
from __future__ import annotations

import types
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from adamop.bitwise import mismatch

from adamop import RowSparseArray, lr_scheduler, optimizer, sym

R = "row_sparse"


def _key(k: str) -> Any:
    """JSON turned the int indices of a multiplier table into strings; names stay names."""
    return int(k) if k.lstrip("-").isdigit() else k


def scheduler(spec: Mapping | None) -> Any:
    if spec is None:
        return None
    return getattr(lr_scheduler, spec["class"])(**spec["kwargs"])


def build(run: Mapping) -> optimizer.Optimizer:
    """The optimizer as MXNet built it: ``create`` (with the scheduler, ``param_idx2name``, a
    symbol and Gluon-like ``param_dict`` entries), then ``set_lr_mult`` / ``set_wd_mult``."""
    kwargs = dict(run["create"]["kwargs"])
    if "lr_scheduler" in kwargs:
        kwargs["lr_scheduler"] = scheduler(kwargs["lr_scheduler"])
    if run.get("idx2name"):
        kwargs["param_idx2name"] = {int(k): v for k, v in run["idx2name"].items()}
    if run.get("sym"):
        kwargs["sym"] = sym.Group([sym.var(n, **attrs) for n, attrs in run["sym"].items()])
    if run.get("param_dict"):
        kwargs["param_dict"] = {int(k): types.SimpleNamespace(lr_mult=lm, wd_mult=wm)
                                for k, (lm, wm) in run["param_dict"].items()}
    opt = optimizer.create(run["create"]["name"], **kwargs)
    if run.get("lr_mult"):
        opt.set_lr_mult({_key(k): v for k, v in run["lr_mult"].items()})
    if run.get("wd_mult"):
        opt.set_wd_mult({_key(k): v for k, v in run["wd_mult"].items()})
    return opt


def _identity(x: np.ndarray) -> Any:
    return x


def replay(run: Mapping, z: Mapping[str, np.ndarray], *, per_index: bool = False,
           convert: Callable[[np.ndarray], Any] = _identity, limit: int = 8,
           ) -> tuple[list[str], optimizer.Updater, list[str], list]:
    """Replay ``run``: the first ``limit`` differences from MXNet (empty: identical), the
    updater at the end, the warnings adamop gave (messages, in order) and the weights.

    Args:
        per_index: one updater call per index instead of one list call per step.
        convert: puts each NumPy array into the library under test (e.g. a torch tensor).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problems, updater, weights = _replay(run, z, per_index, convert, limit)
    said = [str(w.message) for w in caught if w.category is UserWarning]
    return problems, updater, said, weights


def _replay(run: Mapping, z: Mapping[str, np.ndarray], per_index: bool,
            convert: Callable[[np.ndarray], Any], limit: int
            ) -> tuple[list[str], optimizer.Updater, list]:
    name, params = run["name"], run["params"]
    opt = build(run)
    updater = optimizer.get_updater(opt)
    weights = []
    for i, p in enumerate(params):
        w0 = convert(z[f"{name}__w0_{i}"].copy())
        weights.append(RowSparseArray.from_dense(w0, all_rows=True)
                       if p["weight_stype"] == R else w0)
    rescale = run.get("rescale_grad_per_step")
    problems: list[str] = []
    for k, positions in enumerate(run["schedule"]):
        if rescale is not None:
            opt.rescale_grad = rescale[k]
        grads = {}
        for i in dict.fromkeys(positions):
            pre = f"{name}__s{k}__"
            if params[i]["grad_stype"] == R:
                grads[i] = RowSparseArray(convert(z[f"{pre}gdata{i}"].copy()),
                                          convert(z[f"{pre}gidx{i}"].copy()),
                                          tuple(params[i]["shape"]))
            else:
                grads[i] = convert(z[f"{pre}g{i}"].copy())
        indices = [params[i]["index"] for i in positions]
        if per_index:
            for i, index in zip(positions, indices):
                updater(index, grads[i], weights[i])
        else:
            updater(indices, [grads[i] for i in positions], [weights[i] for i in positions])
        for i in dict.fromkeys(positions):
            problems += _compare(f"{name} step {k} param {i}", z, f"{name}__s{k}__", i,
                                 weights[i], updater.states[params[i]["index"]])
        if len(problems) >= limit:
            break
    return problems[:limit], updater, weights


def _compare(where: str, z: Mapping[str, np.ndarray], pre: str, i: int, weight: Any,
             state: Any) -> list[str]:
    master = f"{pre}w32_{i}" in z
    mean, var = state[1] if master else state
    got = {"w": weight, "m": mean, "v": var}
    if master:
        got["w32_"] = state[0]
    out = []
    for what, value in got.items():
        key = f"{pre}{what}{i}"
        msg = mismatch(value, z[key])
        if msg:
            out.append(f"{where} {what}: {msg}")
    return out
