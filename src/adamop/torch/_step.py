"""One ``step()`` of ``adamop.torch.Adam``: a whole model's updates, gathered in bulk and run as
one batched call per kind of update.

Gathering reads every group with C-level maps (grads, states, counts, dtypes, layouts), computes
MXNet's learning rates per run of equal updates (:func:`adamop.optimizer._rates.lr_runs`) and
sorts the updates into kinds: plain (the op on the parameter itself), float16 or bfloat16 through
a float32 master copy, each with dense or sparse COO gradients. Only a group that mixes kinds,
holds DTensors or meets a parameter for the first time is walked parameter by parameter.
Running hands each kind to the update plan; counts, new states and ``num_update`` are committed
only after every kind has run.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import attrgetter, is_, is_not, itemgetter, setitem
from typing import Any

import numpy as np
import torch

from ..optimizer._rates import lr_runs
from ..optimizer._steps import mp_adam_steps
from ..optimizer.adam import _one_or_each
from ..planner import Planner
from ._hyper import OWNER, Hyper, check_group, hyper_dict, op_params
from ._state import MASTER, check_dtype, new_state, refresh

__all__ = ["Column", "Work", "commit", "gather", "run"]

_GRAD, _DTYPE, _LAYOUT, _SHAPE, _DEVICE = (attrgetter(a) for a in ("grad", "dtype", "layout",
                                                                    "shape", "device"))
_STEP, _MEAN, _VAR, _MASTER = (itemgetter(k) for k in ("step", "exp_avg", "exp_avg_sq", MASTER))
_NONE = type(None)
_PLAIN_TYPES = {torch.Tensor, torch.nn.Parameter}
_DTYPES = {torch.float16, torch.float32, torch.float64}
_MP_DTYPES = _DTYPES | {torch.bfloat16}


@dataclass
class Column:
    """Updates of one kind, in update order: the tensors the kernels see (a DTensor's local
    shards), the parameters (for messages) and runs of equal hyperparameters."""

    params: list = field(default_factory=list)
    ws: list = field(default_factory=list)
    gs: list = field(default_factory=list)
    ms: list = field(default_factory=list)
    vs: list = field(default_factory=list)
    masters: list = field(default_factory=list)
    runs: list = field(default_factory=list)   # (Hyper, lr, wd, number of updates)


@dataclass
class Work:
    """A gathered step: columns by kind, what to commit after they ran, the new num_update."""

    columns: dict = field(default_factory=dict)
    counts: list = field(default_factory=list)   # (states, new counts)
    new: dict = field(default_factory=dict)      # param -> state made or refreshed this step
    num_update: int = 0


def _dtensor_class() -> Any:
    module = sys.modules.get("torch.distributed.tensor")
    return getattr(module, "DTensor", None)


def _kind(dtype: torch.dtype, layout: torch.layout, multi_precision: bool) -> str:
    name = str(dtype)[6:] if multi_precision and dtype in (torch.float16, torch.bfloat16) \
        else "plain"
    if layout == torch.strided:
        return name
    if layout == torch.sparse_coo:
        return name + " sparse"
    raise TypeError(f"{OWNER}: a gradient has layout {layout}; expected a dense or a sparse COO "
                    f"gradient (nn.Embedding(sparse=True) makes COO ones)")


def _local(x: Any) -> Any:
    return x.to_local() if hasattr(x, "to_local") else x


def gather(opt: Any) -> Work:
    """Everything one step of ``opt`` does, decided; nothing is written except refreshed master
    copies of states that no update has used yet (taken from the weight, as MXNet does)."""
    work = Work(num_update=opt.num_update)
    sched, mp = opt.lr_scheduler, opt.multi_precision
    for gi, group in enumerate(opt.param_groups):
        params = group["params"]
        grads = list(map(_GRAD, params))
        positions = None
        if _NONE in set(map(type, grads)):
            keep = list(map(is_not, grads, repeat(None)))
            positions = list(compress(range(len(params)), keep))
            params, grads = list(compress(params, keep)), list(compress(grads, keep))
        if not params:
            continue
        h = check_group(group, f"param_groups[{gi}] ")
        states = list(map(opt.state.get, params))
        if not all(states) or (opt._unused and any(map(
                is_, map(opt._unused.get, map(id, params)), states))):
            states = _states(opt, gi, params, positions, states, work.new)
        counts = _counts(states)
        runs, work.num_update = lr_runs(counts, work.num_update,
                                        h.lr if sched is None else sched, h.lr_mult,
                                        h.beta1, h.beta2)
        work.counts.append((states, counts))
        wd = h.weight_decay * h.wd_mult
        dtypes, layouts = set(map(_DTYPE, params)), set(map(_LAYOUT, grads))
        if not dtypes <= (_MP_DTYPES if mp else _DTYPES):
            i = next(i for i, p in enumerate(params)
                     if p.dtype not in (_MP_DTYPES if mp else _DTYPES))
            check_dtype(params[i], mp, _where(gi, positions, i))   # raises
        plain = set(map(type, params)) <= _PLAIN_TYPES
        if len(dtypes) == 1 and len(layouts) == 1 and plain:
            kind = _kind(next(iter(dtypes)), next(iter(layouts)), mp)
            _add(work, kind, params, params, grads, states,
                 [(h, lr, wd, n) for lr, n in runs])
        else:
            _add_each(work, gi, positions, params, grads, states, h, runs, wd, mp)
    return work


def _where(gi: int, positions: list | None, i: int) -> str:
    return f"param_groups[{gi}]['params'][{i if positions is None else positions[i]}]"


def _states(opt: Any, gi: int, params: list, positions: list | None, states: list,
            new: dict) -> list:
    """The states, with those never made (or made at construction and not used yet) made now."""
    mp, begin = opt.multi_precision, opt.begin_num_update
    unused = list(map(opt._unused.get, map(id, params))) if opt._unused else [None] * len(params)
    out = list(states)
    for i, (p, s) in enumerate(zip(params, states)):
        if s and unused[i] is not s:
            continue
        check_dtype(p, mp, _where(gi, positions, i))
        out[i] = new[p] = refresh(s, p, mp) if s else new_state(p, mp, begin)
    return out


def _counts(states: list) -> np.ndarray:
    """Each state's count after this update."""
    steps = list(map(_STEP, states))
    if set(map(type, steps)) <= {int}:
        return np.array(steps, dtype=np.int64) + 1
    bad = next(s for s in steps if type(s) is not int)
    raise TypeError(f"{OWNER}: a state's step is {bad!r} ({type(bad).__name__}); steps are "
                    f"update counts (ints); load states with load_state_dict, which converts them")


