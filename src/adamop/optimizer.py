"""The learning rate ``mx.optimizer.Adam`` hands to ``adam_update`` at step ``t``.

The operator itself has no bias correction and no step counter (SPEC B §1.2); MXNet's Python
optimizer folds the correction into ``lr`` (SPEC B §5.2). Reproducing an optimizer run bit for bit
needs that ``lr`` in the same Python double, because its ``str()`` is what gets parsed.
"""
from __future__ import annotations

import math

__all__ = ["bias_corrected_lr"]


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
