"""``Optimizer``: what MXNet 1.9.1's optimizers share (``mx.optimizer.Optimizer``).

Update counts, learning rates from a scheduler, lr/wd multipliers (by index, by name through
``param_idx2name``, from a symbol's ``__lr_mult__``/``__wd_mult__`` attributes, or from Gluon
Parameters in ``param_dict``), multi-precision states and the attributes MXNet pickles: each as
MXNet's Python code does it, in its order, in Python double.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from . import _tensors
from ._checks import (
    AssertionTypeError,
    UserWarningError,
    check_state,
    flag,
    integer,
    is_bool,
    is_dict,
    is_int,
    is_real,
    mult_table,
    real,
)
from ._rates import OVERRIDE, override_base_lr, restore_scheduler, save_scheduler

__all__ = ["Optimizer"]

FP16_WARNING = ("Accumulating with float16 in optimizer can lead to poor accuracy or slow "
                "convergence. Consider using multi_precision=True option of the optimizer")


def _is_opt_real(v: Any) -> bool:
    return v is None or is_real(v)


def _sym_info(sym: Any) -> tuple:
    """MXNet's ``(sym.attr_dict(), sym.list_arguments())``, for an ``adamop.sym`` graph too."""
    if hasattr(sym, "attr_dict"):
        attrs = sym.attr_dict()
    elif hasattr(sym, "get_internals") and hasattr(sym, "list_arguments"):
        attrs = {}   # every node's attributes by node name, as MXNet's attr_dict()
        for node in sym.get_internals():
            if node.list_attr():
                attrs[node.name] = node.list_attr()
    else:
        raise TypeError(f"sym must be a symbol (an adamop.sym graph), got "
                        f"{type(sym).__name__}")
    return attrs, list(sym.list_arguments())


