r"""The imperative front end: ``adam_update`` and ``adam_update_multi``.

Both are made from the operator definition (:mod:`adamop.ops.adam`): their keyword parameters,
defaults and signatures are the op's, and a call is a batch of updates for a
:class:`~adamop.planner.Planner`, which validates everything before anything is written and runs
the backends. ``adam_update_multi`` keeps its plans in one shared planner, so a training loop that
passes the same arrays every step is re-checked in bulk and not validated again.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

from . import _arrays
from .ops import OpDef
from .ops.adam import ADAM_UPDATE
from .ops.mp_adam import MP_ADAM_UPDATE
from .params import OpParams
from .planner import Planner

__all__ = ["adam_update", "adam_update_multi", "mp_adam_update", "mp_adam_update_multi",
           "make_functions"]

_EXTRA = ("out", "backend")


def _refuse_unknown(function: str, op: OpDef, unknown: Sequence[str]) -> None:
    if unknown:
        raise TypeError(f"{function}: unknown keyword argument(s) {', '.join(sorted(unknown))}; "
                        f"expected {', '.join(op.param_names)}, out or backend (MXNet's names; "
                        f"check the spelling)")


def _require(function: str, op: OpDef, params: dict[str, Any]) -> None:
    """A required parameter left out is a TypeError, as for any Python keyword argument."""
    missing = [p.name for p in op.params.spec if p.default is None and p.name not in params]
    if missing:
        raise TypeError(f"{function}() missing required keyword argument(s): "
                        f"{', '.join(repr(m) for m in missing)} (e.g. lr=0.001)")


def _check_backend(backend: Any) -> None:
    if backend is not None and not isinstance(backend, str):
        raise TypeError(f"backend must be a backend's name (a str such as 'numba') or None, got "
                        f"{type(backend).__name__} {backend!r}; `adamop info` lists the names")


def _per_tensor(name: str, value: Any, n: int) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} has {len(value)} values for {n} tensors; give one value or "
                             f"one per tensor")
        return list(value)
    if _arrays.library(value) is not None:
        raise TypeError(f"{name} must be a number or a list of numbers, got an array")
    return [value] * n


def _parse_multi(op: OpDef, hyper: dict[str, Any], n: int) -> OpParams | list[OpParams]:
    """One parsed set for the whole batch, or one per update where a value is a list.

    Each distinct set of values is parsed once; the updates are matched to them with C-level
    maps (a step of 2,000 tensors with per-tensor learning rates does no Python per tensor).
    Values are told apart by their ``repr``, as MXNet tells them apart by their ``str``:
    ``True`` and ``1``, ``0.0`` and ``-0.0`` are different parameters."""
    per = {k: _per_tensor(k, v, n) for k, v in hyper.items()}
    varying = [per[k] for k, v in hyper.items() if isinstance(v, (list, tuple))]
    if not varying:
        return op.params.from_kwargs(hyper)
    keys = list(zip(*(map(repr, values) for values in varying)))
    first = dict(zip(reversed(keys), range(n - 1, -1, -1)))   # each key's first update
    parsed = {key: op.params.from_kwargs({k: per[k][i] for k in hyper}, op_name=f"tensor {i}")
              for key, i in first.items()}
    return list(map(parsed.__getitem__, keys))


def _signature(op: OpDef, inputs: Sequence[str]) -> inspect.Signature:
    P = inspect.Parameter
    params = [P(name, P.POSITIONAL_OR_KEYWORD) for name in inputs]
    for p in op.params.spec:
        # the literal, as MXNet documents it (a default not given is MXNet's compiled constant)
        default = (P.empty if p.default is None else float(p.default) if p.kind is float
                   else p.default_value)
        params.append(P(p.name, P.KEYWORD_ONLY, default=default))
    params += [P("out", P.KEYWORD_ONLY, default=None), P("backend", P.KEYWORD_ONLY, default=None)]
    return inspect.Signature(params)


# Plans kept for single updates: a loop calling ``adam_update`` once per parameter (as MXNet's
# updater did) finds each parameter's plan again; ~2 KB a plan.
_ONE_UPDATE_PLANS = 1024


def make_functions(op: OpDef, planner: Planner) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The imperative functions of ``op``: one update, and a batch of updates (``<name>_multi``)."""
    names = set(op.param_names)

    def update(*arrays: Any, out: Any = None, backend: str | None = None, **params: Any) -> Any:
        _refuse_unknown(op.name, op, [k for k in params if k not in names])
        if len(arrays) != len(op.inputs):
            raise TypeError(f"{op.name} takes the arrays {', '.join(op.inputs)} as positional "
                            f"arguments, got {len(arrays)}")
        _require(op.name, op, params)
        _check_backend(backend)
        parsed = op.params.from_kwargs(params)
        return planner_one.run([[a] for a in arrays] + [[out]], parsed, backend,
                               prefix=lambda t: "")[0]

    def update_multi(*lists: Any, out: Sequence[Any] | None = None, backend: str | None = None,
                     **params: Any) -> list[Any]:
        _refuse_unknown(f"{op.name}_multi", op, [k for k in params if k not in names])
        if len(lists) != len(op.inputs):
            raise TypeError(f"{op.name}_multi takes one list per input "
                            f"({', '.join(op.inputs)}), got {len(lists)} positional arguments")
        _require(f"{op.name}_multi", op, params)
        _check_backend(backend)
        given = dict(zip([f"{name}s" for name in op.inputs], lists))
        if out is not None:
            given["out"] = out
        for name, seq in given.items():
            if not isinstance(seq, (list, tuple)):
                raise TypeError(f"{name} must be a list or tuple of arrays, got "
                                f"{type(seq).__name__}")
        n = len(lists[0])
        for name, seq in given.items():
            if len(seq) != n:
                raise ValueError(f"{name} has {len(seq)} entries but {op.inputs[0]}s has {n}; "
                                 f"give one entry per parameter")
        parsed = _parse_multi(op, params, n)
        outs = list(out) if out is not None else [None] * n
        return planner.run([list(x) for x in lists] + [outs], parsed, backend)

    planner_one = Planner(op, capacity=_ONE_UPDATE_PLANS)
    update.__signature__ = _signature(op, op.inputs)
    update_multi.__signature__ = _signature(op, [f"{name}s" for name in op.inputs])
    update.__name__, update_multi.__name__ = op.name, f"{op.name}_multi"
    return update, update_multi


