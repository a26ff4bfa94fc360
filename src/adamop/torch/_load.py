"""Loading a state dict into ``adamop.torch.Adam``: everything checked before anything changes.

torch's ``Optimizer.load_state_dict`` casts every floating-point state to its parameter's dtype,
which would round a float16 parameter's float32 master copy and moments; those tensors are held
back from it and put in place afterwards, on the parameter's device, still float32.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import torch

from .. import lr_scheduler as schedulers
from ._hyper import GROUP_DEFAULTS, OWNER, check_group
from ._state import check_loaded, is_master

__all__ = ["Loaded", "check", "finish"]

# settings of torch.optim.Adam that this optimizer cannot honour
_UNSUPPORTED = ("amsgrad", "maximize", "decoupled_weight_decay")


@dataclass
class Loaded:
    """A checked state dict, and what is put in place after torch's loading."""

    state_dict: dict
    held: list = field(default_factory=list)   # (param, key, float32 tensor)
    num_update: int = 0
    scheduler: Any = None                      # the scheduler to use after loading


def check(opt: Any, state_dict: Any) -> Loaded:
    """The state dict, checked against ``opt`` and normalised for torch's loader."""
    where = f"{OWNER}.load_state_dict"
    if not isinstance(state_dict, dict) or not isinstance(state_dict.get("state"), dict) \
            or not isinstance(state_dict.get("param_groups"), list):
        raise TypeError(f"{where}: expected a dict with 'state' (a dict) and 'param_groups' (a "
                         f"list), as state_dict() returns; got {_short(state_dict)}")
    saved_groups = state_dict["param_groups"]
    if len(saved_groups) != len(opt.param_groups):
        raise ValueError(f"{where}: the state dict has {len(saved_groups)} parameter groups, the "
                         f"optimizer {len(opt.param_groups)}")
    groups = []
    for gi, (saved, group) in enumerate(zip(saved_groups, opt.param_groups)):
        if not isinstance(saved, dict) or not isinstance(saved.get("params"), list):
            raise TypeError(f"{where}: param_groups[{gi}] is not a group (a dict with a "
                             f"'params' list)")
        if len(saved["params"]) != len(group["params"]):
            raise ValueError(f"{where}: param_groups[{gi}] has {len(saved['params'])} "
                             f"parameters in the state dict, {len(group['params'])} here")
        for key in _UNSUPPORTED:
            if saved.get(key):
                raise ValueError(f"{where}: param_groups[{gi}] was saved with {key}=True, which "
                                 f"MXNet's Adam does not have")
        # a group of torch.optim.Adam lacks MXNet's keys: this optimizer's values stay
        filled = {**{k: group[k] for k in GROUP_DEFAULTS if k not in saved}, **saved}
        check_group(filled, f"the state dict's param_groups[{gi}] ")
        groups.append(filled)
    ids = list(chain.from_iterable(g["params"] for g in saved_groups))
    params = list(chain.from_iterable(g["params"] for g in opt.param_groups))
    if len(set(ids)) != len(ids):
        raise ValueError(f"{where}: the state dict lists a parameter id twice")
    id_map = dict(zip(ids, params))
    loaded = Loaded({**state_dict, "param_groups": groups, "state": {}})
    for key, entry in state_dict["state"].items():
        if key not in id_map:
            raise ValueError(f"{where}: the state dict has a state for parameter id {key!r}, "
                             f"which none of its param_groups lists")
        param = id_map[key]
        entry = check_loaded(entry, param, opt.multi_precision, f"parameter {key!r}")
        if is_master(param, opt.multi_precision):
            for k in ("exp_avg", "exp_avg_sq", "master_weight"):
                loaded.held.append((param, k, entry[k].to(torch.float32)))
                entry[k] = None   # torch's loader passes it by; put back by finish()
        loaded.state_dict["state"][key] = entry
    steps = [e["step"] for e in loaded.state_dict["state"].values()]
    loaded.num_update = max([opt.begin_num_update, *steps])
    loaded.scheduler = opt.lr_scheduler
    extra = state_dict.get("adamop")
    if extra is not None:
        _check_extra(opt, extra, loaded, where)
    loaded.state_dict.pop("adamop", None)
    return loaded


def _check_extra(opt: Any, extra: Any, loaded: Loaded, where: str) -> None:
    """``num_update`` and the scheduler's state, checked (a scheduler is restored into a new
    object; :func:`finish` copies it into the optimizer's own)."""
    if not isinstance(extra, dict) or not {"num_update", "lr_scheduler"} <= set(extra):
        raise ValueError(f"{where}: 'adamop' must be a dict with num_update and lr_scheduler, "
                         f"got {_short(extra)}")
    n = extra["num_update"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"{where}: adamop.num_update must be an int >= 0, got {n!r}")
    loaded.num_update = n
    saved = extra["lr_scheduler"]
    current = opt.lr_scheduler
    if saved is None:
        if current is not None:
            raise ValueError(f"{where}: the state dict was saved without an lr_scheduler but this "
                             f"optimizer has a {type(current).__name__}; build it as the run "
                             f"that saved the state, or drop state_dict['adamop']")
        return
    if not isinstance(saved, dict) or set(saved) != {"class", "state"}:
        raise TypeError(f"{where}: adamop.lr_scheduler must be a dict with class and state, got "
                         f"{_short(saved)}")
    name = saved["class"]
    cls = type(current) if current is not None and type(current).__name__ == name else getattr(
        schedulers, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, schedulers.LRScheduler)):
        raise TypeError(f"{where}: the state dict's lr_scheduler is a {name!r}, which is not an "
                        f"adamop.lr_scheduler class")
    if current is not None and type(current) is not cls:
        raise ValueError(f"{where}: the state dict's lr_scheduler is a {name}, this optimizer's "
                         f"a {type(current).__name__}; build it with the same scheduler class")
    restored = cls.__new__(cls)
    restored.__setstate__(copy.deepcopy(saved["state"]))   # checks the attributes
    loaded.scheduler = restored


def finish(opt: Any, loaded: Loaded) -> None:
    """After torch's loading: the held float32 tensors, ``num_update``, the scheduler."""
    for param, key, tensor in loaded.held:
        opt.state[param][key] = tensor.to(device=param.device)
    opt.num_update = loaded.num_update
    if loaded.scheduler is not opt.lr_scheduler:
        if opt.lr_scheduler is None:
            opt.lr_scheduler = loaded.scheduler
        else:   # the optimizer's own scheduler object takes the loaded state
            opt.lr_scheduler.__dict__.clear()
            opt.lr_scheduler.__dict__.update(loaded.scheduler.__dict__)


def _short(x: Any) -> str:
    text = f"{type(x).__name__} {x!r}"
    return text if len(text) <= 80 else text[:77] + "..."
