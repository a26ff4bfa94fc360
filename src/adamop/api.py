"""``adam_update`` and ``adam_update_multi``: validate everything, then run the chosen backend.

A call has two phases. :func:`prepare` checks types, dtypes, shapes, storage, indices, aliasing
and parameters and decides the kernel path (SPEC B §3); it writes nothing, so a bad input leaves
every array as it was. :func:`execute` then runs a batch of prepared updates on a backend: dense
updates that share a backend go to it in one call, so a whole model can be one launch.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import _arrays, checks, dispatch
from .params import AdamParams, Scalars
from .storage import RowSparseArray

__all__ = ["adam_update", "adam_update_multi", "update_batch", "prepare", "execute", "Prepared"]


@dataclass(slots=True)
class Prepared:
    """One validated update, ready to run: the kernel path, its arrays, and the write-backs."""

    path: str                      # 'dense' | 'lazy' | 'std' | 'fallback' (runs the dense kernel)
    device: str
    dtype: np.dtype
    scalars: Scalars
    arrays: tuple                  # kernel arguments before the scalars, in the caller's library
    result: Any                    # what the call returns
    setup: Sequence[Callable[[], None]] = ()    # writes before the kernel
    finish: Sequence[Callable[[], None]] = ()   # writes after the kernel
    numpy_args: tuple | None = None             # the kernel's arguments, where all are NumPy

    @property
    def kernel(self) -> str:
        return "dense" if self.path == "fallback" else self.path


# ---- prepare ---------------------------------------------------------------------------------
_FLOAT_TYPES = frozenset(_arrays.FLOAT_DTYPES)


_BASE, _DTYPE, _SHAPE, _WRITEABLE = (operator.attrgetter(a) for a in (
    "base", "dtype", "shape", "flags.writeable"))


def _owned_numpy_tasks(ws: Sequence[Any], gs: Sequence[Any], ms: Sequence[Any],
                       vs: Sequence[Any], outs: Sequence[Any],
                       params: AdamParams | Sequence[AdamParams]) -> list[tuple] | None:
    """The common case, checked at C speed: kernel tasks ``(w, g, m, v, out, scalars)``, or None
    to take the general path (which also gives every error).

    A whole model's update is validated on every step, so the usual call is recognised with
    ``map``s over all its arrays (about 1 us per tensor): dense NumPy arrays that each own their
    memory and appear once (``out`` may be its own weight), a native float dtype and one shape per
    tensor, writeable states and outputs. Such arrays cannot overlap, within a tensor or across.
    """
    written = [o for o, w in zip(outs, ws) if o is not None and o is not w]
    every = [*ws, *gs, *ms, *vs, *written]
    if (set(map(type, every)) != {np.ndarray}
            or any(map(operator.is_not, map(_BASE, every), repeat(None)))
            or len(set(map(id, every))) != len(every)):
        return None
    dtypes, shapes = list(map(_DTYPE, ws)), list(map(_SHAPE, ws))
    given_outs = [o for o in outs if o is not None]   # out=weight: the weight is written too
    if not set(dtypes) <= _FLOAT_TYPES or not all(map(_WRITEABLE, [*ms, *vs, *given_outs])):
        return None
    for seq in (gs, ms, vs):
        if list(map(_DTYPE, seq)) != dtypes or list(map(_SHAPE, seq)) != shapes:
            return None
    if written:
        mine = [w for o, w in zip(outs, ws) if o is not None and o is not w]
        if (list(map(_DTYPE, written)) != list(map(_DTYPE, mine))
                or list(map(_SHAPE, written)) != list(map(_SHAPE, mine))):
            return None
    if any(map(operator.is_, outs, repeat(None))):
        outs = [np.empty(w.shape, w.dtype) if o is None else o for o, w in zip(outs, ws)]
    if isinstance(params, AdamParams):   # one set for the whole model: one Scalars per dtype
        by_dtype = {dt: params.scalars(dt) for dt in set(dtypes)}
        scalars = list(map(by_dtype.__getitem__, dtypes))
    else:
        scalars = [p.scalars(dt) for p, dt in zip(params, dtypes)]
    return list(zip(ws, gs, ms, vs, outs, scalars))


def _prepare_owned_numpy(weight: Any, grad: Any, mean: Any, var: Any, params: AdamParams,
                         out: Any) -> Prepared | None:
    """:func:`_owned_numpy_tasks` for one update, as a plan (None: take the general path)."""
    tasks = _owned_numpy_tasks((weight,), (grad,), (mean,), (var,), (out,), params)
    if tasks is None:
        return None
    task = tasks[0]
    return Prepared(path="dense", device="cpu", dtype=weight.dtype, scalars=task[5],
                    arrays=task[:5], result=task[4], numpy_args=task)


def _prepare_owned_row_sparse(weight: Any, grad: Any, mean: Any, var: Any, params: AdamParams,
                              out: Any) -> Prepared | None:
    """The usual embedding-table step, checked in a few comparisons (None: the general path):
    dense NumPy weight, mean and var that own their memory, updated in place (``out=weight``),
    and a coalesced NumPy ``RowSparseArray`` grad whose data and indices own theirs too. Arrays
    that own their memory overlap only when they are the same object."""
    if out is not weight or not (type(weight) is type(mean) is type(var) is np.ndarray):
        return None
    data, indices = grad.data, grad.indices
    if (type(data) is not np.ndarray or not grad.is_coalesced()
            or not (weight.base is mean.base is var.base is data.base is indices.base is None)
            or len({id(weight), id(mean), id(var), id(data), id(indices)}) != 5):
        return None
    dtype, shape = weight.dtype, weight.shape
    if (dtype not in _FLOAT_TYPES or not (data.dtype == mean.dtype == var.dtype == dtype)
            or not (grad.shape == mean.shape == var.shape == shape)
            or not (weight.flags.writeable and mean.flags.writeable and var.flags.writeable)):
        return None
    path = "lazy" if params.lazy_update else "std"
    s = params.scalars(dtype)
    args = (weight, data, indices, mean, var, weight, s)
    return Prepared(path=path, device="cpu", dtype=dtype, scalars=s, arrays=args[:6],
                    result=weight, numpy_args=args)


def prepare(weight: Any, grad: Any, mean: Any, var: Any, params: AdamParams,
            out: Any = None, *, prefix: str = "") -> Prepared:
    """Validate one update and plan it, writing nothing. ``prefix`` qualifies error messages."""
    fast = (_prepare_owned_row_sparse if type(grad) is RowSparseArray else _prepare_owned_numpy)(
        weight, grad, mean, var, params, out)
    if fast is not None:
        return fast
    named = [(prefix + n, *checks.classify(prefix + n, x))
             for n, x in zip(checks.INPUTS, (weight, grad, mean, var))]
    out_st = None
    if out is not None:
        out_st, out = checks.classify(prefix + "out", out)
        named_all = named + [(prefix + "out", out_st, out)]
    else:
        named_all = named
    lib, dev, dtype, shape = checks.check_common(named_all)
    (_, w_st, w), (_, g_st, g), (_, m_st, m), (_, v_st, v) = named
    path = checks.storage_path((w_st, g_st, m_st, v_st), params.lazy_update)

    for name, st, x in named_all:
        if st == "row_sparse" and not x.is_coalesced():
            raise ValueError(f"{name} stores rows {list(x.duplicates)[:10]} more than once; "
                             f"duplicate row indices are ambiguous (in MXNet they race); sum "
                             f"them with {name.split('.')[-1]}.coalesce() first")
    if path != "fallback" and w_st == "row_sparse" and not w.stores_all_rows():
        raise ValueError(f"{prefix}weight is row_sparse with {w.nnz} of {shape[0]} rows stored; "
                         f"the row_sparse update needs a weight that stores every row (build it "
                         f"with RowSparseArray.from_dense(w, all_rows=True))")
    if out is not None and (out_st == "row_sparse") != (w_st == "row_sparse"):
        raise TypeError(f"{prefix}out has storage {out_st} but weight has {w_st}; the new weight "
                        f"is written in the weight's storage type")
    for name, st, x in named[2:]:
        buf = x.data if st == "row_sparse" else x
        if st == "default" or x.stores_all_rows():
            checks.check_writeable(name, buf)
    if out is not None and (out_st == "default" or out.stores_all_rows()):
        checks.check_writeable(prefix + "out", checks.buffer(out_st, out))

    out_is_weight = out is not None and (out is weight or (
        out_st == w_st == "default"
        and _arrays.same_view(_arrays.address_view(out), _arrays.address_view(weight))))
    setup: list[Callable[[], None]] = []
    finish: list[Callable[[], None]] = []

    def dense_buffer(st: str, x: Any, *, state: bool) -> Any:
        """A dense array the kernel can use. A row_sparse state that lacks rows gets a temporary
        that is stored back (every row) afterwards."""
        if st == "default":
            return x
        if x.stores_all_rows():
            return x.data
        dense = x.todense()
        if state:
            finish.append(lambda: x._set_rows(dense, _arrays.arange_like(shape[0], dense)))
        return dense

    buffers = [(prefix + name, checks.buffer(st, x)) for name, st, x in
               zip(checks.INPUTS, (w_st, g_st, m_st, v_st), (w, g, m, v))]
    checks.check_aliasing(buffers, None if out is None else checks.buffer(out_st, out),
                          prefix + "out", path, out_is_weight)

    w_arr = dense_buffer(w_st, w, state=False)
    m_arr = dense_buffer(m_st, m, state=True)
    v_arr = dense_buffer(v_st, v, state=True)

    # The output buffer, and what the call returns.
    if out is None:
        o_arr = _arrays.empty_like(w_arr)
        # The output takes the weight's storage, except on the fallback, whose new array MXNet
        # returns dense.
        result = (RowSparseArray(o_arr, _arrays.arange_like(shape[0], o_arr), shape)
                  if w_st == "row_sparse" and path != "fallback" else o_arr)
    else:
        result = out
        if out_is_weight:
            o_arr = w_arr
        elif out_st == "default" or out.stores_all_rows():
            o_arr = checks.buffer(out_st, out)
        else:
            o_arr = _arrays.empty_like(w_arr)
        if out_st == "row_sparse" and o_arr is not out.data:
            # a row_sparse out that lacks rows: write a full buffer, then store it in out
            finish.append(lambda: out._set_rows(o_arr, _arrays.arange_like(shape[0], o_arr)))
    if path == "lazy" and o_arr is not w_arr:
        setup.append(lambda: _copy_into(o_arr, w_arr))   # rows the grad lacks keep the weight
    if path == "fallback":
        # MXNet stores a fallback's results with a dense->row_sparse cast, which keeps only rows
        # holding a non-zero: an all-zero row (even of -0.0) is dropped and reads back as +0.0.
        for st, x in ((m_st, m), (v_st, v), (out_st, out)):
            if st == "row_sparse":
                finish.append(lambda x=x: _store_nonzero_rows(x))

    if lib == "torch":
        # Writes through a NumPy view (or a kernel) bypass autograd's version counter; bump it
        # as an in-place torch op would, so autograd notices a saved tensor that changed.
        finish.append(lambda: _bump_versions(m_arr, v_arr, o_arr))

    if path in ("lazy", "std"):
        arrays = (w_arr, g.data, g.indices, m_arr, v_arr, o_arr)
    else:
        g_arr = g.todense() if g_st == "row_sparse" else g
        arrays = (w_arr, g_arr, m_arr, v_arr, o_arr)
    return Prepared(path=path, device=dev, dtype=dtype, scalars=params.scalars(dtype),
                    arrays=arrays, result=result, setup=setup, finish=finish)


def _store_nonzero_rows(x: RowSparseArray) -> None:
    kept = RowSparseArray.from_dense(x.todense())
    x._set_rows(kept.data, kept.indices)


def _bump_versions(*tensors: Any) -> None:
    from torch.autograd.graph import increment_version
    for t in tensors:
        increment_version(t)


def _copy_into(dst: Any, src: Any) -> None:
    if isinstance(dst, np.ndarray):
        np.copyto(dst, src)
    else:
        dst.copy_(src)


# ---- execute ---------------------------------------------------------------------------------
def execute(updates: Sequence[Prepared], backend: str | None = None) -> list[Any]:
    """Run prepared updates; dense ones sharing a backend go to it in one batched call."""
    by_device: dict[str, list[Prepared]] = {}
    for u in updates:
        by_device.setdefault(u.device, []).append(u)
    chosen = {dev: dispatch.select(dev, backend) for dev in by_device}   # raises before writing
    checks.check_disjoint([_footprint(u) for u in updates])   # devices never share addresses
    for dev, group in by_device.items():
        spec, module = chosen[dev]
        lib = spec.array_library
        for u in group:
            for step in u.setup:
                step()
        dense = [_kernel_args(u, lib) for u in group if u.kernel == "dense"]
        if dense:
            module.adam_dense_multi(dense)
        for u in group:
            if u.kernel != "dense":
                kernel = module.adam_lazy if u.kernel == "lazy" else module.adam_std
                kernel(*_kernel_args(u, lib))
        for u in group:
            for step in u.finish:
                step()
    return [u.result for u in updates]


def _footprint(u: Prepared) -> tuple[tuple, tuple]:
    """(arrays the kernel reads, arrays it writes), as NumPy arrays over their addresses."""
    a = u.numpy_args or tuple(_arrays.address_view(x) for x in u.arrays)
    return (a[:2], a[2:5]) if u.kernel == "dense" else (a[:3], a[3:6])


def _kernel_args(u: Prepared, lib: str) -> tuple:
    """The kernel's arguments, as views in the library the backend computes on."""
    if lib == "numpy" and u.numpy_args is not None:
        return u.numpy_args
    return tuple(_arrays.as_library(a, lib) for a in u.arrays) + (u.scalars,)


