"""What is timed for a case: the same-pattern limit, adamop's backends, and the peers present.

Each runner is checked once before it is timed: adamop bit for bit against the NumPy reference,
peers (different math: bias correction, other rounding) only for sanity (finite, moved by about
``lr``). A runner that cannot run here is skipped with the reason.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

import adamop
from adamop import AdamParams, dispatch, reference
from adamop.storage import RowSparseArray

from .cases import LR, Case

ADAMOP = "adamop"


@dataclass
class Runner:
    name: str
    role: str                       # 'limit' | 'adamop' | 'peer' | 'aux'
    step: Callable[[], None]
    bytes: int
    timer: Callable[[int], float] | None = None   # remote timing (MXNet); default: local

    def time(self, calls: int) -> float:
        """Seconds for ``calls`` consecutive steps."""
        if self.timer is not None:
            return self.timer(calls)
        t0 = time.perf_counter()
        for _ in range(calls):
            self.step()
        return time.perf_counter() - t0


class CheckFailed(AssertionError):
    """An adamop result differs from the reference: nothing is timed."""


class Implausible(ValueError):
    """A peer's first step looks wrong (overflow, no movement): it is skipped, with the reason."""


def _data(case: Case, rng: np.random.Generator) -> dict:
    dt = np.dtype(case.dtype)

    def arrays(shape):
        return (rng.standard_normal(shape).astype(dt), rng.standard_normal(shape).astype(dt),
                (rng.standard_normal(shape) * 0.1).astype(dt), (rng.random(shape) * 0.1).astype(dt))
    if case.kind == "dense":
        return {"dense": arrays((case.size,))}
    if case.kind == "multi":
        return {"multi": [arrays((case.size,)) for _ in range(case.count)]}
    table = arrays((case.size, case.row_length))
    idx = np.sort(rng.choice(case.size, case.rows, replace=False)).astype(np.int64)
    gdata = rng.standard_normal((case.rows, case.row_length)).astype(dt)
    return {"table": table, "idx": idx, "gdata": gdata}


def _copy(arrays):
    return tuple(a.copy() for a in arrays)


def _same(got, want, what: str) -> None:
    for a, b, n in zip(got, want, ("weight", "mean", "var")):
        au, bu = a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}")
        nan = np.isnan(a) & np.isnan(b)
        if not np.array_equal(au[~nan], bu[~nan]):
            raise CheckFailed(f"{what}: {n} differs from the NumPy reference")


def _sane(before: np.ndarray, after: np.ndarray, what: str) -> None:
    """Nearly all finite, and a typical step of the order of lr (robust to the few elements
    where float16 overflows or v is tiny)."""
    moved = np.abs(after.astype(np.float64) - before.astype(np.float64))
    finite = float(np.isfinite(moved).mean())
    typical = float(np.median(moved[np.isfinite(moved)])) if finite else float("nan")
    if not (finite >= 0.99 and 0 < typical <= 100 * LR):
        raise Implausible(f"{what}: implausible first step ({finite:.1%} finite, median "
                          f"|change| {typical:.3g} for lr {LR})")


LIMIT = "limit (same pattern)"


def _limit(case: Case, data: dict) -> Runner:
    """The trivial kernel with the case's memory pattern: contiguous arrays of the elements it
    moves, or for lazy row_sparse the same random rows of tables of the same shape."""
    from ..backends.numba_backend import launch   # one thread for small work, as the update
    from . import limits
    dt = np.dtype(case.dtype)
    raw = np.uint16 if dt == np.float16 else dt   # the trivial kernel only moves the bytes
    if case.kind == "lazy":
        w, m, v = (np.ones((case.size, case.row_length), raw) for _ in range(3))
        gd, idx = data["gdata"].view(raw), data["idx"]

        def step():
            launch(limits.limit_rows, idx.shape[0] * case.row_length, w, gd, idx, m, v)
        name = LIMIT + ", random rows"
    else:
        w, g, m, v = (np.ones(case.elements, raw) for _ in range(4))

        def step():
            launch(limits.limit, case.elements, w, g, m, v)
        name = LIMIT
    step()   # compiles
    return Runner(name, "limit", step, case.bytes)


def _adamop_backends() -> list[str]:
    return [s.name for s in dispatch.registry() if "cpu" in s.devices
            and s.unavailable_reason() is None]


