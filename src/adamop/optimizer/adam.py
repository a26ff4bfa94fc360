"""``Adam``: MXNet 1.9.1's ``mx.optimizer.Adam`` over adamop's ``adam_update``, bit for bit."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any

from . import _tensors
from ._checks import flag, is_bool, is_real, real
from ._rates import corrected_lrs
from ._steps import adam_steps, mp_adam_steps
from .base import Optimizer

__all__ = ["Adam"]


class Adam(Optimizer):
    r"""MXNet 1.9.1's Adam optimizer (``mx.optimizer.Adam``): same names, defaults and numbers.

    Each update of parameter ``index`` counts it (``t``), takes the learning rate from the
    scheduler at the optimizer's ``num_update`` (the largest count so far) or ``learning_rate``,
    applies the lr/wd multipliers, folds the bias correction into ``lr`` in Python double
    (``lr * (sqrt(1 - beta2**t) / (1 - beta1**t))``) and runs ``adam_update`` in place:

    .. math::

        g = \mathrm{clip}(grad\cdot rescale\_grad + wd\cdot w),\quad
        m \leftarrow \beta_1 m + (1-\beta_1) g,\quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
        w \leftarrow w - \frac{lr_t\, m}{\sqrt{v} + \epsilon}

    Args:
        learning_rate: the base rate (default 0.001). With a scheduler it overrides the
            scheduler's ``base_lr`` (MXNet's quirk: warns, and leaves what the scheduler derived
            from its own ``base_lr`` as it was); ``None`` keeps the scheduler's.
        beta1, beta2, epsilon: Adam's decay rates and epsilon (epsilon is not bias-corrected).
        lazy_update: row_sparse gradients update only their rows (and row_sparse weights get
            row_sparse states).
        rescale_grad: the gradient's scale (a Gluon Trainer sets ``1 / batch_size``).
        param_idx2name: index -> parameter name; names not ending in ``_weight``/``_gamma``
            get weight decay 0, and multipliers may be given by name.
        wd: weight decay. clip_gradient: clip the rescaled gradient to ``[-c, c]`` (``None`` or
            0: no clipping, as in MXNet's optimizer).
        lr_scheduler: an ``adamop.lr_scheduler`` scheduler.
        sym: an ``adamop.sym`` graph whose variables' ``__lr_mult__``/``__wd_mult__``
            attributes set multipliers by name.
        begin_num_update: the count each index starts from.
        multi_precision: keep a float32 master copy of float16 weights.
        param_dict: index -> Gluon Parameter (its ``lr_mult``/``wd_mult`` come first).

    Raises:
        TypeError, ValueError: a bad argument, before anything is changed.

    Examples:
        >>> import numpy as np
        >>> from adamop import optimizer
        >>> opt = optimizer.Adam(learning_rate=0.1)
        >>> w, g = np.ones(3, np.float32), np.full(3, 0.5, np.float32)
        >>> state = opt.create_state(0, w)
        >>> opt.update(0, w, g, state)      # t = 1: lr = 0.1 * (sqrt(0.001) / 0.1)
        >>> w                               # MXNet 1.9.1 gives these bits too
        array([0.8999994, 0.8999994, 0.8999994], dtype=float32)
    """

    mxnet_class = "mxnet.optimizer.optimizer.Adam"
    _STATE = {**Optimizer._STATE, "beta1": is_real, "beta2": is_real, "epsilon": is_real,
              "lazy_update": is_bool}

    def __init__(self, learning_rate: float | None = 0.001, beta1: float = 0.9,
                 beta2: float = 0.999, epsilon: float = 1e-8, lazy_update: bool = True, *,
                 rescale_grad: float = 1., param_idx2name: dict | None = None, wd: float = 0.,
                 clip_gradient: float | None = None, lr_scheduler: Any = None, sym: Any = None,
                 begin_num_update: int = 0, multi_precision: bool = False,
                 param_dict: Mapping | None = None) -> None:
        beta1, beta2 = real("Adam", "beta1", beta1), real("Adam", "beta2", beta2)
        epsilon = real("Adam", "epsilon", epsilon)
        lazy_update = flag("Adam", "lazy_update", lazy_update)
        super().__init__(learning_rate=learning_rate, rescale_grad=rescale_grad,
                         param_idx2name=param_idx2name, wd=wd, clip_gradient=clip_gradient,
                         lr_scheduler=lr_scheduler, sym=sym, begin_num_update=begin_num_update,
                         multi_precision=multi_precision, param_dict=param_dict)
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.lazy_update = lazy_update

    def create_state(self, index: Any, weight: Any) -> tuple[Any, Any]:
        """``(mean, var)``: zeros of the weight's shape, dtype, library and device; row_sparse
        (storing no rows yet) for a row_sparse weight if ``lazy_update``, else dense."""
        return (_tensors.zeros_state(weight, row_sparse=self.lazy_update),
                _tensors.zeros_state(weight, row_sparse=self.lazy_update))

    def _update_many(self, indices: Sequence[Any], weights: Sequence[Any], grads: Sequence[Any],
                     states: Sequence[Any], *, multi_precision: bool) -> None:
        """Each entry's update as MXNet's ``update_multi_precision`` (``update`` if not
        ``multi_precision``), in list order, with one batched call per kind of step.

        An index listed twice is updated twice, in order (later occurrences go to later
        batches). Nothing changes, counts included, if the inputs are refused: a single batch
        is checked whole by the op before it writes, and where there are several, what could
        refuse a later one (its hyperparameters, its grads) is checked before the first."""
        n = len(indices)
        master = (list(map(_tensors.is_float16, weights)) if multi_precision else [False] * n)
        w32s, means, vars_ = _split_states(indices, states, master)
        saved = self._save_progress()
        written = False
        try:
            lrs, wds = self._lrs_wds(indices)
            batches = [(use_master, at) for wave in _waves(indices) for use_master in (False, True)
                       if (at := [p for p in wave if master[p] == use_master])]
            if len(batches) > 1:   # later batches must not be refused after earlier ones wrote
                _check_finite(indices, lrs, wds)
                for index, grad, weight in zip(indices, grads, weights):
                    _tensors.check_grad(index, grad, weight)
            hyper = {"beta1": self.beta1, "beta2": self.beta2, "epsilon": self.epsilon,
                     "rescale_grad": self.rescale_grad, "lazy_update": self.lazy_update}
            if self.clip_gradient:   # None and 0 mean no clipping here (the op clips at >= 0)
                hyper["clip_gradient"] = self.clip_gradient
            for use_master, at in batches:
                pick = _picker(at, n)
                lr, wd = _one_or_each(pick(lrs)), _one_or_each(pick(wds))
                if use_master:
                    mp_adam_steps(pick(weights), pick(grads), pick(w32s), pick(means),
                                  pick(vars_), lr=lr, wd=wd, hyper=hyper)
                else:
                    adam_steps(pick(weights), pick(grads), pick(means), pick(vars_), lr=lr,
                               wd=wd, hyper=hyper)
                written = True
        except BaseException:
            if not written:
                self._restore_progress(saved)
            raise

    def _lrs_wds(self, indices: Sequence[Any]) -> tuple[list, list]:
        """Count each update and give its (lr, wd), exactly as MXNet's ``Adam.update`` does one
        index at a time: ``_update_count``, ``_get_lr`` (the scheduler at ``num_update``),
        ``_get_wd``, then the bias correction (:func:`._rates.corrected_lrs`)."""
        counts, begin = self._index_update_count, self.begin_num_update
        ts = []
        for index in indices:
            t = counts[index] = counts.get(index, begin) + 1
            ts.append(t)
        lr_mults, wd_mults = self._multipliers(indices)
        sched = self.lr_scheduler
        lrs, self.num_update = corrected_lrs(ts, self.num_update,
                                             self.lr if sched is None else sched, lr_mults,
                                             self.beta1, self.beta2)
        wd = self.wd
        wds = [wd] * len(ts) if isinstance(wd_mults, float) else [wd * m for m in wd_mults]
        return lrs, wds


def _split_states(indices: Sequence[Any], states: Sequence[Any], master: list[bool]
                  ) -> tuple[list, list, list]:
    """The master copies (None where there is none), means and vars of the states."""
    first, second = itemgetter(0), itemgetter(1)
    try:   # the usual cases, at C speed: all (mean, var), or all (weight32, (mean, var))
        if set(map(len, states)) == {2}:
            if not any(master):
                return [None] * len(states), list(map(first, states)), list(map(second, states))
            inner = list(map(second, states))
            if all(master) and set(map(len, inner)) == {2}:
                return list(map(first, states)), list(map(first, inner)), list(map(second, inner))
    except TypeError:
        pass
    w32s, means, vars_ = [], [], []
    for index, state, m in zip(indices, states, master):
        w32, mean, var = _unpack(index, state, m)
        w32s.append(w32)
        means.append(mean)
        vars_.append(var)
    return w32s, means, vars_


def _picker(positions: list[int], n: int) -> Any:
    """A function taking the entries at ``positions`` of a list of ``n`` (the list itself when
    that is all of them, in order)."""
    if len(positions) == n:   # positions are increasing, so this is range(n)
        return list
    return lambda values: [values[p] for p in positions]


def _unpack(index: Any, state: Any, master: bool) -> tuple[Any, Any, Any]:
    """``(weight32 or None, mean, var)`` from a state, or a TypeError saying what it should be."""
    try:
        if master:
            weight32, (mean, var) = state
            return weight32, mean, var
        mean, var = state
        return None, mean, var
    except (TypeError, ValueError):
        want = ("(weight32, (mean, var)) for a float16 weight with multi_precision=True"
                if master else "(mean, var)")
        raise TypeError(f"Adam: the state of index {index!r} is {type(state).__name__} "
                        f"{_short(state)}; expected {want} (states come from "
                        f"create_state_multi_precision with the same multi_precision)") from None


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 80 else text[:77] + "..."


def _waves(indices: Sequence[Any]) -> list[list[int]]:
    """Positions grouped so no batch holds an index twice: the k-th occurrence of each index
    goes to batch k (the arrays of different indices are disjoint, so only the order of each
    index's own updates matters)."""
    n = len(indices)
    if len(set(indices)) == n:
        return [list(range(n))]
    seen: dict[Any, int] = {}
    waves: list[list[int]] = []
    for position, index in enumerate(indices):
        k = seen.get(index, 0)
        seen[index] = k + 1
        if k == len(waves):
            waves.append([])
        waves[k].append(position)
    return waves


def _check_finite(indices: Sequence[Any], lrs: list, wds: list) -> None:
    for index, lr, wd in zip(indices, lrs, wds):
        if not (math.isfinite(lr) and math.isfinite(wd)):
            raise ValueError(f"Adam: index {index!r} would be updated with lr={lr!r}, wd={wd!r}; "
                             f"the update needs finite values")


def _one_or_each(values: list) -> Any:
    """One value if all are the same number (0.0 and -0.0 differ: the sign reaches the op),
    else the list, one per tensor."""
    first = values[0]
    if values.count(first) != len(values):
        return values
    if first == 0 and len(set(map(math.copysign, repeat(1.0, len(values)), values))) != 1:
        return values
    return first
