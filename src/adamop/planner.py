"""Making plans, and re-running them while the arrays keep their layout.

:class:`Planner` turns a batch of updates into an :class:`adamop.plan.Plan`: the updates that
:mod:`adamop.bulk` accepts become address tables, every other one is validated by
:mod:`adamop.validate` (which refuses what must be refused), and no update of the batch may write
memory another one touches. A plan made only of address tables is kept: a later call whose arrays
read the same in bulk (address, layout, dtype, device) runs it again without validating anything
else, and its backends reuse the launch tables they built for it. Everything is checked before
anything is written.

``adam_update_multi`` uses one shared planner; a bound executor and the optimizers own theirs.
"""
from __future__ import annotations

import operator
import threading
from itertools import repeat
from typing import Any, Callable, Sequence

import numpy as np

from . import _arrays, bulk, plan, validate
from .ops import OpDef
from .params import OpParams

__all__ = ["Planner"]


class Planner:
    """Plans batches of updates of one operator, keeping the most recent ones that need no
    arrays, found by their fingerprint's digest (one dict lookup, however many are kept).

    Args:
        op: the operator (its inputs, storage rule and kernel rules).
        capacity: how many plans to keep: a training loop that updates a whole model per call
            alternates between very few; one that calls ``adam_update`` per parameter needs
            one per parameter.
    """

    def __init__(self, op: OpDef, capacity: int = 4):
        self.op, self.capacity = op, capacity
        # digest -> (fingerprint, plan), least recently used first
        self._kept: dict[Any, tuple[bulk.Fingerprint, plan.Plan]] = {}
        self._lock = threading.Lock()   # one planner may serve many threads

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()

    def run(self, columns: Sequence[Sequence[Any]], params: OpParams | Sequence[OpParams],
            backend: str | None = None, prefix: Callable[[int], str] | None = None,
            versioned: Sequence[str] | None = None) -> list[Any]:
        """Validate (or re-check) and run a batch of updates; returns the new weights.

        Args:
            columns: one list per role of the op (``adam_update``: weights, grads, means, vars,
                outs), one entry per update; an ``out`` may be None (a new array) or the weight
                itself (in place).
            params: one parsed parameter set for every update, or one per update.
            backend: a backend name, or None for the best available one.
            prefix: what error messages call update ``t`` (default ``"[t] "``).
            versioned: the written roles whose torch tensors get their autograd version bumped,
                as an in-place torch op does (default: all; an optimizer's own states, which
                no graph holds, need none).
        """
        columns = _with_outputs(columns)
        printed = bulk.fingerprint(columns)
        if printed is not None:
            made = self._kept_plan(printed)
            # a kept plan's tensors read alike; one that torch did not allocate may still be a new
            # read-only mapping at a freed address (then the bulk read below refuses it)
            if made is not None and not (printed.library == "torch"
                                         and bulk.readonly_writes(self.op, printed).any()):
                return plan.run(made, params, columns, backend, versioned)
        found = bulk.read(self.op, columns, printed) if printed is not None else None
        if found is not None and found.ok.all():
            made = self._plan_bulk(found)
            if made is not None:
                return plan.run(made, params, columns, backend, versioned)
        made = self._plan_general(columns, params, found, prefix or _position)
        return plan.run(made, params, columns, backend, versioned)

    # ---- the kept plans ----------------------------------------------------------------------
    def _kept_plan(self, printed: bulk.Fingerprint) -> plan.Plan | None:
        with self._lock:
            entry = self._kept.pop(printed.digest, None)
            if entry is None:
                return None
            self._kept[printed.digest] = entry   # now the most recently used
        return entry[1] if bulk.same(entry[0], printed) else None

    def _keep(self, printed: bulk.Fingerprint, made: plan.Plan) -> None:
        kept = bulk.Fingerprint(printed.library, printed.key, [], printed.in_place,
                                printed.digest)   # no arrays
        with self._lock:
            self._kept.pop(printed.digest, None)
            self._kept[printed.digest] = (kept, made)
            while len(self._kept) > self.capacity:
                del self._kept[next(iter(self._kept))]

    # ---- making plans ------------------------------------------------------------------------
    def _plan_bulk(self, found: bulk.Bulk) -> plan.Plan | None:
        """The plan of a batch that bulk accepted whole; None if its updates overlap each other
        (then the general path tells which, or finds it allowed)."""
        if _crossing(self.op, found):
            return None
        made = plan.Plan(self.op, len(found.ok),
                         self._batches(found, np.arange(len(found.ok))), [], found.library)
        self._keep(found.key, made)
        return made

    def _batches(self, found: bulk.Bulk, tasks: np.ndarray) -> list[plan.DenseBatch]:
        groups: dict[tuple, list[int]] = {}
        for t in tasks.tolist():
            groups.setdefault((found.devices[t], found.dtypes[t]), []).append(t)
        compute = self.op.roles.index(self.op.compute_role)
        return [plan.DenseBatch(device, dtypes[compute], np.array(ts, np.int64),
                                np.ascontiguousarray(found.addresses[ts]),
                                np.ascontiguousarray(found.sizes[ts]), self.op.paths["dense"],
                                dtypes)
                for (device, dtypes), ts in groups.items()]

    def _plan_general(self, columns: Sequence[Sequence[Any]],
                      params: OpParams | Sequence[OpParams], found: bulk.Bulk | None,
                      prefix: Callable[[int], str]) -> plan.Plan:
        """Validate what bulk did not accept (all of it, if ``found`` is None), one by one."""
        n = len(columns[0])
        fast = found.ok if found is not None else np.zeros(n, bool)
        updates = []
        for t in np.flatnonzero(~fast).tolist():
            p = params if isinstance(params, OpParams) else params[t]
            updates.append(validate.validate(self.op, t, [c[t] for c in columns[:-1]], p,
                                             columns[-1][t], prefix=prefix(t)))
        if n > 1:
            validate.check_disjoint(
                [(t, *_bulk_footprint(self.op, found, t)) for t in np.flatnonzero(fast).tolist()]
                + [(u.task, *validate.footprint(self.op, u)) for u in updates])
        # contiguous dense updates that only the general path could vouch for still batch
        batches = self._batches(found, np.flatnonzero(fast)) if fast.any() else []
        library = found.library if found is not None else _library(columns)
        return plan.Plan(self.op, n, batches, updates, library)