def build(case: Case, rng: np.random.Generator, *, mxnet=None, big_reference: int = 1 << 22,
          ) -> tuple[list[Runner], list[tuple[str, str]]]:
    """The runners for ``case`` (checked) and the skipped ones with reasons."""
    if case.kind in ("updater", "mp"):
        from . import optimizer_cases
        return optimizer_cases.build(case, rng)
    if case.kind.startswith("torch-"):
        from . import torch_cases
        return torch_cases.build(case, rng)
    data = _data(case, rng)
    runners: list[Runner] = []
    skipped: list[tuple[str, str]] = []
    try:
        runners.append(_limit(case, data))
    except ImportError as exc:
        skipped.append((LIMIT, f"needs numba ({exc})"))
    for b in _adamop_backends():
        if b == "numpy" and case.elements > big_reference:
            skipped.append((f"{ADAMOP}[numpy]", "the reference is too slow to time at this size "
                                                 "(the NumPy peer shows one-ufunc-per-op speed)"))
            continue
        runners.append(_adamop_runner(case, data, b))
    builders = {"dense": (_torch_dense, _numpy_dense), "multi": (_torch_dense, _numpy_dense),
                "lazy": (_torch_sparse, _numpy_lazy), "std": ()}[case.kind]
    for make in builders:
        try:
            runners.extend(make(case, data))
        except ImportError as exc:
            skipped.append((make.__name__.strip("_"), f"not installed ({exc})"))
        except Implausible as exc:
            skipped.append((make.__name__.strip("_"), str(exc)))
    if case.kind == "std" and "numba" in _adamop_backends():
        runners.append(_adamop_runner(Case("dense", case.dtype, case.elements), {
            "dense": tuple(a.reshape(-1) for a in _copy(data["table"]))}, "numba",
            name=f"{ADAMOP}[numba] dense, same table", role="aux"))
    if case.kind == "multi" and "numba" in _adamop_backends():
        for variant in ("torch", "group"):
            try:
                runners.append(_adamop_runner(case, data, "numba", variant=variant))
            except ImportError as exc:
                skipped.append((f"{ADAMOP}[numba] {variant}", f"not installed ({exc})"))
        one = tuple(np.concatenate(x) for x in zip(*data["multi"]))
        runners.append(_adamop_runner(Case("dense", case.dtype, case.elements), {"dense": one},
                                      "numba", name=f"{ADAMOP}[numba] one tensor, same size",
                                      role="aux"))
    if mxnet is not None:
        r = mxnet.runner(case)
        if isinstance(r, str):
            skipped.append(("mxnet 1.9.1", r))
        else:
            runners.append(r)
    return runners, skipped


# ---- adamop ------------------------------------------------------------------------------
def _adamop_runner(case: Case, data: dict, backend: str, *, name: str | None = None,
                   role: str = ADAMOP, variant: str = "numpy") -> Runner:
    """adamop through its public API. A multi case's ``variant``: ``adam_update_multi`` on NumPy
    arrays or on torch CPU tensors, or a bound symbolic ``Group`` of one node per tensor run by
    ``forward()`` (its new weights go to the executor's outputs)."""
    name = name or f"{ADAMOP}[{backend}]" + ("" if variant == "numpy" else f" {variant}")
    params = AdamParams.from_kwargs({"lr": LR, "lazy_update": case.kind != "std"})
    s = params.scalars(np.dtype(case.dtype))
    if case.kind == "dense":
        w, g, m, v = _copy(data["dense"])
        want = _copy((w, m, v))
        reference.adam_dense(want[0], g, want[1], want[2], want[0], s, reference.DENSE)

        def step():
            adamop.adam_update(w, g, m, v, lr=LR, out=w, backend=backend)
    elif case.kind == "multi":
        tensors = [_copy(t) for t in data["multi"]]
        ws, gs, ms, vs = (list(x) for x in zip(*tensors))
        want = [_copy((t[0], t[2], t[3])) for t in tensors]
        for (ew, em, ev), g in zip(want, gs):
            reference.adam_dense(ew, g, em, ev, ew, s, reference.DENSE)
        ws0, ms0, vs0 = ws, ms, vs     # NumPy views of what the step updates
        if variant == "torch":
            import torch
            ws, gs, ms, vs = ([torch.from_numpy(a) for a in x] for x in (ws, gs, ms, vs))

        def step():
            adamop.adam_update_multi(ws, gs, ms, vs, lr=LR, out=ws, backend=backend)
        if variant == "group":
            executor = _group(ws, gs, ms, vs, backend)
            ws0 = executor.outputs

            def step():   # noqa: F811  (the symbolic variant)
                executor.forward()
    else:
        w, g0, m, v = _copy(data["table"])
        gd, idx = data["gdata"], data["idx"]
        grad = RowSparseArray(gd, idx, w.shape)
        want = _copy((w, m, v))
        reference.adam_rows(want[0], gd, idx, want[1], want[2], want[0], s,
                            reference.LAZY if case.kind == "lazy" else reference.STD)

        def step():
            adamop.adam_update(w, grad, m, v, lr=LR, lazy_update=case.kind == "lazy", out=w,
                               backend=backend)
    step()   # warm-up (compiles), then the bitwise check of that first step
    if case.kind == "multi":
        for i, ew in enumerate(want):
            _same((ws0[i], ms0[i], vs0[i]), ew, f"{name} tensor {i}")
    else:
        _same((w, m, v), want, name)
    return Runner(name, role, step, case.bytes)


