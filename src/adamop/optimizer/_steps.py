"""The array work of one optimizer step over many parameters: the seam to the update kernels.

The optimizer decides every hyperparameter in Python (counts, schedule, multipliers, bias
correction) and hands whole lists to these two functions. Today they run on the public batched
API; a fused kernel can replace either body without touching the optimizer, as long as it keeps
the bits of MXNet's sequence written here.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..api import adam_update_multi
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
    grads32 = for_op([astype_float32(g) for g in grads])
    adam_update_multi(list(masters), grads32, list(means), list(vars), lr=lr, wd=wd,
                      out=list(masters), **hyper)
    cast_into(list(weights), list(masters))
