"""MXNet 1.9.1's optimizer layer, bit for bit: ``Adam``, ``create``, ``get_updater``/``Updater``.

``mx.optimizer`` as people train with it (through Gluon's ``Trainer`` or a ``Module``): update
counts per index, learning-rate schedulers (``adamop.lr_scheduler``), lr/wd multipliers, float16
weights with float32 master copies. Every hyperparameter is computed as MXNet's Python code
computes it, in Python double, and reaches ``adam_update`` as that double (its ``str()`` is what
the op parses, SPEC B §5.2); the arrays of a whole model are updated in one batched call.
"""
from __future__ import annotations

import math
from typing import Any

from .. import lr_scheduler  # noqa: F401  (adamop.lr_scheduler, the schedulers Adam takes)
from .adam import Adam
from .base import Optimizer
from .updater import Updater, get_updater

__all__ = ["Adam", "Optimizer", "Updater", "bias_corrected_lr", "create", "get_updater"]

_REGISTRY = {"adam": Adam}
# MXNet 1.9.1's other optimizers, named in the error for a name adamop does not implement
_MXNET_ONLY = ("adadelta", "adagrad", "adamax", "ccsgd", "dcasgd", "ftml", "ftrl",
               "groupadagrad", "lamb", "lars", "lbsgd", "nadam", "nag", "rmsprop", "sgd", "sgld",
               "signum", "test")


def create(name: str, **kwargs: Any) -> Optimizer:
    """An optimizer by name, as ``mx.optimizer.create`` (case-insensitive): ``'adam'``.

    Args:
        name: the optimizer's name.
        **kwargs: its constructor's arguments (see :class:`Adam`).

    Raises:
        ValueError: a name adamop does not implement (the message lists what exists).
        TypeError, ValueError: bad constructor arguments.

    Examples:
        >>> create("Adam", learning_rate=0.01).lr
        0.01
    """
    if not isinstance(name, str):
        raise TypeError(f"create: name must be a str such as 'adam', got {type(name).__name__}")
    if name.lower() not in _REGISTRY:
        other = (f"; MXNet 1.9.1's {name.lower()!r} is not implemented by adamop"
                 if name.lower() in _MXNET_ONLY else "")
        raise ValueError(f"Cannot find optimizer {name}: adamop implements "
                         f"{', '.join(map(repr, _REGISTRY))}{other}")
    return _REGISTRY[name.lower()](**kwargs)


def bias_corrected_lr(lr: float, beta1: float, beta2: float, t: int) -> float:
    """``lr * sqrt(1 - beta2**t) / (1 - beta1**t)`` in Python double, as MXNet 1.9.1 computes it.

    The expression is evaluated exactly as ``mx.optimizer.Adam.update`` does
    (``lr *= math.sqrt(coef2) / coef1``: the ratio first, then the product), so the result and its
    ``str()`` are identical to the value MXNet passes to ``adam_update``.

    Warning:
        PyTorch's ``torch.optim.Adam`` differs: it bias-corrects the second moment *inside* the
        square root and so also scales epsilon; MXNet (and therefore adamop) does not correct
        epsilon. Use this function only to reproduce MXNet's optimizer.

    Args:
        lr: the base learning rate (after any scheduler and ``lr_mult``).
        beta1, beta2: the optimizer's decay rates, as Python floats.
        t: the update count of this parameter, starting at 1.

    Examples:
        >>> bias_corrected_lr(0.001, 0.9, 0.999, 1)
        0.0003162277660168381
    """
    coef1 = 1. - beta1 ** t
    coef2 = 1. - beta2 ** t
    return lr * (math.sqrt(coef2) / coef1)