def _group(ws, gs, ms, vs, backend: str):
    """A bound ``Group`` with one adam_update node per tensor (a whole model's update graph)."""
    from adamop import sym
    nodes = [sym.adam_update(sym.var(f"w{i}"), sym.var(f"g{i}"), sym.var(f"m{i}"),
                             sym.var(f"v{i}"), lr=LR, name=f"adam{i}") for i in range(len(ws))]
    args = {f"{k}{i}": x for i in range(len(ws)) for k, x in (("w", ws[i]), ("g", gs[i]))}
    aux = {f"{k}{i}": x for i in range(len(ws)) for k, x in (("m", ms[i]), ("v", vs[i]))}
    return sym.Group(nodes).bind(args, aux, backend=backend)


# ---- torch -------------------------------------------------------------------------------
def _torch_dense(case: Case, data: dict) -> list[Runner]:
    import torch
    tensors = data["multi"] if case.kind == "multi" else [data["dense"]]
    out = []
    for impl in ("fused", "foreach", "for-loop"):
        params = []
        for w, g, _, _ in tensors:
            p = torch.nn.Parameter(torch.from_numpy(w.copy()))
            p.grad = torch.from_numpy(g.copy())
            params.append(p)
        flags = {"fused": {"fused": True}, "foreach": {"foreach": True},
                 "for-loop": {"foreach": False}}[impl]
        opt = torch.optim.Adam(params, lr=LR, **flags)
        before = params[0].detach().numpy().copy()
        with torch.no_grad():
            opt.step()
        _sane(before, params[0].detach().numpy(), f"torch Adam {impl}")
        out.append(Runner(f"torch Adam {impl}", "peer", opt.step, case.bytes))
    return out


def _torch_sparse(case: Case, data: dict) -> list[Runner]:
    import torch
    w = data["table"][0]
    p = torch.nn.Parameter(torch.from_numpy(w.copy()))
    idx = torch.from_numpy(data["idx"])[None, :]
    p.grad = torch.sparse_coo_tensor(idx, torch.from_numpy(data["gdata"]), tuple(w.shape),
                                     check_invariants=True)
    p.grad = p.grad.coalesce()
    opt = torch.optim.SparseAdam([p], lr=LR)
    before = p.detach().numpy()[data["idx"]].copy()
    opt.step()
    _sane(before, p.detach().numpy()[data["idx"]], "torch SparseAdam")
    return [Runner("torch SparseAdam", "peer", opt.step, case.bytes)]


# ---- NumPy, one ufunc per operation --------------------------------------------------------
def _numpy_update(w, g, m, v, t, u, c) -> None:
    """MXNet's dense formula (no clipping) with one ufunc call per operation, in place. IEEE
    results are intended (float16's epsilon rounds to 0, so v = 0 divides by zero): no warnings."""
    with np.errstate(all="ignore"):
        _numpy_ops(w, g, m, v, t, u, c)


def _numpy_ops(w, g, m, v, t, u, c) -> None:
    np.multiply(g, c["rg"], out=t)
    np.multiply(w, c["wd"], out=u)
    np.add(t, u, out=t)
    np.multiply(m, c["b1"], out=m)
    np.multiply(t, c["omb1"], out=u)
    np.add(m, u, out=m)
    np.multiply(v, c["b2"], out=v)
    np.multiply(t, c["omb2"], out=u)
    np.multiply(u, t, out=u)
    np.add(v, u, out=v)
    np.sqrt(v, out=t)
    np.add(t, c["eps"], out=t)
    np.multiply(m, c["lr"], out=u)
    np.divide(u, t, out=u)
    np.subtract(w, u, out=w)


def _numpy_consts(dtype) -> dict:
    s = AdamParams.from_kwargs({"lr": LR}).scalars(np.dtype(dtype))
    one = s.dtype.type(1)
    return {"rg": s.rescale_grad, "wd": s.wd, "b1": s.beta1, "omb1": one - s.beta1,
            "b2": s.beta2, "omb2": one - s.beta2, "eps": s.epsilon, "lr": s.lr}


def _numpy_dense(case: Case, data: dict) -> list[Runner]:
    c = _numpy_consts(case.dtype)
    tensors = [_copy(t) for t in (data["multi"] if case.kind == "multi" else [data["dense"]])]
    tmp = [(np.empty_like(t[0]), np.empty_like(t[0])) for t in tensors]

    def step():
        for (w, g, m, v), (t, u) in zip(tensors, tmp):
            _numpy_update(w, g, m, v, t, u, c)
    before = tensors[0][0].copy()
    step()
    _sane(before, tensors[0][0], "numpy ufuncs")
    return [Runner("numpy one ufunc per op", "peer", step, case.bytes)]


def _numpy_lazy(case: Case, data: dict) -> list[Runner]:
    c = _numpy_consts(case.dtype)
    w, _, m, v = _copy(data["table"])
    gd, idx = data["gdata"], data["idx"]
    t, u = np.empty_like(gd), np.empty_like(gd)

    def step():   # gather the rows, update them, scatter them back
        wr, mr, vr = w[idx], m[idx], v[idx]
        _numpy_update(wr, gd, mr, vr, t, u, c)
        w[idx], m[idx], v[idx] = wr, mr, vr
    before = w[idx]
    step()
    _sane(before, w[idx], "numpy ufuncs (rows)")
    return [Runner("numpy one ufunc per op", "peer", step, case.bytes)]