class Optimizer:
    """The base of MXNet's optimizers; see :class:`adamop.optimizer.Adam` for the arguments."""

    _STATE = {
        "lr": _is_opt_real, "wd": is_real, "rescale_grad": is_real,
        "lr_scheduler": lambda v: v is None or callable(v), "lr_mult": is_dict,
        "wd_mult": is_dict, "begin_num_update": is_int, "num_update": is_int,
        "_all_index_update_counts": lambda v: is_dict(v) and all(map(is_dict, v.values())),
        "_index_update_count": is_dict, "clip_gradient": _is_opt_real,
        "multi_precision": is_bool, "aggregate_num": is_int, "idx2name": is_dict,
        "sym_info": lambda v: isinstance(v, tuple) and len(v) in (0, 2),
        "allow_np_array": is_bool}

    def __init__(self, rescale_grad: float = 1., param_idx2name: dict | None = None,
                 wd: float = 0., clip_gradient: float | None = None,
                 learning_rate: float | None = None, lr_scheduler: Any = None, sym: Any = None,
                 begin_num_update: int = 0, multi_precision: bool = False,
                 param_dict: Mapping | None = None) -> None:
        owner = type(self).__name__
        rescale_grad = real(owner, "rescale_grad", rescale_grad)
        wd = real(owner, "wd", wd)
        clip_gradient = real(owner, "clip_gradient", clip_gradient, optional=True)
        learning_rate = real(owner, "learning_rate", learning_rate, optional=True)
        begin_num_update = integer(owner, "begin_num_update", begin_num_update, minimum=0)
        multi_precision = flag(owner, "multi_precision", multi_precision)
        if lr_scheduler is not None and not callable(lr_scheduler):
            raise TypeError(f"{owner}: lr_scheduler must be a scheduler (e.g. "
                            f"adamop.lr_scheduler.FactorScheduler), got "
                            f"{type(lr_scheduler).__name__}")
        if (lr_scheduler is not None and learning_rate is not None
                and not hasattr(lr_scheduler, "base_lr")):
            raise TypeError(f"{owner}: learning_rate overrides the scheduler's base_lr, but "
                            f"{type(lr_scheduler).__name__} has none; pass learning_rate=None to "
                            f"use the scheduler as it is")
        if param_idx2name is None:
            param_idx2name = {}
        if not isinstance(param_idx2name, dict):
            raise AssertionTypeError(f"param_idx2name should be a dict of param indexes to "
                                     f"names. Got {type(param_idx2name).__name__}")
        for index, name in param_idx2name.items():
            if not isinstance(name, str):
                raise TypeError(f"{owner}: param_idx2name[{index!r}] must be a str (a parameter "
                                f"name), got {name!r}")
        if param_dict and not isinstance(param_dict, Mapping):
            raise TypeError(f"{owner}: param_dict must map indices to Gluon Parameters (objects "
                            f"with lr_mult and wd_mult), got {type(param_dict).__name__}")
        for index, param in (param_dict or {}).items():
            if not (hasattr(param, "lr_mult") and hasattr(param, "wd_mult")):
                raise TypeError(f"{owner}: param_dict[{index!r}] has no lr_mult/wd_mult "
                                f"attributes (expected a Gluon Parameter), got "
                                f"{type(param).__name__}")
        sym_info = _sym_info(sym) if sym is not None else ()

        # MXNet's constructor from here on, statement by statement (its attribute order too).
        self.rescale_grad = rescale_grad
        self.lr_scheduler = lr_scheduler
        if self.lr_scheduler is None and learning_rate is None:
            learning_rate = 0.01
        self.lr = learning_rate
        # MXNet prints a warning here (SPEC_TRAINING C.1)
        override_base_lr(self.lr_scheduler, learning_rate,
                         lambda: warnings.warn(OVERRIDE, UserWarning, stacklevel=5))
        self.wd = wd
        self.lr_mult: dict = {}
        self.wd_mult: dict = {}
        self.begin_num_update = begin_num_update
        self.num_update = begin_num_update
        self._all_index_update_counts: dict = {0: {}}
        self._index_update_count = self._all_index_update_counts[0]
        self.clip_gradient = clip_gradient
        self.multi_precision = multi_precision
        self.aggregate_num = 0
        self.idx2name = param_idx2name.copy()
        self.sym_info = sym_info
        self.param_dict = param_dict if param_dict else {}
        self.allow_np_array = False
        self.set_lr_mult({})
        self.set_wd_mult({})

    # ---- learning rate and multipliers --------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """The current learning rate: the scheduler's at ``num_update`` (a stateful call, as in
        MXNet), else ``lr``."""
        if self.lr_scheduler is not None:
            return self.lr_scheduler(self.num_update)
        return self.lr

    def set_learning_rate(self, lr: float) -> None:
        """Set ``lr``; refused (``UserWarning``, as MXNet raises) when a scheduler is set."""
        if self.lr_scheduler is not None:
            raise UserWarningError("LRScheduler of the optimizer has already been defined. Note "
                                   "that set_learning_rate can mutate the value of the learning "
                                   "rate of the optimizer only when the LRScheduler of the "
                                   "optimizer is undefined.")
        self.lr = real(type(self).__name__, "lr", lr)

    def set_lr_mult(self, args_lr_mult: dict) -> None:
        """Rebuild the lr multipliers: the symbol's ``__lr_mult__`` attributes, then
        ``args_lr_mult`` (keys: parameter indices or names)."""
        table = mult_table(type(self).__name__, "args_lr_mult", args_lr_mult)
        self.lr_mult = {}
        if self.sym_info:
            attr, arg_names = self.sym_info
            for name in arg_names:
                if name in attr and "__lr_mult__" in attr[name]:
                    self.lr_mult[name] = float(attr[name]["__lr_mult__"])
        self.lr_mult.update(table)

    def set_wd_mult(self, args_wd_mult: dict) -> None:
        """Rebuild the wd multipliers: 0.0 for every ``param_idx2name`` name ending neither in
        ``_weight`` nor in ``_gamma`` (biases, BatchNorm betas), then the symbol's
        ``__wd_mult__`` attributes, then ``args_wd_mult``."""
        table = mult_table(type(self).__name__, "args_wd_mult", args_wd_mult)
        self.wd_mult = {}
        for n in self.idx2name.values():
            if not (n.endswith("_weight") or n.endswith("_gamma")):
                self.wd_mult[n] = 0.0
        if self.sym_info:
            attr, arg_names = self.sym_info
            for name in arg_names:
                if name in attr and "__wd_mult__" in attr[name]:
                    self.wd_mult[name] = float(attr[name]["__wd_mult__"])
        self.wd_mult.update(table)

    # ---- update counts ------------------------------------------------------------------------
    def _set_current_context(self, device_id: int) -> None:
        """Count updates per device, as MXNet does (``_all_index_update_counts``)."""
        if device_id not in self._all_index_update_counts:
            self._all_index_update_counts[device_id] = {}
        self._index_update_count = self._all_index_update_counts[device_id]

    def _save_progress(self) -> tuple:
        """What a step changes in Python (counts, ``num_update``, the scheduler's state)."""
        return (dict(self._index_update_count), self.num_update,
                save_scheduler(self.lr_scheduler))

    def _restore_progress(self, saved: tuple) -> None:
        """Undo a step that failed before it wrote anything (the dicts keep their identity)."""
        counts, self.num_update, sched = saved
        self._index_update_count.clear()
        self._index_update_count.update(counts)
        restore_scheduler(self.lr_scheduler, sched)

    def _multipliers(self, indices: Sequence[Any]) -> tuple[Any, Any]:
        """The lr and wd multipliers of each index, as MXNet's ``_get_lr`` / ``_get_wd`` look
        them up: ``param_dict[index]`` (Gluon), else the table by index, else by
        ``idx2name[index]``, else none (1.0). ``(1.0, 1.0)`` when there are no tables at all."""
        param_dict, lr_mult, wd_mult, idx2name = (self.param_dict, self.lr_mult, self.wd_mult,
                                                  self.idx2name)
        if not (param_dict or lr_mult or wd_mult or idx2name):
            return 1.0, 1.0
        lrs, wds = [], []
        for index in indices:
            if index in param_dict:
                lm, wm = param_dict[index].lr_mult, param_dict[index].wd_mult
            else:
                lm = lr_mult[index] if index in lr_mult else (
                    lr_mult.get(idx2name[index], 1.0) if index in idx2name else 1.0)
                wm = wd_mult[index] if index in wd_mult else (
                    wd_mult.get(idx2name[index], 1.0) if index in idx2name else 1.0)
            lrs.append(float(lm))
            wds.append(float(wm))
        return lrs, wds

    # ---- states -------------------------------------------------------------------------------
    def create_state(self, index: Any, weight: Any) -> Any:
        """The optimizer's state for one weight (none in the base class)."""
        return None

    def create_state_multi_precision(self, index: Any, weight: Any) -> Any:
        """:meth:`create_state`, with a float32 master copy for a float16 weight when
        ``multi_precision`` is on: ``(weight32, state)``. A float16 weight without it warns, as
        MXNet does."""
        _tensors.check_weight(weight)
        if self.multi_precision and _tensors.is_float16(weight):
            master = _tensors.astype_float32(weight)
            return (master, self.create_state(index, master))
        if _tensors.is_float16(weight) and not self.multi_precision:
            warnings.warn(FP16_WARNING, UserWarning, stacklevel=2)
        return self.create_state(index, weight)

    def update(self, index: Any, weight: Any, grad: Any, state: Any) -> None:
        """Update one weight in place with its gradient and state."""
        self._update_many([index], [weight], [grad], [state], multi_precision=False)

    def update_multi_precision(self, index: Any, weight: Any, grad: Any, state: Any) -> None:
        """:meth:`update`, through the float32 master copy for a float16 weight when
        ``multi_precision`` is on."""
        self._update_many([index], [weight], [grad], [state],
                          multi_precision=self.multi_precision)

    def _update_many(self, indices: Sequence[Any], weights: Sequence[Any], grads: Sequence[Any],
                     states: Sequence[Any], *, multi_precision: bool) -> None:
        """``update_multi_precision`` (or ``update``) of each entry, in list order."""
        raise NotImplementedError(f"{type(self).__name__} does not implement updates")

    # ---- pickling (MXNet's attributes; adamop.states writes and reads them) -------------------
    def __getstate__(self) -> dict:
        """MXNet's attributes as a plain dict, without ``param_dict`` (as MXNet pickles it)."""
        state = self.__dict__.copy()
        del state["param_dict"]
        return state

    def __setstate__(self, state: dict) -> None:
        """Restore from :meth:`__getstate__` or an MXNet pickle's dict, after checking it;
        ``param_dict`` starts empty (a Gluon Trainer sets it again)."""
        checked = check_state(type(self).__name__, state, self._STATE)
        self.__dict__.clear()
        self.__dict__.update(checked)
        self.param_dict = {}
