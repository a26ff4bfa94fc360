"""The array work of one optimizer step over many parameters: the seam to the update kernels.

The optimizer decides every hyperparameter in Python (counts, schedule, multipliers, bias
correction) and hands whole lists to these two functions, each one batched call: ``adam_update``
for the plain step, and for float16 weights with float32 master copies the fused
``mp_adam_update`` (one pass over memory, the bits of MXNet's three operations), or where an
array is row_sparse, MXNet's three operations themselves.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np

from .. import _arrays
from ..api import adam_update_multi, mp_adam_update_multi
from ._tensors import astype_float32, cast_into, for_op

__all__ = ["adam_steps", "mp_adam_steps"]


def adam_steps(weights: Sequence[Any], grads: Sequence[Any], means: Sequence[Any],
               vars: Sequence[Any], *, lr: float | Sequence[float], wd: float | Sequence[float],
               hyper: Mapping[str, Any]) -> None:
    """``adam_update(w, g, m, v, out=w, lr=lr_i, wd=wd_i, **hyper)`` for every parameter i,
    in place, as one batched call (the arrays of different parameters must not overlap).

    Args:
        weights, grads, means, vars: one entry per parameter (any storage the op takes).
        lr, wd: one value for all, or one per parameter (Python numbers, parsed as MXNet does).
        hyper: ``beta1, beta2, epsilon, rescale_grad, lazy_update`` and, only where the
            optimizer clips, ``clip_gradient``.
    """
    adam_update_multi(list(weights), for_op(list(grads)), list(means), list(vars), lr=lr, wd=wd,
                      out=list(weights), **hyper)


def mp_adam_steps(weights: Sequence[Any], grads: Sequence[Any], masters: Sequence[Any],
                  means: Sequence[Any], vars: Sequence[Any], *, lr: float | Sequence[float],
                  wd: float | Sequence[float], hyper: Mapping[str, Any]) -> None:
    """MXNet's multi-precision step for every parameter i, in place:

    ``g32 = grads[i].astype(float32)``; ``adam_update(masters[i], g32, means[i], vars[i],
    out=masters[i], lr=lr_i, wd=wd_i, **hyper)``; ``weights[i] = cast(masters[i], float16)``
    (round to nearest even). Arguments as :func:`adam_steps`; ``weights`` are float16,
    ``masters``, ``means`` and ``vars`` float32, ``grads`` of any float dtype.
    """
    if all(map(_plain, chain(weights, grads, masters, means, vars))):
        mp_adam_update_multi(list(weights), list(grads), list(means), list(vars), list(masters),
                             lr=lr, wd=wd, out=list(weights), **hyper)
        return
    grads32 = for_op([astype_float32(g) for g in grads])
    adam_update_multi(list(masters), grads32, list(means), list(vars), lr=lr, wd=wd,
                      out=list(masters), **hyper)
    cast_into(list(weights), list(masters))


def _plain(x: Any) -> bool:
    """A dense array (what the fused multi-precision kernel takes)."""
    return type(x) is np.ndarray or (_arrays.is_torch_tensor(x)
                                     and _arrays.torch_layout(x) == "strided")