adam_update, adam_update_multi = make_functions(ADAM_UPDATE, Planner(ADAM_UPDATE))
adam_update.__module__ = adam_update_multi.__module__ = __name__
adam_update.__doc__ = r"""\
    One Adam step with MXNet 1.9.1's exact arithmetic; mean and var change in place.

    .. math::

        g = \mathrm{clip}(\mathrm{grad}\cdot rescale\_grad + wd\cdot w),\quad
        m \leftarrow \beta_1 m + (1-\beta_1) g,\quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
        w' = w - \frac{lr\, m}{\sqrt{v} + \epsilon}

    No bias correction (fold it into ``lr``, as ``mx.optimizer.Adam`` does:
    :func:`adamop.optimizer.bias_corrected_lr`). Hyperparameters are MXNet's (the signature lists
    them with their defaults; :data:`adamop.ops.adam.PARAMS` says what each does) and are parsed
    like MXNet's: ``str(value)`` to float32 by dmlc-core, then cast to the dtype.

    Args:
        weight, grad, mean, var: ``numpy.ndarray``, ``torch.Tensor`` or ``RowSparseArray`` of one
            dtype (float16/32/64) and shape; a torch sparse COO ``grad`` is accepted too.
        out: where to write the new weight (``out=weight`` updates in place).
        backend: force a backend by name (``adamop info`` lists them); default: the best one.

    Returns:
        ``out`` if given, else a new array of the weight's kind holding the new weight.

    Raises:
        TypeError, ValueError: on any bad input, before anything is written.

    Examples:
        >>> import numpy as np, adamop
        >>> w, g = np.ones(3, np.float32), np.full(3, 0.5, np.float32)
        >>> m, v = np.zeros(3, np.float32), np.zeros(3, np.float32)
        >>> adamop.adam_update(w, g, m, v, lr=0.1, out=w)
        array([0.6837703, 0.6837703, 0.6837703], dtype=float32)
        >>> m   # (1 - 0.9f) * 0.5 in float32, as MXNet 1.9.1 prints it
        array([0.05000001, 0.05000001, 0.05000001], dtype=float32)
    """
adam_update_multi.__doc__ = """\
    :func:`adam_update` over many parameters, in as few backend calls as possible.

    Each hyperparameter is one value for all tensors or a list with one value per tensor. Every
    update is validated before any array is written. Returns the list of new weights. Repeated
    calls with arrays that keep their addresses and layouts are re-checked in bulk and reuse the
    plan (and the backend's launch tables) made by the first.

    Examples:
        >>> import numpy as np, adamop
        >>> ws = [np.ones(2, np.float32), np.ones(3, np.float64)]
        >>> gs = [np.ones_like(w) for w in ws]
        >>> ms, vs = [np.zeros_like(w) for w in ws], [np.zeros_like(w) for w in ws]
        >>> _ = adamop.adam_update_multi(ws, gs, ms, vs, lr=[0.1, 0.2], out=ws)
        >>> ws[1]   # MXNet 1.9.1 gives the same for a float64 weight and lr=0.2
        array([0.36754044, 0.36754044, 0.36754044])
    """


mp_adam_update, mp_adam_update_multi = make_functions(MP_ADAM_UPDATE, Planner(MP_ADAM_UPDATE))
mp_adam_update.__module__ = mp_adam_update_multi.__module__ = __name__
mp_adam_update.__doc__ = """\
    MXNet's multi-precision Adam step on a float16 weight, fused: bit for bit the three
    operations of ``mx.optimizer.Adam(multi_precision=True)``.

    ``weight32`` (the float32 master copy), ``mean`` and ``var`` (float32) are updated in place
    with the grad (float16 or float32) widened to float32, exactly as :func:`adam_update` on the
    master copy; the new weight is the master copy rounded to float16 (nearest even), returned
    (in ``out`` when given: ``out=weight`` is the usual call). One pass over memory instead of
    three. Dense arrays only.

    Examples:
        >>> import numpy as np, adamop
        >>> w32 = np.array([1.0, -2.0], np.float32)
        >>> w, g = w32.astype(np.float16), np.array([0.5, 0.25], np.float16)
        >>> m, v = np.zeros(2, np.float32), np.zeros(2, np.float32)
        >>> adamop.mp_adam_update(w, g, m, v, w32, lr=0.1, out=w)
        array([ 0.6836, -2.316 ], dtype=float16)
        >>> w32   # the master copy, as adam_update would leave it
        array([ 0.6837703, -2.3162293], dtype=float32)
    """
mp_adam_update_multi.__doc__ = """\
    :func:`mp_adam_update` over many parameters, in as few backend calls as possible (each
    hyperparameter one value for all or a list with one per tensor)."""
