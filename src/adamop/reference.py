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

No bias correction. MXNet's three kernels differ only in which rows they touch and in how ``v``
is rounded: that is decided here, once, by a :class:`PathRule` that every backend is handed and
transcribes (no backend decides it for itself).

Kernel contract (shared by every backend): arrays of one dtype, any strides; ``out`` may be the
same view as ``weight``, ``grad``, ``mean`` or ``var`` (each element is read before it is written,
and ``out`` is written last); ``grad_indices`` is ascending, unique int64, in range.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import _arrays
from .params import Scalars

__all__ = ["PathRule", "DENSE", "LAZY", "STD", "adam_dense", "adam_rows", "adam_dense_batch",
           "mp_adam_dense", "mp_adam_dense_batch"]


@dataclass(frozen=True)
class PathRule:
    """How one of MXNet's kernels computes (SPEC B §3).

    Attributes:
        name: ``'dense'``, ``'lazy'`` or ``'std'``.
        rows: ``'every'`` element of a dense grad; the grad's ``'stored'`` rows only (lazy); or
            ``'all'`` rows of the table with a row_sparse grad (std: a row the grad lacks uses
            ``g = w*wd`` alone, with no ``0*rg`` term).
        square_first: when ``v``'s increment is ``(1-b2)*(g*g)`` instead of ``((1-b2)*g)*g``:
            ``'never'``, ``'when_clipping'`` or ``'always'``.
    """

    name: str
    rows: str
    square_first: str

    def v_square_first(self, clip: bool) -> bool:
        return self.square_first == "always" or (self.square_first == "when_clipping" and clip)


DENSE = PathRule("dense", "every", "never")            # AdamUpdateKernel
LAZY = PathRule("lazy", "stored", "when_clipping")     # AdamDnsRspDnsKernel (CPU)
STD = PathRule("std", "all", "always")                 # AdamStdDnsRspDnsKernel


def _clip(g: np.ndarray, c: np.floating) -> np.ndarray:
    # (g > c) ? c : ((g < -c) ? -c : g): NaN passes through, +-inf become +-c.
    return np.where(g > c, c, np.where(g < -c, -c, g))


def _prologue(grad: np.ndarray, w: np.ndarray, s: Scalars) -> np.ndarray:
    """The gradient the moments see, before clipping: ``grad*rg + w*wd``."""
    return grad * s.rescale_grad + w * s.wd


def _step(w, g, m, v, s: Scalars, v_square_first: bool):
    """Clip, the moment updates and the new weight, in MXNet's rounding order."""
    one = s.dtype.type(1)
    if s.clip:
        g = _clip(g, s.clip_gradient)
    m = s.beta1 * m + (one - s.beta1) * g
    v = s.beta2 * v + ((one - s.beta2) * (g * g) if v_square_first else ((one - s.beta2) * g) * g)
    w = w - (s.lr * m) / (np.sqrt(v) + s.epsilon)
    return w, m, v


def adam_dense(weight, grad, mean, var, out, s: Scalars, rule: PathRule) -> None:
    """The dense kernel (``rule`` is :data:`DENSE`): every element."""
    with np.errstate(all="ignore"):
        w, m, v = _step(weight, _prologue(grad, weight, s), mean, var, s,
                        rule.v_square_first(s.clip))
    mean[...] = m
    var[...] = v
    out[...] = w


def adam_rows(weight, grad_data, grad_indices, mean, var, out, s: Scalars,
              rule: PathRule) -> None:
    """A row_sparse kernel: :data:`LAZY` (only the grad's rows change; ``out`` must already hold
    the weight elsewhere) or :data:`STD` (every row changes)."""
    square_first = rule.v_square_first(s.clip)
    with np.errstate(all="ignore"):
        if rule.rows == "stored":
            rows = grad_indices
            if rows.shape[0] == 0:
                return
            w0 = weight[rows]
            w, m, v = _step(w0, _prologue(grad_data, w0, s), mean[rows], var[rows], s,
                            square_first)
            mean[rows] = m
            var[rows] = v
            out[rows] = w
            return
        g = weight * s.wd
        if grad_indices.shape[0]:
            g[grad_indices] = _prologue(grad_data, weight[grad_indices], s)
        w, m, v = _step(weight, g, mean, var, s, square_first)
    mean[...] = m
    var[...] = v
    out[...] = w


def adam_dense_batch(batch: Any, scalars: Sequence[Scalars], rule: PathRule) -> None:
    """A plan's batch of contiguous dense updates (:class:`adamop.plan.DenseBatch`), one by one
    over 1-D views of their addresses; ``scalars[t]`` belongs to update ``t``."""
    for t, (row, size) in enumerate(zip(batch.addresses.tolist(), batch.sizes.tolist())):
        w, g, m, v, o = (batch.view(address, size) for address in row)
        adam_dense(w, g, m, v, o, scalars[t], rule)


def mp_adam_dense(weight, grad, mean, var, weight32, out, s: Scalars, rule: PathRule) -> None:
    """The multi-precision step as MXNet runs it (three operations): the grad to float32, the
    dense kernel on the float32 master copy, the master cast to float16 (nearest even) into
    ``out``. The float16 ``weight`` is not read."""
    g32 = grad.astype(np.float32)
    adam_dense(weight32, g32, mean, var, weight32, s, rule)
    out[...] = weight32.astype(np.float16)


def mp_adam_dense_batch(batch: Any, scalars: Sequence[Scalars], rule: PathRule) -> None:
    """A plan's batch of ``mp_adam_update`` (roles: weight, grad, mean, var, weight32, out)."""
    for t, (row, size) in enumerate(zip(batch.addresses.tolist(), batch.sizes.tolist())):
        arrays = (_arrays.host_array(a, dt, (size,)) for a, dt in zip(row, batch.dtypes))
        mp_adam_dense(*arrays, scalars[t], rule)