def _add(work: Work, kind: str, params: list, locals_: list, grads: list, states: list,
         runs: list) -> None:
    col = work.columns.setdefault(kind, Column())
    col.params += params
    col.ws += locals_
    col.gs += grads
    col.ms += map(_MEAN, states)
    col.vs += map(_VAR, states)
    if kind.startswith(("float16", "bfloat16")):
        col.masters += map(_MASTER, states)
    for h, lr, wd, n in runs:   # one parameter at a time: extend the run it continues
        last = col.runs[-1] if col.runs else None
        if last is not None and last[0] is h and last[1] is lr and last[2] is wd:
            col.runs[-1] = (h, lr, wd, last[3] + n)
        else:
            col.runs.append((h, lr, wd, n))


def _add_each(work: Work, gi: int, positions: list | None, params: list, grads: list,
              states: list, h: Hyper, runs: list, wd: float, mp: bool) -> None:
    """A group that mixes kinds or holds DTensors, one parameter at a time."""
    lrs = [lr for lr, n in runs for _ in range(n)]
    dtensor = _dtensor_class()
    for i, (p, g, s) in enumerate(zip(params, grads, states)):
        kind = _kind(p.dtype, g.layout, mp)
        if dtensor is not None and isinstance(p, dtensor):
            if not isinstance(g, dtensor) or g.placements != p.placements:
                got = getattr(g, "placements", type(g).__name__)
                raise ValueError(f"{OWNER}: {_where(gi, positions, i)} is a DTensor with "
                                 f"placements {p.placements} but its grad has {got}; "
                                 f"redistribute the grad to the parameter's placements")
            p_local, g, s = p.to_local(), g.to_local(), {k: _local(v) for k, v in s.items()}
        elif type(p) not in _PLAIN_TYPES:
            raise TypeError(f"{OWNER}: {_where(gi, positions, i)} is a "
                            f"{type(p).__qualname__}; expected a tensor, a Parameter or a DTensor")
        else:
            p_local = p
        _add(work, kind, [p], [p_local], [g], [s], [(h, lrs[i], wd, 1)])


