"""The update plan: validated updates as data, run by the backends.

A :class:`Plan` is what validation decided for a batch of updates: contiguous dense updates as
:class:`DenseBatch` tables of addresses (one backend call per device and dtype, whatever the
number of tensors), and every other update (strided, row_sparse, fallback) as an :class:`Update`
record naming its kernel path, its arrays and its write-backs. Running a plan does no validation
and makes no decision; :mod:`adamop.planner` makes plans and decides when one may run again.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from . import _arrays, dispatch
from .params import OpParams, Scalars
from .reference import PathRule
from .storage import RowSparseArray

__all__ = ["CopyInto", "StoreRows", "KeepNonzeroRows", "Update", "DenseBatch", "Plan", "run"]


# ---- write-backs ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CopyInto:
    """Before the kernel: ``dst[...] = src`` (a lazy update's separate ``out`` starts as the
    weight, since the kernel writes only the grad's rows)."""

    dst: Any
    src: Any

    def __call__(self) -> None:
        if isinstance(self.dst, np.ndarray):
            np.copyto(self.dst, self.src)
        else:
            self.dst.copy_(self.src)


@dataclass(frozen=True, slots=True)
class StoreRows:
    """After the kernel: ``target`` (a row_sparse state or out that lacked rows, updated through
    a dense buffer) stores every row of ``buffer``."""

    target: RowSparseArray
    buffer: Any

    def __call__(self) -> None:
        rows = _arrays.arange_like(self.target.shape[0], self.buffer)
        self.target._set_rows(self.buffer, rows)


@dataclass(frozen=True, slots=True)
class KeepNonzeroRows:
    """After a fallback update: MXNet stores its results with a dense->row_sparse cast, which
    keeps only the rows holding a non-zero (an all-zero row, even of -0.0, reads back as +0.0)."""

    target: RowSparseArray

    def __call__(self) -> None:
        kept = RowSparseArray.from_dense(self.target.todense())
        self.target._set_rows(kept._data, kept._indices)


# ---- records -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Update:
    """One validated update that runs through a backend's per-update kernel.

    Attributes:
        task: its position in the batch of updates (which scalars and result are its).
        path: 'dense', 'lazy', 'std' or 'fallback' (the dense kernel on dense buffers).
        rule: the kernel's rule (:class:`~adamop.reference.PathRule`).
        device: 'cpu', 'cuda:0', ...
        dtype: the arrays' numpy dtype.
        arrays: the kernel's arrays: ``(weight, grad, mean, var, out)`` for the dense kernel,
            ``(weight, grad_data, grad_indices, mean, var, out)`` for a row kernel.
        before, after: write-backs run before and after the kernel.
        result: what the call returns for this update.
        written: the torch tensors the update writes (their autograd versions are bumped).
    """

    task: int
    path: str
    rule: PathRule
    device: str
    dtype: np.dtype
    arrays: tuple
    before: tuple = ()
    after: tuple = ()
    result: Any = None
    written: tuple = ()


@dataclass(slots=True)
class DenseBatch:
    """Contiguous dense updates of one dtype on one device, as the kernels see them.

    Attributes:
        device: 'cpu', 'cuda:0', ...
        dtype: the dtype the arithmetic is done in (the op's ``compute_role``'s).
        tasks: int64 [T]: the position of each update in the batch of updates.
        addresses: int64 [T, R]: data addresses of the op's roles (for adam_update: weight,
            grad, mean, var and out); the caller keeps the arrays alive while the plan runs.
        sizes: int64 [T]: elements of each update.
        rule: the dense kernel's rule.
        dtypes: the dtype of each role.
        prepared: what a backend made of this batch once (its launch tables), by backend name.
        elements: the sum of ``sizes``.
    """

    device: str
    dtype: np.dtype
    tasks: np.ndarray
    addresses: np.ndarray
    sizes: np.ndarray
    rule: PathRule
    dtypes: tuple
    prepared: dict = field(default_factory=dict)
    elements: int = field(init=False)

    def __post_init__(self) -> None:
        self.elements = int(self.sizes.sum())

    def view(self, address: int, size: int) -> np.ndarray:
        """A 1-D NumPy array over ``size`` elements at host ``address`` (CPU batches only)."""
        return _arrays.host_array(address, self.dtype, (size,))


@dataclass(slots=True)
class Plan:
    """Everything one batch of updates of an op (:class:`adamop.ops.OpDef`) needs to run:
    batches of addresses and update records.

    ``holds_arrays`` is true when some record refers to the caller's arrays (an :class:`Update`):
    such a plan may only run with those very arrays, and is never shared between calls.
    """

    op: Any
    n: int
    batches: list[DenseBatch]
    updates: list[Update]
    library: str
    device_types: list[str] = field(default_factory=list)   # of the batches and updates

    def __post_init__(self) -> None:
        self.device_types = list(dict.fromkeys(_device_type(d) for d in
                                               [b.device for b in self.batches]
                                               + [u.device for u in self.updates]))

    @property
    def holds_arrays(self) -> bool:
        return bool(self.updates)


def _device_type(device: str) -> str:
    return device.split(":", 1)[0]


def _scalars_for(params: OpParams | Sequence[OpParams], dtype: np.dtype,
                 tasks: Sequence[int]) -> list[Scalars]:
    """The scalars of each task: made once per distinct parameter set, and matched to the tasks
    with C-level maps (no Python per task)."""
    if isinstance(params, OpParams):
        return [params.scalars(dtype)] * len(tasks)
    picked = operator.itemgetter(*tasks)(params) if len(tasks) > 1 else [params[tasks[0]]]
    distinct = dict(zip(map(id, picked), picked))
    made = {i: p.scalars(dtype) for i, p in distinct.items()}
    return list(map(made.__getitem__, map(id, picked)))


def run(plan: Plan, params: OpParams | Sequence[OpParams], columns: Sequence[Sequence[Any]],
        backend: str | None = None, versioned: Sequence[str] | None = None) -> list[Any]:
    """Run ``plan`` with hyperparameters ``params`` (one set, or one per update) on the arrays
    ``columns`` it was made for (one list per role of the op, ``out`` last); returns the new
    weights. ``versioned``: the written roles whose torch tensors get their autograd version
    bumped (default: every written role).

    Every backend is chosen before anything is written (a backend that cannot run raises first).
    """
    chosen = {dev: dispatch.select(dev, backend) for dev in plan.device_types}
    # every update's arrays as its backend takes them, before anything is written
    converted = [tuple(_arrays.as_library(a, chosen[_device_type(u.device)][0].array_library)
                       for a in u.arrays) for u in plan.updates]
    kernels = plan.op.kernels
    for batch in plan.batches:
        module = chosen[_device_type(batch.device)][1]
        getattr(module, kernels["batch"])(
            batch, _scalars_for(params, batch.dtype, batch.tasks.tolist()), batch.rule)
    for u, arrays in zip(plan.updates, converted):
        module = chosen[_device_type(u.device)][1]
        p = params if isinstance(params, OpParams) else params[u.task]
        s = p.scalars(u.dtype)
        for step in u.before:
            step()
        getattr(module, kernels["dense" if u.rule.rows == "every" else "rows"])(*arrays, s, u.rule)
        for step in u.after:
            step()
    results = list(columns[-1])
    for u in plan.updates:
        results[u.task] = u.result
    if plan.library == "torch":
        _bump_versions(plan, columns, plan.op.written if versioned is None else versioned)
    return results


def _bump_versions(plan: Plan, columns: Sequence[Sequence[Any]], versioned: Sequence[str]
                   ) -> None:
    """Writes through a kernel bypass autograd's version counters; bump them as an in-place torch
    op would, so autograd notices a saved tensor that changed."""
    from torch.autograd.graph import increment_version
    roles = [plan.op.roles.index(r) for r in versioned]
    if not plan.updates:
        written: list = [x for k in roles for x in columns[k]]
    else:
        batched = [t for b in plan.batches for t in b.tasks.tolist()]
        written = [columns[k][t] for t in batched for k in roles]
        which = [plan.op.written.index(r) for r in versioned]
        written += [u.written[i] for u in plan.updates if u.written for i in which]
    if written:
        increment_version(written)