def _position(t: int) -> str:
    return f"[{t}] "


def _with_outputs(columns: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    """The columns with a new array for each ``None`` out of a plain dense weight (others are
    left to the general path, which makes them in the weight's storage)."""
    *inputs, outs = columns
    if any(map(operator.is_, outs, repeat(None))):
        outs = [_arrays.empty_like(w) if o is None and _arrays.library(w) is not None else o
                for o, w in zip(outs, inputs[0])]
    return [*inputs, outs]


def _library(columns: Sequence[Sequence[Any]]) -> str:
    first = columns[0][0] if columns[0] else None
    lib = getattr(first, "library", None) or _arrays.library(first)
    return lib or "numpy"


def _crossing(op: OpDef, found: bulk.Bulk) -> bool:
    """True if an update writes bytes another update touches (vectorised: sort every array's
    byte range once). Identical ranges of one update (out=weight) count once; reads shared by
    two updates (one grad for two weights) are allowed."""
    n = len(found.ok)
    if n < 2:
        return False
    lo = found.addresses
    hi = lo + found.nbytes
    task = np.repeat(np.arange(n), len(op.roles))
    written = np.tile([role in op.written for role in op.roles], n)
    lo, hi = lo.reshape(-1), hi.reshape(-1)
    keep = hi > lo
    lo, hi, task, written = lo[keep], hi[keep], task[keep], written[keep]
    # one entry per distinct range of an update, written if any of its roles is
    order = np.lexsort((hi, lo, task))
    lo, hi, task, written = lo[order], hi[order], task[order], written[order]
    first = np.ones(len(lo), bool)
    first[1:] = (task[1:] != task[:-1]) | (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    written = np.bitwise_or.reduceat(written, np.flatnonzero(first)) if len(lo) else written
    lo, hi, task = lo[first], hi[first], task[first]
    order = np.argsort(lo, kind="stable")
    lo, hi, task, written = lo[order], hi[order], task[order], written[order]
    reach = np.maximum.accumulate(hi)
    if not (lo[1:] < reach[:-1]).any():
        return False
    # some ranges meet: compare those pairs (rare: shared grads, or a real conflict)
    active: list[tuple[int, int, bool]] = []
    for a, b, t, w in zip(lo.tolist(), hi.tolist(), task.tolist(), written.tolist()):
        active = [x for x in active if x[0] > a]
        if any(t2 != t and (w or w2) for _, t2, w2 in active):
            return True
        active.append((b, t, w))
    return False


def _bulk_footprint(op: OpDef, found: bulk.Bulk, t: int) -> tuple[tuple, tuple]:
    """An update that bulk accepted, as address-only arrays for :func:`validate.check_disjoint`:
    (what it reads, what it writes)."""
    views = [(role in op.written, _arrays.span_view(int(a), int(b)))
             for role, a, b in zip(op.roles, found.addresses[t], found.nbytes[t])]
    return tuple(v for w, v in views if not w), tuple(v for w, v in views if w)
