r"""The NumPy reference: the executable definition of MXNet 1.9.1's ``adam_update`` (SPEC part B).

Every other backend must be bit-identical to these functions. Each line is one separately rounded
IEEE operation in the array dtype, in MXNet's order (no fused multiply-add; float16 rounds after
every operation, which NumPy's float16 ufuncs do). With scalars ``s`` cast to the dtype:

.. math::

    g &= \mathrm{grad}\cdot rg + w\cdot wd \qquad(\text{then clipped to } [-c, c]
         \text{ if } c \ge 0)\\
    m &\leftarrow \beta_1 m + (1-\beta_1) g\\
    v &\leftarrow \beta_2 v + ((1-\beta_2) g) g\\
    w' &= w - (lr\cdot m) / (\sqrt{v} + \epsilon)

No bias correction. The row_sparse kernels differ only in how ``v`` is rounded (see each one).

Kernel contract (shared by every CPU backend): arrays are NumPy arrays of one dtype, any strides;
``out`` may be the same view as ``weight``, ``grad``, ``mean`` or ``var`` (each element is read
before it is written, and ``out`` is written last); ``grad_indices`` is ascending, unique int64.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .params import Scalars

__all__ = ["adam_dense", "adam_lazy", "adam_std", "adam_dense_multi"]


def _clip(g: np.ndarray, c: np.floating) -> np.ndarray:
    # (g > c) ? c : ((g < -c) ? -c : g): NaN passes through, +-inf become +-c.
    return np.where(g > c, c, np.where(g < -c, -c, g))


def _step(w, g_raw_rescaled, m, v, s: Scalars, *, v_square_first: bool):
    """Clip, the moment updates and the new weight, in MXNet's rounding order."""
    g = _clip(g_raw_rescaled, s.clip_gradient) if s.clip else g_raw_rescaled
    m = s.beta1 * m + s.one_minus_beta1 * g
    v = s.beta2 * v + (s.one_minus_beta2 * (g * g) if v_square_first
                       else (s.one_minus_beta2 * g) * g)
    w = w - (s.lr * m) / (np.sqrt(v) + s.epsilon)
    return w, m, v


def adam_dense(weight, grad, mean, var, out, s: Scalars) -> None:
    """The dense kernel (``AdamUpdateKernel``): every element, ``v`` as ``((1-b2)*g)*g``."""
    with np.errstate(all="ignore"):
        g = grad * s.rescale_grad + weight * s.wd
        w, m, v = _step(weight, g, mean, var, s, v_square_first=False)
    mean[...] = m
    var[...] = v
    out[...] = w


def adam_lazy(weight, grad_data, grad_indices, mean, var, out, s: Scalars) -> None:
    """The lazy row_sparse kernel (``AdamDnsRspDnsKernel``, CPU): only the grad's rows change.

    With clipping, MXNet's CPU kernel squares the clipped gradient first: ``(1-b2)*(g*g)``;
    without, it uses the dense order ``((1-b2)*g)*g``. Rows not in ``grad_indices`` are not
    touched (``out`` must already hold the weight there).
    """
    if grad_indices.shape[0] == 0:
        return
    rows = grad_indices
    with np.errstate(all="ignore"):
        w0 = weight[rows]
        g = grad_data * s.rescale_grad + w0 * s.wd
        w, m, v = _step(w0, g, mean[rows], var[rows], s, v_square_first=s.clip)
    mean[rows] = m
    var[rows] = v
    out[rows] = w


def adam_std(weight, grad_data, grad_indices, mean, var, out, s: Scalars) -> None:
    """The standard row_sparse kernel (``AdamStdDnsRspDnsKernel``): every row changes.

    Rows in the grad use ``grad*rg + w*wd``; the others use ``w*wd`` alone (no ``0*rg`` term, so
    an infinite ``rg`` gives no NaN there). ``v`` is ``(1-b2)*(g*g)`` with or without clipping.
    """
    with np.errstate(all="ignore"):
        g = weight * s.wd
        if grad_indices.shape[0]:
            g[grad_indices] = grad_data * s.rescale_grad + weight[grad_indices] * s.wd
        w, m, v = _step(weight, g, mean, var, s, v_square_first=True)
    mean[...] = m
    var[...] = v
    out[...] = w


def adam_dense_multi(tasks: Sequence[tuple]) -> None:
    """Batched dense updates: ``tasks`` is a sequence of ``(weight, grad, mean, var, out, s)``."""
    for task in tasks:
        adam_dense(*task)
