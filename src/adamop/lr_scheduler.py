"""MXNet 1.9.1's learning-rate schedulers (``mx.lr_scheduler``): stateful, in Python double.

Every expression is MXNet's, in its order, so each learning rate is the same double (and its
``str()``, which the update parses, the same text). The schedulers are stateful as MXNet's are:
``FactorScheduler`` and ``MultiFactorScheduler`` decay ``base_lr`` in place as ``num_update``
passes their steps, and ``PolyScheduler`` / ``CosineScheduler`` overwrite ``base_lr`` while
``num_update <= max_update``. Call them exactly as MXNet's optimizer does (with the optimizer's
``num_update``, once per parameter update) to get MXNet's numbers.

Attributes carry MXNet's names, and ``__getstate__`` / ``__setstate__`` exchange them as a plain
dict, so a scheduler travels in MXNet's ``.states`` pickles (``adamop.states``).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from math import cos, pi
from typing import Any

from .optimizer._checks import (
    AssertionTypeError,
    AssertionValueError,
    check_state,
    integer,
    is_int,
    is_real,
    is_str,
    real,
)

__all__ = ["LRScheduler", "FactorScheduler", "MultiFactorScheduler", "PolyScheduler",
           "CosineScheduler"]

_log = logging.getLogger(__name__)   # MXNet logs the factor decays with logging.info


class LRScheduler:
    """Base class: warmup, then the subclass's schedule (``mx.lr_scheduler.LRScheduler``).

    Args:
        base_lr: the learning rate after warmup. An optimizer built with a ``learning_rate``
            overwrites it (MXNet's quirk; see ``adamop.optimizer.Optimizer``).
        warmup_steps: updates of warmup before the schedule starts (an int >= 0).
        warmup_begin_lr: the learning rate warmup starts from (at most ``base_lr``).
        warmup_mode: ``'linear'`` (from ``warmup_begin_lr`` up to the ``base_lr`` given here) or
            ``'constant'`` (``warmup_begin_lr`` throughout).

    Raises:
        TypeError: an argument of the wrong type (also an ``AssertionError`` for
            ``warmup_steps``, which MXNet asserts is an int).
        ValueError: MXNet's errors: ``warmup_begin_lr > base_lr``, ``warmup_steps < 0``, an
            unknown ``warmup_mode``.
    """

    mxnet_class = "mxnet.lr_scheduler.LRScheduler"
    _STATE: dict[str, Callable[[Any], bool]] = {
        "base_lr": is_real, "warmup_steps": is_int, "warmup_final_lr": is_real,
        "warmup_begin_lr": is_real, "warmup_mode": is_str}

    def __init__(self, base_lr: float = 0.01, warmup_steps: int = 0,
                 warmup_begin_lr: float = 0, warmup_mode: str = "linear") -> None:
        owner = type(self).__name__
        self.base_lr = real(owner, "base_lr", base_lr)
        self.warmup_steps = integer(owner, "warmup_steps", warmup_steps, assertion=True)
        self.warmup_final_lr = self.base_lr
        self.warmup_begin_lr = real(owner, "warmup_begin_lr", warmup_begin_lr)
        if self.warmup_begin_lr > self.warmup_final_lr:
            raise ValueError(f"Base lr has to be higher than warmup_begin_lr: got "
                             f"warmup_begin_lr={warmup_begin_lr!r} > base_lr={base_lr!r}; "
                             f"lower warmup_begin_lr or raise base_lr")
        if self.warmup_steps < 0:
            raise ValueError(f"Warmup steps has to be positive or 0: got "
                             f"warmup_steps={warmup_steps!r}")
        if warmup_mode not in ("linear", "constant"):
            raise ValueError(f"Supports only linear and constant modes of warmup: got "
                             f"warmup_mode={warmup_mode!r}; use 'linear' or 'constant'")
        self.warmup_mode = warmup_mode

    def get_warmup_lr(self, num_update: int) -> float:
        """The warmup learning rate at ``num_update`` (which must be ``< warmup_steps``)."""
        if not num_update < self.warmup_steps:
            raise AssertionValueError(f"get_warmup_lr: num_update={num_update!r} is past the "
                                      f"warmup (warmup_steps={self.warmup_steps})")
        if self.warmup_mode == "linear":
            increase = (self.warmup_final_lr - self.warmup_begin_lr) \
                * float(num_update) / float(self.warmup_steps)
            return self.warmup_begin_lr + increase
        if self.warmup_mode == "constant":
            return self.warmup_begin_lr
        raise ValueError(f"Invalid warmup mode {self.warmup_mode}")

    def __call__(self, num_update: int) -> float:
        """The learning rate for ``num_update``: the optimizer's largest update count so far."""
        raise NotImplementedError("must override this")

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"

    def __getstate__(self) -> dict:
        """MXNet's attributes (names and plain values), as MXNet pickles them."""
        return dict(vars(self))

    def __setstate__(self, state: dict) -> None:
        """Restore from :meth:`__getstate__` or an MXNet pickle's dict, after checking it."""
        self.__dict__.update(check_state(type(self).__name__, state, self._STATE))


class FactorScheduler(LRScheduler):
    """``base_lr * factor ** floor(...)``: multiply by ``factor`` every ``step`` updates.

    Stateful, as MXNet's: ``count`` and ``base_lr`` advance in a loop while
    ``num_update > count + step``; ``base_lr`` never falls below ``stop_factor_lr``.

    Args:
        step: updates between decays (>= 1).
        factor: the decay (<= 1).
        stop_factor_lr: the floor of the learning rate.
        base_lr, warmup_steps, warmup_begin_lr, warmup_mode: as :class:`LRScheduler`.

    Examples:
        >>> s = FactorScheduler(step=2, factor=0.5, base_lr=1.0)
        >>> [s(n) for n in range(1, 8)]
        [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125]
    """

    mxnet_class = "mxnet.lr_scheduler.FactorScheduler"
    _STATE = {**LRScheduler._STATE, "step": is_real, "factor": is_real,
              "stop_factor_lr": is_real, "count": is_real}

    def __init__(self, step: int, factor: float = 1, stop_factor_lr: float = 1e-8,
                 base_lr: float = 0.01, warmup_steps: int = 0, warmup_begin_lr: float = 0,
                 warmup_mode: str = "linear") -> None:
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        step = real("FactorScheduler", "step", step)
        factor = real("FactorScheduler", "factor", factor)
        if step < 1:
            raise ValueError(f"Schedule step must be greater or equal than 1 round: got "
                             f"step={step!r}")
        if factor > 1.0:
            raise ValueError(f"Factor must be no more than 1 to make lr reduce: got "
                             f"factor={factor!r}")
        self.step = step
        self.factor = factor
        self.stop_factor_lr = real("FactorScheduler", "stop_factor_lr", stop_factor_lr)
        self.count = 0

    def __call__(self, num_update: int) -> float:
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        # a loop, not an if: a run resumed at a later num_update catches up (as MXNet's)
        while num_update > self.count + self.step:
            self.count += self.step
            self.base_lr *= self.factor
            if self.base_lr < self.stop_factor_lr:
                self.base_lr = self.stop_factor_lr
                _log.info("Update[%d]: now learning rate arrived at %0.5e, will not "
                          "change in the future", num_update, self.base_lr)
            else:
                _log.info("Update[%d]: Change learning rate to %0.5e", num_update, self.base_lr)
        return self.base_lr


class MultiFactorScheduler(LRScheduler):
    """Multiply ``base_lr`` by ``factor`` as ``num_update`` passes each of ``step``.

    Args:
        step: the increasing list of updates (each >= 1) after which the rate decays.
        factor: the decay (<= 1).
        base_lr, warmup_steps, warmup_begin_lr, warmup_mode: as :class:`LRScheduler`.

    Examples:
        >>> s = MultiFactorScheduler(step=[2, 4], factor=0.1, base_lr=1.0)
        >>> [s(n) for n in range(1, 7)]
        [1.0, 1.0, 0.1, 0.1, 0.010000000000000002, 0.010000000000000002]
    """

    mxnet_class = "mxnet.lr_scheduler.MultiFactorScheduler"
    _STATE = {**LRScheduler._STATE, "step": lambda v: isinstance(v, list) and all(map(is_real, v)),
              "cur_step_ind": is_int, "factor": is_real, "count": is_real}

    def __init__(self, step: list[int], factor: float = 1, base_lr: float = 0.01,
                 warmup_steps: int = 0, warmup_begin_lr: float = 0,
                 warmup_mode: str = "linear") -> None:
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        if not isinstance(step, list):
            raise AssertionTypeError(f"MultiFactorScheduler: step must be a list of ints, got "
                                     f"{step!r} ({type(step).__name__})")
        if len(step) < 1:
            raise AssertionValueError("MultiFactorScheduler: step must hold at least one step, "
                                      "got []")
        step = [real("MultiFactorScheduler", f"step[{i}]", s) for i, s in enumerate(step)]
        for i, _step in enumerate(step):
            if i != 0 and step[i] <= step[i - 1]:
                raise ValueError(f"Schedule step must be an increasing integer list: got "
                                 f"step={step!r}")
            if _step < 1:
                raise ValueError(f"Schedule step must be greater or equal than 1 round: got "
                                 f"step={step!r}")
        factor = real("MultiFactorScheduler", "factor", factor)
        if factor > 1.0:
            raise ValueError(f"Factor must be no more than 1 to make lr reduce: got "
                             f"factor={factor!r}")
        self.step = step
        self.cur_step_ind = 0
        self.factor = factor
        self.count = 0

    def __call__(self, num_update: int) -> float:
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        while self.cur_step_ind <= len(self.step) - 1:
            if num_update > self.step[self.cur_step_ind]:
                self.count = self.step[self.cur_step_ind]
                self.cur_step_ind += 1
                self.base_lr *= self.factor
                _log.info("Update[%d]: Change learning rate to %0.5e", num_update, self.base_lr)
            else:
                return self.base_lr
        return self.base_lr


def _max_update(owner: str, max_update: Any) -> int:
    """MXNet asserts an int and then refuses values below 1."""
    max_update = integer(owner, "max_update", max_update, assertion=True)
    if max_update < 1:
        raise ValueError(f"maximum number of updates must be strictly positive: got "
                         f"max_update={max_update!r}")
    return max_update


class PolyScheduler(LRScheduler):
    """``final_lr + (base_lr - final_lr) * (1 - n / max_steps) ** pwr`` after warmup.

    ``n`` counts updates after warmup and ``max_steps = max_update - warmup_steps``; past
    ``max_update`` the rate stays where it was. ``base_lr_orig`` is fixed at construction (an
    optimizer's ``learning_rate`` overrides ``base_lr`` but not it: MXNet's quirk).

    Args:
        max_update: the update at which the decay reaches ``final_lr`` (an int >= 1).
        base_lr: the starting rate. pwr: the power. final_lr: the end rate.
        warmup_steps, warmup_begin_lr, warmup_mode: as :class:`LRScheduler`.

    Examples:
        >>> s = PolyScheduler(max_update=4, base_lr=1.0, pwr=2)
        >>> [s(n) for n in range(6)]
        [1.0, 0.5625, 0.25, 0.0625, 0.0, 0.0]
    """

    mxnet_class = "mxnet.lr_scheduler.PolyScheduler"
    _STATE = {**LRScheduler._STATE, "power": is_real, "base_lr_orig": is_real,
              "max_update": is_int, "final_lr": is_real, "max_steps": is_int}

    def __init__(self, max_update: int, base_lr: float = 0.01, pwr: float = 2,
                 final_lr: float = 0, warmup_steps: int = 0, warmup_begin_lr: float = 0,
                 warmup_mode: str = "linear") -> None:
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        max_update = _max_update("PolyScheduler", max_update)
        self.power = real("PolyScheduler", "pwr", pwr)
        self.base_lr_orig = self.base_lr
        self.max_update = max_update
        self.final_lr = real("PolyScheduler", "final_lr", final_lr)
        self.max_steps = self.max_update - self.warmup_steps

    def __call__(self, num_update: int) -> float:
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        if num_update <= self.max_update:
            self.base_lr = self.final_lr + (self.base_lr_orig - self.final_lr) * \
                pow(1 - float(num_update - self.warmup_steps) / float(self.max_steps), self.power)
        return self.base_lr


class CosineScheduler(LRScheduler):
    """``final_lr + (base_lr - final_lr) * (1 + cos(pi * n / max_steps)) / 2`` after warmup.

    As :class:`PolyScheduler`: ``n`` counts updates after warmup, ``base_lr_orig`` is fixed at
    construction, and past ``max_update`` the rate stays where it was.

    Args:
        max_update: the update at which the decay reaches ``final_lr`` (an int >= 1).
        base_lr: the starting rate. final_lr: the end rate.
        warmup_steps, warmup_begin_lr, warmup_mode: as :class:`LRScheduler`.

    Examples:
        >>> s = CosineScheduler(max_update=4, base_lr=1.0)
        >>> [round(s(n), 6) for n in range(6)]
        [1.0, 0.853553, 0.5, 0.146447, 0.0, 0.0]
    """

    mxnet_class = "mxnet.lr_scheduler.CosineScheduler"
    _STATE = {**LRScheduler._STATE, "base_lr_orig": is_real, "max_update": is_int,
              "final_lr": is_real, "max_steps": is_int}

    def __init__(self, max_update: int, base_lr: float = 0.01, final_lr: float = 0,
                 warmup_steps: int = 0, warmup_begin_lr: float = 0,
                 warmup_mode: str = "linear") -> None:
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        max_update = _max_update("CosineScheduler", max_update)
        self.base_lr_orig = self.base_lr
        self.max_update = max_update
        self.final_lr = real("CosineScheduler", "final_lr", final_lr)
        self.max_steps = self.max_update - self.warmup_steps

    def __call__(self, num_update: int) -> float:
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        if num_update <= self.max_update:
            self.base_lr = self.final_lr + (self.base_lr_orig - self.final_lr) * \
                (1 + cos(pi * (num_update - self.warmup_steps) / self.max_steps)) / 2
        return self.base_lr
