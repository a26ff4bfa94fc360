"""A parameter's optimizer state: making it as MXNet does, and checking one that is loaded.

The state of a parameter is torch's layout: ``step`` (its update count, MXNet's
``_index_update_count``, a Python int), ``exp_avg`` and ``exp_avg_sq`` (MXNet's ``mean`` and
``var``) and, for a float16 or bfloat16 parameter with ``multi_precision``, ``master_weight``
(MXNet's float32 copy, which the update runs on; the parameter is its rounding). States are
contiguous, of the parameter's kind (a DTensor's are DTensors with its placements).
"""
from __future__ import annotations

import numbers
import warnings
from typing import Any

import torch

from ..optimizer.base import FP16_WARNING
from ._hyper import OWNER

__all__ = ["KEYS", "MASTER", "check_dtype", "check_loaded", "is_master", "new_state"]

KEYS = ("step", "exp_avg", "exp_avg_sq")
MASTER = "master_weight"
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_HALVES = (torch.float16, torch.bfloat16)


def check_dtype(param: torch.Tensor, multi_precision: bool, where: str) -> None:
    """A clear error for a parameter this optimizer cannot update."""
    if param.dtype not in _FLOATS:
        raise TypeError(f"{OWNER}: {where} is {param.dtype}; the update runs on float16, "
                        f"bfloat16 (with multi_precision=True), float32 and float64 parameters")
    if param.dtype == torch.bfloat16 and not multi_precision:
        raise ValueError(f"{OWNER}: {where} is bfloat16, which needs multi_precision=True: MXNet "
                         f"defines no bfloat16 arithmetic, so the update runs on a float32 master "
                         f"copy and rounds it to bfloat16 (to nearest even)")
    if param.layout != torch.strided:
        raise TypeError(f"{OWNER}: {where} has layout {param.layout}; parameters must be dense "
                        f"(a sparse gradient of a dense parameter is fine)")


def is_master(param: torch.Tensor, multi_precision: bool) -> bool:
    """Whether the parameter is updated through a float32 master copy."""
    return multi_precision and param.dtype in _HALVES


def new_state(param: torch.Tensor, multi_precision: bool, begin_num_update: int) -> dict:
    """MXNet's ``create_state_multi_precision``: zeros (float32 ones and a float32 copy of the
    weight for a master-copy parameter); a float16 parameter without master copy warns, as
    MXNet does."""
    master = is_master(param, multi_precision)
    if param.dtype == torch.float16 and not master:
        warnings.warn(FP16_WARNING, UserWarning, stacklevel=4)
    dtype = torch.float32 if master else param.dtype
    state = {"step": begin_num_update,
             "exp_avg": torch.zeros_like(param, dtype=dtype, memory_format=torch.contiguous_format),
             "exp_avg_sq": torch.zeros_like(param, dtype=dtype,
                                            memory_format=torch.contiguous_format)}
    if master:
        state[MASTER] = param.detach().to(torch.float32, memory_format=torch.contiguous_format,
                                          copy=True)
    return state


def refresh(state: dict, param: torch.Tensor, multi_precision: bool) -> dict:
    """An unused state made at construction, as MXNet would make it now (the first update): the
    same tensors if they still fit the parameter (its master copy taken again from the weight),
    else new ones (the model moved to another device or dtype since)."""
    master = is_master(param, multi_precision)
    dtype = torch.float32 if master else param.dtype
    held = [state.get(k) for k in ("exp_avg", "exp_avg_sq") + ((MASTER,) if master else ())]
    if (len(state) == len(held) + 1
            and all(isinstance(t, torch.Tensor) and t.dtype == dtype and t.device == param.device
                    and t.shape == param.shape and type(t) is type(param.detach())
                    for t in held)):
        if master:
            state[MASTER].copy_(param.detach())
        return state
    return new_state(param, multi_precision, state.get("step", 0))


def _step_value(value: Any, where: str) -> int:
    """A saved step as an int: ours are ints, torch.optim.Adam's a float32 0-d tensor."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = int(value.item())
    elif isinstance(value, torch.Tensor) and value.numel() == 1:
        as_float = float(value.item())
        if as_float.is_integer():
            value = int(as_float)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{OWNER}.load_state_dict: {where} step is {value!r}; expected the update "
                         f"count, an int >= 0")
    return int(value)


def check_loaded(entry: Any, param: torch.Tensor, multi_precision: bool, where: str) -> dict:
    """A saved state for ``param``, checked (keys, shapes, dtypes), with its step as an int.

    Tensors keep their values (the caller moves them to the parameter's device); a master-copy
    parameter's states stay float32."""
    if not isinstance(entry, dict):
        raise TypeError(f"{OWNER}.load_state_dict: {where} state is {type(entry).__name__}; "
                         f"expected a dict with {', '.join(KEYS)}")
    master = is_master(param, multi_precision)
    want = KEYS + ((MASTER,) if master else ())
    missing = [k for k in want if k not in entry]
    extra = [k for k in entry if k not in want]
    if MASTER in missing or MASTER in extra:
        saved = "with" if MASTER in extra else "without"
        raise ValueError(f"{OWNER}.load_state_dict: {where} ({param.dtype}) was saved {saved} a "
                         f"float32 master copy; build the optimizer with multi_precision="
                         f"{MASTER in extra} as the run that saved it")
    if missing or extra:
        raise ValueError(f"{OWNER}.load_state_dict: {where} state has keys {sorted(entry)}; "
                         f"expected {list(want)} (a state saved by adamop.torch.Adam, or by "
                         f"torch.optim.Adam without amsgrad)")
    out = {"step": _step_value(entry["step"], where)}
    for key in want[1:]:
        t = entry[key]
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise ValueError(f"{OWNER}.load_state_dict: {where} {key} is {type(t).__name__}; "
                             f"expected a floating-point tensor")
        if tuple(t.shape) != tuple(param.shape):
            raise ValueError(f"{OWNER}.load_state_dict: {where} {key} has shape "
                             f"{tuple(t.shape)} but the parameter {tuple(param.shape)}; the state "
                             f"dict belongs to another model or parameter order")
        out[key] = t
    return out
