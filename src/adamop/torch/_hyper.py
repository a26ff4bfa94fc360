"""The hyperparameters of ``adamop.torch.Adam``: checking them, and MXNet's values for the op.

A param group holds torch's names (``lr``, ``betas``, ``eps``, ``weight_decay``) and MXNet's
(``rescale_grad``, ``clip_gradient``, ``lazy_update``, ``lr_mult``, ``wd_mult``). They are checked
when a group is added or loaded and again at every step (groups are plain dicts that users and
torch's lr schedulers edit). What reaches ``adam_update`` are the Python doubles MXNet's optimizer
passes, parsed once per distinct set (``AdamParams.from_kwargs`` keeps them).
"""
from __future__ import annotations

import numbers
from typing import Any, NamedTuple

from ..ops.adam import AdamParams
from ..optimizer._checks import flag, integer, real

__all__ = ["GROUP_DEFAULTS", "OPTIMIZER_WIDE", "Hyper", "check_group", "check_optimizer_wide",
           "op_params"]

OWNER = "adamop.torch.Adam"

# a param group's keys and their defaults (the constructor's keyword arguments)
GROUP_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "rescale_grad": 1.0,
    "clip_gradient": None, "lazy_update": True, "lr_mult": 1.0, "wd_mult": 1.0}
# settings of the whole optimizer, not of a group (ZeroRedundancyOptimizer copies every keyword
# argument into its groups: there they must agree with the optimizer's)
OPTIMIZER_WIDE = ("multi_precision", "lr_scheduler", "begin_num_update")


class Hyper(NamedTuple):
    """One group's checked values, as Python numbers."""

    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    rescale_grad: float
    clip_gradient: float | None
    lazy_update: bool
    lr_mult: float
    wd_mult: float


def _non_negative(name: str, value: Any, where: str) -> float:
    value = real(OWNER, f"{where}{name}", value)
    if value < 0:
        raise ValueError(f"{OWNER}: invalid {where}{name} {value!r}; it must be >= 0")
    return value


def check_group(group: dict, where: str = "") -> Hyper:
    """The checked hyperparameters of a param group, or a ``TypeError``/``ValueError`` naming
    the key (``where`` prefixes it, e.g. ``"param_groups[1] "``)."""
    missing = [k for k in GROUP_DEFAULTS if k not in group]
    if missing:
        raise ValueError(f"{OWNER}: {where}lacks {', '.join(missing)}; a group of this optimizer "
                         f"holds {', '.join(GROUP_DEFAULTS)}")
    if isinstance(group["lr"], bool) or not isinstance(group["lr"], numbers.Real):
        raise TypeError(f"{OWNER}: {where}lr must be a real number, got {group['lr']!r} "
                        f"({type(group['lr']).__name__}); a tensor lr is not supported")
    lr = _non_negative("lr", group["lr"], where)
    betas = group["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"{OWNER}: {where}betas must be a pair (beta1, beta2), got {betas!r}")
    beta1, beta2 = (real(OWNER, f"{where}betas[{i}]", b) for i, b in enumerate(betas))
    for i, b in enumerate((beta1, beta2)):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"{OWNER}: invalid {where}betas[{i}] {b!r}; it must be in [0, 1)")
    clip = group["clip_gradient"]
    clip = None if clip is None else real(OWNER, f"{where}clip_gradient", clip)
    return Hyper(lr, beta1, beta2, _non_negative("eps", group["eps"], where),
                 _non_negative("weight_decay", group["weight_decay"], where),
                 real(OWNER, f"{where}rescale_grad", group["rescale_grad"]), clip,
                 flag(OWNER, f"{where}lazy_update", group["lazy_update"]),
                 real(OWNER, f"{where}lr_mult", group["lr_mult"]),
                 real(OWNER, f"{where}wd_mult", group["wd_mult"]))


def check_optimizer_wide(multi_precision: Any, lr_scheduler: Any, begin_num_update: Any
                         ) -> tuple[bool, Any, int]:
    """The optimizer-wide arguments, checked."""
    from .. import lr_scheduler as schedulers
    if lr_scheduler is not None and not isinstance(lr_scheduler, schedulers.LRScheduler):
        raise TypeError(f"{OWNER}: lr_scheduler must be an adamop.lr_scheduler scheduler (MXNet's "
                        f"FactorScheduler, MultiFactorScheduler, PolyScheduler, CosineScheduler "
                        f"or a subclass of LRScheduler), got {type(lr_scheduler).__name__}; a "
                        f"torch.optim.lr_scheduler is attached to the optimizer instead "
                        f"(StepLR(opt, ...)) and edits each group's lr")
    return (flag(OWNER, "multi_precision", multi_precision), lr_scheduler,
            integer(OWNER, "begin_num_update", begin_num_update, minimum=0))


def op_params(h: Hyper, lr: float, wd: float) -> AdamParams:
    """The op's parameters for an update with learning rate ``lr`` (bias-corrected) and weight
    decay ``wd``: MXNet's keywords, with ``clip_gradient`` only where it is truthy."""
    given = {"lr": lr, "beta1": h.beta1, "beta2": h.beta2, "epsilon": h.eps, "wd": wd,
             "rescale_grad": h.rescale_grad, "lazy_update": h.lazy_update}
    if h.clip_gradient:   # None and 0 mean no clipping in MXNet's optimizer (the op clips at >= 0)
        given["clip_gradient"] = h.clip_gradient
    return AdamParams.from_kwargs(given)


def hyper_dict(h: Hyper) -> dict:
    """The keywords other than lr and wd, as ``optimizer._steps`` takes them."""
    given = {"beta1": h.beta1, "beta2": h.beta2, "epsilon": h.eps,
             "rescale_grad": h.rescale_grad, "lazy_update": h.lazy_update}
    if h.clip_gradient:
        given["clip_gradient"] = h.clip_gradient
    return given
