"""MXNet's learning rate of each update: the scheduler at ``num_update``, the multiplier and the
bias correction, in Python double (SPEC_TRAINING C.1).

The one definition of that arithmetic, shared by ``adamop.optimizer.Adam`` (indices, MXNet's
multiplier tables) and ``adamop.torch.Adam`` (param groups). Updates that see the same
``num_update``, count and multiplier get the same value, so a whole model's step computes a
handful of doubles, not one per parameter.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["corrected_lrs", "lr_runs", "override_base_lr", "restore_scheduler", "save_scheduler"]

OVERRIDE = ("learning rate from ``lr_scheduler`` has been overwritten by ``learning_rate`` in "
            "optimizer.")


def corrected_lrs(counts: Sequence[int] | np.ndarray, num_update: int,
                  lr: float | Callable[[int], float], lr_mults: float | Sequence[float],
                  beta1: float, beta2: float) -> tuple[list[float], int]:
    """The lr MXNet's ``Adam.update`` passes to ``adam_update`` for each of a run of updates.

    Update k (in order) has count ``t = counts[k]`` (already incremented); the optimizer's
    ``num_update`` becomes ``max(num_update, t)``; the lr is ``lr(num_update)`` (a scheduler) or
    ``lr``, times ``lr_mults[k]``, times ``sqrt(1 - beta2**t) / (1 - beta1**t)``, each step a
    Python double operation in MXNet's order.

    A scheduler is called once for each run of updates that see one ``num_update`` (MXNet calls
    it once per update, with that same value; MXNet's schedulers return the same for a repeated
    value and change no state).

    Args:
        counts: each update's count after its increment (ints, or an int64 array).
        num_update: the optimizer's ``num_update`` before these updates.
        lr: the scheduler (called with ``num_update``) or the base learning rate.
        lr_mults: one multiplier for all updates or one per update.
        beta1, beta2: the decay rates of the bias correction.

    Returns:
        (one lr per update, the new ``num_update``).

    Raises:
        ValueError: a bias correction that is undefined (``beta1**t == 1`` or ``beta2**t > 1``).
    """
    runs, num_update = lr_runs(counts, num_update, lr, lr_mults, beta1, beta2)
    lrs: list[float] = []
    for value, n in runs:
        lrs += [value] * n
    return lrs, num_update


def lr_runs(counts: Sequence[int] | np.ndarray, num_update: int,
            lr: float | Callable[[int], float], lr_mults: float | Sequence[float],
            beta1: float, beta2: float) -> tuple[list[tuple[float, int]], int]:
    """:func:`corrected_lrs` as runs: ``[(lr, number of consecutive updates with it), ...]``."""
    n = len(counts)
    if n == 0:
        return [], num_update
    ts = np.asarray(counts, dtype=np.int64)
    seen = np.maximum.accumulate(np.maximum(ts, num_update))   # num_update at each update
    change = (seen[1:] != seen[:-1]) | (ts[1:] != ts[:-1])
    per_update = not isinstance(lr_mults, (int, float))
    if per_update:   # compared by their bits: -0.0 and 0.0 give lrs of different signs
        bits = np.asarray(lr_mults, dtype=np.float64).view(np.int64)
        change |= bits[1:] != bits[:-1]
    starts = [0, *(np.flatnonzero(change) + 1).tolist()]
    ends = starts[1:] + [n]
    scheduled = callable(lr)
    runs: list[tuple[float, int]] = []
    corrections: dict[int, float] = {}
    for start, end in zip(starts, ends):
        t = int(ts[start])
        rate = lr(int(seen[start])) if scheduled else lr
        rate *= float(lr_mults[start]) if per_update else lr_mults
        correction = corrections.get(t)
        if correction is None:
            correction = corrections[t] = _correction(t, beta1, beta2)
        runs.append((rate * correction, end - start))
    return runs, int(seen[-1])


def _correction(t: int, beta1: float, beta2: float) -> float:
    """``sqrt(1 - beta2**t) / (1 - beta1**t)``, as ``mx.optimizer.Adam.update`` computes it."""
    coef1 = 1. - beta1 ** t
    coef2 = 1. - beta2 ** t
    if coef1 == 0 or coef2 < 0:
        raise ValueError(f"Adam: the bias correction sqrt(1 - beta2**t) / (1 - beta1**t) is "
                         f"undefined at t={t} for beta1={beta1!r}, beta2={beta2!r}; use betas "
                         f"in [0, 1)")
    return math.sqrt(coef2) / coef1


def override_base_lr(scheduler: Any, learning_rate: float | None, warn: Callable[[], None]
                     ) -> None:
    """MXNet's constructor quirk: a ``learning_rate`` given with a scheduler whose ``base_lr``
    differs replaces it (``warn`` is called first, as MXNet prints its warning), leaving what the
    scheduler derived from its own ``base_lr`` (``warmup_final_lr``, ``base_lr_orig``) as it was."""
    if scheduler is not None and learning_rate is not None and scheduler.base_lr != learning_rate:
        warn()
        scheduler.base_lr = learning_rate


def save_scheduler(scheduler: Any) -> dict | None:
    """The attributes of a stateful scheduler, to undo a step that was refused."""
    state = getattr(scheduler, "__dict__", None)
    return None if state is None else dict(state)


def restore_scheduler(scheduler: Any, saved: dict | None) -> None:
    """Put back what :func:`save_scheduler` saved (the scheduler keeps its identity)."""
    if saved is not None:
        scheduler.__dict__.clear()
        scheduler.__dict__.update(saved)