# ---- public API ------------------------------------------------------------------------------
def adam_update(weight: Any, grad: Any, mean: Any, var: Any, *, lr: Any, beta1: Any = 0.9,
                beta2: Any = 0.999, epsilon: Any = 1e-8, wd: Any = 0.0, rescale_grad: Any = 1.0,
                clip_gradient: Any = -1.0, lazy_update: Any = True, out: Any = None,
                backend: str | None = None, **unknown: Any) -> Any:
    r"""One Adam step with MXNet 1.9.1's exact arithmetic; ``mean`` and ``var`` change in place.

    .. math::

        g = \mathrm{clip}(\mathrm{grad}\cdot rescale\_grad + wd\cdot w),\quad
        m \leftarrow \beta_1 m + (1-\beta_1) g,\quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
        w' = w - \frac{lr\, m}{\sqrt{v} + \epsilon}

    No bias correction (fold it into ``lr``, as ``mx.optimizer.Adam`` does). Hyperparameters are
    parsed like MXNet's (``str(value)`` to float32 by dmlc-core, then cast to the dtype).

    Args:
        weight, grad, mean, var: ``numpy.ndarray``, ``torch.Tensor`` or ``RowSparseArray`` of one
            dtype (float16/32/64) and shape; a torch sparse COO ``grad`` is accepted too.
        lr: learning rate (required). beta1, beta2, epsilon, wd, rescale_grad, clip_gradient,
            lazy_update: as in MXNet (clipping is on iff ``clip_gradient >= 0``).
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
    _refuse_unknown("adam_update", unknown)
    params = AdamParams.from_kwargs(dict(
        lr=lr, beta1=beta1, beta2=beta2, epsilon=epsilon, wd=wd, rescale_grad=rescale_grad,
        clip_gradient=clip_gradient, lazy_update=lazy_update))
    return execute([prepare(weight, grad, mean, var, params, out)], backend)[0]


def _refuse_unknown(function: str, unknown: Mapping[str, Any]) -> None:
    if unknown:
        names = ", ".join(sorted(unknown))
        raise TypeError(f"{function}: unknown keyword argument(s) {names}; expected lr, beta1, "
                        f"beta2, epsilon, wd, rescale_grad, clip_gradient, lazy_update, out or "
                        f"backend (MXNet's names; check the spelling)")


def _per_tensor(name: str, value: Any, n: int) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} has {len(value)} values for {n} tensors; give one value or "
                             f"one per tensor")
        return list(value)
    if _arrays.library(value) is not None:
        raise TypeError(f"{name} must be a number or a list of numbers, got an array")
    return [value] * n


def adam_update_multi(weights: Sequence[Any], grads: Sequence[Any], means: Sequence[Any],
                      vars: Sequence[Any], *, lr: Any, beta1: Any = 0.9, beta2: Any = 0.999,
                      epsilon: Any = 1e-8, wd: Any = 0.0, rescale_grad: Any = 1.0,
                      clip_gradient: Any = -1.0, lazy_update: Any = True,
                      out: Sequence[Any] | None = None, backend: str | None = None,
                      **unknown: Any) -> list[Any]:
    """:func:`adam_update` over many parameters at once, in as few backend calls as possible.

    Each hyperparameter is one value for all tensors or a list with one value per tensor. Every
    update is validated before any array is written. Returns the list of new weights.

    Examples:
        >>> import numpy as np, adamop
        >>> ws = [np.ones(2, np.float32), np.ones(3, np.float64)]
        >>> gs = [np.ones_like(w) for w in ws]
        >>> ms, vs = [np.zeros_like(w) for w in ws], [np.zeros_like(w) for w in ws]
        >>> _ = adamop.adam_update_multi(ws, gs, ms, vs, lr=[0.1, 0.2], out=ws)
        >>> ws[1]   # MXNet 1.9.1 gives the same for a float64 weight and lr=0.2
        array([0.36754044, 0.36754044, 0.36754044])
    """
    _refuse_unknown("adam_update_multi", unknown)
    lists = {"weights": weights, "grads": grads, "means": means, "vars": vars}
    if out is not None:
        lists["out"] = out
    for name, seq in lists.items():
        if not isinstance(seq, (list, tuple)):
            raise TypeError(f"{name} must be a list or tuple of arrays, got {type(seq).__name__}")
    n = len(weights)
    for name, seq in lists.items():
        if len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries but weights has {n}; give one entry "
                             f"per parameter")
    hyper = {"lr": lr, "beta1": beta1, "beta2": beta2, "epsilon": epsilon, "wd": wd,
             "rescale_grad": rescale_grad, "clip_gradient": clip_gradient,
             "lazy_update": lazy_update}
    per = {k: _per_tensor(k, v, n) for k, v in hyper.items()}
    params: AdamParams | list[AdamParams]
    if not any(isinstance(v, (list, tuple)) for v in hyper.values()):
        params = AdamParams.from_kwargs(hyper)   # one parse for the whole model
    else:
        parsed: dict[tuple, AdamParams] = {}   # parse each distinct set of values once
        for i in range(n):
            key = tuple(None if per[k][i] is None else str(per[k][i]) for k in hyper)
            if key not in parsed:
                parsed[key] = AdamParams.from_kwargs({k: per[k][i] for k in hyper},
                                                     op_name=f"tensor {i}")
        params = [parsed[tuple(None if per[k][i] is None else str(per[k][i]) for k in hyper)]
                  for i in range(n)]
    outs = out if out is not None else [None] * n
    return update_batch(list(zip(weights, grads, means, vars)), params, outs, None, backend)


def update_batch(inputs: Sequence[tuple], params: AdamParams | Sequence[AdamParams],
                 outs: Sequence[Any], prefixes: Sequence[str] | None,
                 backend: str | None = None) -> list[Any]:
    """Validate and run many updates as one batch; the engine of :func:`adam_update_multi` and
    of a symbolic ``Group``.

    Args:
        inputs: ``(weight, grad, mean, var)`` per update.
        params: one :class:`AdamParams` for all, or one per update.
        outs: the ``out`` of each update (None: a new array).
        prefixes: what error messages call each update (e.g. ``"fc1_adam."``); None: its
            position, ``"[3] "``.
        backend: as in :func:`adam_update`.

    Returns:
        The new weight of each update.
    """
    n = len(inputs)
    ws, gs, ms, vs = (list(column) for column in zip(*inputs)) if n else ([], [], [], [])
    tasks = _owned_numpy_tasks(ws, gs, ms, vs, outs, params)
    if tasks is not None:
        spec, module = dispatch.select("cpu", backend)
        if spec.array_library == "numpy":   # the usual case: one backend call, no plans
            module.adam_dense_multi(tasks)
            return [t[4] for t in tasks]
    each = [params] * n if isinstance(params, AdamParams) else params
    if prefixes is None:
        prefixes = [f"[{i}] " for i in range(n)]
    return execute([prepare(*x, p, o, prefix=pre)
                    for x, p, o, pre in zip(inputs, each, outs, prefixes)], backend)
