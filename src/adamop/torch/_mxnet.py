"""Continuing an MXNet run in PyTorch: ``adamop.torch.Adam`` from MXNet's optimizer state.

MXNet's ``.states`` pickle (``Trainer.save_states``, ``Module.save_checkpoint``) holds each
index's state and, when the optimizer was dumped with it, the optimizer: hyperparameters, update
counts, ``num_update``, the scheduler with its state, the multiplier tables. Each becomes its
torch counterpart: indices become parameters by the mapping the caller gives, runs of indices with
the same multipliers become param groups (in index order, MXNet's update order), states become
``exp_avg`` / ``exp_avg_sq`` / ``master_weight`` and counts ``step``.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .. import states as mx_states
from ..optimizer import Adam as MXNetAdam
from ..optimizer import Updater
from ..storage import RowSparseArray
from ._hyper import OWNER
from ._state import MASTER, is_master

__all__ = ["from_mxnet"]

WHERE = f"{OWNER}.from_mxnet"


def from_mxnet(cls: type, params: Any, states: Any, *, optimizer: Any = None,
               param_dict: Mapping | None = None) -> Any:
    """``cls.from_mxnet(params, states, ...)``: see :meth:`adamop.torch.Adam.from_mxnet`."""
    table, mx = _resolve(states, optimizer)
    by_index = _mapping(params)
    unmapped = [i for i in table if i not in by_index]
    if unmapped:
        raise ValueError(f"{WHERE}: the states hold indices {unmapped[:8]} that params does not "
                         f"map to a parameter; map every index that has a state")
    indices = list(by_index)
    if all(isinstance(i, int) for i in indices):
        indices.sort()   # MXNet's update order
    view = copy.copy(mx)   # the multipliers as MXNet looks them up, without touching mx
    if param_dict is not None:
        view.param_dict = dict(param_dict)
    elif mx.param_dict:
        view.param_dict = mx.param_dict
    lr_mults, wd_mults = view._multipliers(indices)
    if isinstance(lr_mults, float):
        lr_mults, wd_mults = [lr_mults] * len(indices), [wd_mults] * len(indices)
    sched = copy.deepcopy(mx.lr_scheduler)
    base = {"lr": mx.lr if mx.lr is not None else sched.base_lr, "betas": (mx.beta1, mx.beta2),
            "eps": mx.epsilon, "weight_decay": mx.wd, "rescale_grad": mx.rescale_grad,
            "clip_gradient": mx.clip_gradient, "lazy_update": mx.lazy_update}
    groups: list[dict] = []
    for index, lm, wm in zip(indices, lr_mults, wd_mults):
        key = (np.float64(lm).tobytes(), np.float64(wm).tobytes())
        if not groups or groups[-1]["_key"] != key:
            groups.append({"_key": key, "params": [], **base, "lr_mult": lm, "wd_mult": wm})
        groups[-1]["params"].append(by_index[index])
    for g in groups:
        del g["_key"]
    opt = cls(groups, lr=None if sched is not None else mx.lr, betas=(mx.beta1, mx.beta2),
              eps=mx.epsilon, weight_decay=mx.wd, rescale_grad=mx.rescale_grad,
              clip_gradient=mx.clip_gradient, lazy_update=mx.lazy_update,
              multi_precision=mx.multi_precision, lr_scheduler=sched,
              begin_num_update=mx.begin_num_update)
    counts = mx._index_update_count
    made = {}
    for index in indices:
        if index in table:
            p = by_index[index]
            made[p] = _state(index, table[index], p, opt.multi_precision,
                             counts.get(index, mx.begin_num_update))
    for p, state in made.items():   # every state built before any is set
        opt.state[p] = state
        opt._unused.pop(id(p), None)
    opt.num_update = mx.num_update
    return opt


def _resolve(states: Any, optimizer: Any) -> tuple[dict, Any]:
    """(index -> state, the MXNet optimizer) from any of the accepted forms."""
    if isinstance(states, (bytes, bytearray, memoryview)):
        states = mx_states.loads(bytes(states))
    elif isinstance(states, (str, os.PathLike)):
        states = mx_states.load(states)
    if isinstance(states, Updater):
        states = (states.states, states.optimizer)
    if isinstance(states, tuple) and len(states) == 2 and isinstance(states[0], dict):
        table, mx = states
        if optimizer is not None:
            raise ValueError(f"{WHERE}: the states hold their optimizer; do not pass optimizer=")
    elif isinstance(states, dict):
        table, mx = states, optimizer
        if mx is None:
            raise ValueError(f"{WHERE}: the states hold no optimizer (a Module checkpoint); pass "
                             f"optimizer=adamop.optimizer.create('adam', ...) built as the MXNet "
                             f"run built it")
    else:
        raise TypeError(f"{WHERE}: states must be a .states path or bytes, an Updater, a dict of "
                        f"index -> state or (states, optimizer), got {type(states).__name__}")
    if not isinstance(mx, MXNetAdam):
        raise TypeError(f"{WHERE}: the MXNet optimizer must be an adamop.optimizer.Adam (MXNet's "
                        f"Adam), got {type(mx).__name__}")
    return table, mx


def _mapping(params: Any) -> dict:
    if isinstance(params, torch.Tensor):
        raise TypeError(f"{WHERE}: params must be a list of parameters or a dict index -> "
                        f"parameter, got a single tensor")
    by_index = dict(params) if isinstance(params, Mapping) else dict(enumerate(params))
    for index, p in by_index.items():
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"{WHERE}: params[{index!r}] is {type(p).__name__}; expected a "
                            f"torch parameter")
    if len({id(p) for p in by_index.values()}) != len(by_index):
        raise ValueError(f"{WHERE}: params maps two indices to one parameter")
    return by_index


def _state(index: Any, state: Any, param: torch.Tensor, multi_precision: bool, step: int) -> dict:
    """MXNet's state of one index as this optimizer's, on the parameter's device."""
    master = is_master(param, multi_precision)
    try:
        if master:
            w32, (mean, var) = state
            arrays = {"exp_avg": mean, "exp_avg_sq": var, MASTER: w32}
        else:
            mean, var = state
            arrays = {"exp_avg": mean, "exp_avg_sq": var}
    except (TypeError, ValueError):
        want = "(weight32, (mean, var)) (MXNet's multi-precision state)" if master else \
            "(mean, var)"
        raise ValueError(f"{WHERE}: index {index!r}: the state is {type(state).__name__}, "
                         f"expected {want} for a {param.dtype} parameter with multi_precision="
                         f"{multi_precision}") from None
    dtype = torch.float32 if master else param.dtype
    out: dict = {"step": step}
    for key, value in arrays.items():
        t = _tensor(value)
        if t is None or tuple(t.shape) != tuple(param.shape) or t.dtype != dtype:
            got = "not an array" if t is None else f"{t.dtype} {tuple(t.shape)}"
            raise ValueError(f"{WHERE}: index {index!r}: {key} is {got}, but the parameter needs "
                             f"{dtype} {tuple(param.shape)}; check the index -> parameter "
                             f"mapping and multi_precision")
        out[key] = _placed(t, param)
    return out


def _tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, RowSparseArray):
        value = value.todense()   # rows not stored are zeros
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value))
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    return None


def _placed(t: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """``t`` laid out as the parameter: on its device, and sharded as a DTensor parameter is."""
    mesh = getattr(param, "device_mesh", None)
    if mesh is not None:
        from torch.distributed.tensor import distribute_tensor
        return distribute_tensor(t.to(param.device), mesh, param.placements)
    return t.to(param.device).contiguous()