# ---- running ---------------------------------------------------------------------------------
def run(work: Work, planner: Planner, scratch: dict, label: Any) -> None:
    """Run every column of ``work``: one planner call per kind (the planner batches by device
    and dtype), float16 master copies through ``mp_adam_steps``."""
    if len(work.columns) > 1:   # a later kind must not be refused after an earlier one wrote
        for col in work.columns.values():
            _precheck(col, label)
    for kind, col in work.columns.items():
        def prefix(t: int, col: Column = col) -> str:   # an error's subject, made only on error
            return f"{label(col.params[t])}: "
        if kind.startswith("float16"):
            lrs = [lr for _, lr, _, n in col.runs for _ in range(n)]
            wds = [wd for _, _, wd, n in col.runs for _ in range(n)]
            for h, at in _by_hyper(col.runs):
                pick = list if len(at) == len(col.ws) else (lambda xs, at=at: [xs[i] for i in at])
                mp_adam_steps(pick(col.ws), pick(col.gs), pick(col.masters), pick(col.ms),
                              pick(col.vs), lr=_one_or_each(pick(lrs)), wd=_one_or_each(pick(wds)),
                              hyper=hyper_dict(h))
        elif kind.startswith("bfloat16"):
            grads32 = _float32_grads(col.gs, scratch, kind.endswith("sparse"))
            planner.run([col.masters, grads32, col.ms, col.vs, col.masters],
                        _op_params(col.runs), prefix=prefix, versioned=())   # states only
            torch._foreach_copy_(col.ws, col.masters)   # round to nearest even, as MXNet's cast
        else:
            planner.run([col.ws, col.gs, col.ms, col.vs, col.ws], _op_params(col.runs),
                        prefix=prefix, versioned=("out",))   # the parameters, not the states


def commit(opt: Any, work: Work) -> None:
    """After every kind ran: counts, new states, ``num_update``."""
    for states, counts in work.counts:
        list(map(setitem, states, repeat("step"), counts.tolist()))
    if work.new:
        opt.state.update(work.new)
        for p in work.new:
            opt._unused.pop(id(p), None)
    opt.num_update = work.num_update


def _op_params(runs: list) -> Any:
    """One parsed parameter set for all updates, or one per update (each run parsed once)."""
    parsed = [(op_params(h, lr, wd), n) for h, lr, wd, n in runs]
    if len(parsed) == 1 or len({id(p) for p, _ in parsed}) == 1:
        return parsed[0][0]
    out: list = []
    for p, n in parsed:
        out += [p] * n
    return out


def _by_hyper(runs: list) -> list:
    """Positions of the updates of each distinct group hyperparameters, in order."""
    at: dict[int, tuple[Hyper, list]] = {}
    position = 0
    for h, _, _, n in runs:
        at.setdefault(id(h), (h, []))[1].extend(range(position, position + n))
        position += n
    return list(at.values())


def _float32_grads(grads: list, scratch: dict, sparse: bool) -> list:
    """The grads in float32 (MXNet's ``grad.astype(float32)``). Dense ones are copied into views
    of one float32 buffer kept between steps, so the plan of the master-copy update is kept."""
    if sparse:
        return [g.to(torch.float32) for g in grads]
    key = (tuple(map(_SHAPE, grads)), tuple(map(_DEVICE, grads)))
    views = scratch.get(key)
    if views is None:
        scratch.clear()
        views = scratch[key] = [torch.empty(g.shape, dtype=torch.float32, device=g.device)
                                for g in grads]
    torch._foreach_copy_(views, grads)
    return views


def _precheck(col: Column, label: Any) -> None:
    """What the op would refuse in a column, checked in bulk before any column runs."""
    for what, get in (("shape", _SHAPE), ("device", _DEVICE)):
        if list(map(get, col.gs)) != list(map(get, col.ws)):
            t = next(i for i, (g, w) in enumerate(zip(col.gs, col.ws)) if get(g) != get(w))
            raise ValueError(f"{OWNER}: {label(col.params[t])} has {what} {get(col.ws[t])} but "
                             f"its grad {get(col.gs[t])}")
    if not col.masters and list(map(_DTYPE, col.gs)) != list(map(_DTYPE, col.ws)):
        t = next(i for i, (g, w) in enumerate(zip(col.gs, col.ws)) if g.dtype != w.dtype)
        raise ValueError(f"{OWNER}: {label(col.params[t])} is {col.ws[t].dtype} but its grad "
                         f"{col.gs[t].dtype}; give a grad of the parameter's dtype")

