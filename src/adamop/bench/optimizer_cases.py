"""The optimizer's cases: an ``Updater`` step against ``adam_update_multi``, and the
multi-precision step against MXNet's three-operation sequence, each on the same arrays.

``updater``: ``count`` float32 tensors of ``size``; the Updater (counts, bias correction, one
batched call) against ``adam_update_multi`` on the very arrays the Updater updates (its weights,
grads and states). ``mp``: float16 weights with float32 master copies; adamop's multi-precision
step (``optimizer._steps.mp_adam_steps``, a fused kernel once there is one) against MXNet's
sequence written out with the public API (grads ``astype(float32)``, ``adam_update_multi`` on
the masters, ``cast`` back), plus a whole ``Updater`` step with ``multi_precision=True``. Bytes:
28 per element either way (float32: 7 x 4; multi-precision, one pass: float16 grad and weight
2 + 2, master, mean and var 3 x 8).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

import adamop
from adamop import optimizer
from adamop.optimizer._steps import mp_adam_steps

from .cases import LR, Case
from .peers import ADAMOP, LIMIT, CheckFailed, Runner, _limit, _same

CHECKED = 8   # tensors whose first step is compared bit for bit before timing (on copies)


def build(case: Case, rng: np.random.Generator) -> tuple[list[Runner], list[tuple[str, str]]]:
    """The runners of an ``updater`` or ``mp`` case (checked), and the skipped ones."""
    runners, skipped = [], []
    try:   # float32 arrays of the case's elements: 28 bytes each, as both cases count them
        runners.append(_limit(replace(case, kind="multi", dtype="float32"), {}))
    except ImportError as exc:
        skipped.append((LIMIT, f"needs numba ({exc})"))
    runners += (_updater if case.kind == "updater" else _multi_precision)(case, rng)
    return runners, skipped


def _tensors(case: Case, rng: np.random.Generator, dtype: str) -> tuple[list, list]:
    ws = [rng.standard_normal(case.size).astype(dtype) for _ in range(case.count)]
    gs = [rng.standard_normal(case.size).astype(dtype) for _ in range(case.count)]
    return ws, gs


def _updater(case: Case, rng: np.random.Generator) -> list[Runner]:
    ws, gs = _tensors(case, rng, "float32")
    idx = list(range(case.count))
    _check_updater(ws[:CHECKED], gs[:CHECKED])
    updater = optimizer.get_updater(optimizer.create("adam", learning_rate=LR))
    updater(idx, gs, ws)   # creates the states, warms up
    means = [updater.states[i][0] for i in idx]
    vars_ = [updater.states[i][1] for i in idx]

    def step():
        updater(idx, gs, ws)

    def multi():
        adamop.adam_update_multi(ws, gs, means, vars_, lr=LR, out=ws)
    multi()
    return [Runner(f"{ADAMOP} Updater step", ADAMOP, step, case.bytes),
            Runner(f"{ADAMOP} adam_update_multi, same arrays", "aux", multi, case.bytes)]


def _check_updater(ws: list, gs: list) -> None:
    """The Updater's first step is adam_update_multi with MXNet's bias-corrected lr."""
    mine = [w.copy() for w in ws]
    updater = optimizer.get_updater(optimizer.create("adam", learning_rate=LR))
    updater(list(range(len(ws))), gs, mine)
    want = [w.copy() for w in ws]
    ms, vs = [np.zeros_like(w) for w in ws], [np.zeros_like(w) for w in ws]
    adamop.adam_update_multi(want, gs, ms, vs, lr=adamop.bias_corrected_lr(LR, 0.9, 0.999, 1),
                             out=want)
    for i, w in enumerate(mine):
        m, v = updater.states[i]
        _same((w, m, v), (want[i], ms[i], vs[i]), f"Updater step, tensor {i}")


def _three_ops(ws16, gs16, masters, ms, vs) -> None:
    """MXNet's ``update_multi_precision``: grad.astype(float32), the update on the master copy,
    then cast(master, float16, out=weight)."""
    g32 = [g.astype(np.float32) for g in gs16]
    adamop.adam_update_multi(masters, g32, ms, vs, lr=LR, out=masters)
    for w, m in zip(ws16, masters):
        np.copyto(w, m, casting="unsafe")


def _multi_precision(case: Case, rng: np.random.Generator) -> list[Runner]:
    ws, gs = _tensors(case, rng, "float16")
    masters = [w.astype(np.float32) for w in ws]
    ms = [np.zeros(case.size, np.float32) for _ in range(case.count)]
    vs = [np.zeros(case.size, np.float32) for _ in range(case.count)]
    _check_mp(ws[:CHECKED], gs[:CHECKED], masters[:CHECKED])

    def fused():
        mp_adam_steps(ws, gs, masters, ms, vs, lr=LR, wd=0.0, hyper=_HYPER)

    def unfused():
        _three_ops(ws, gs, masters, ms, vs)
    uw = [w.copy() for w in ws]
    updater = optimizer.get_updater(optimizer.create("adam", learning_rate=LR,
                                                     multi_precision=True))
    idx = list(range(case.count))

    def whole():
        updater(idx, gs, uw)
    for warm in (fused, unfused, whole):
        warm()
    return [Runner(f"{ADAMOP} multi-precision step (mp_adam_steps)", ADAMOP, fused, case.bytes),
            Runner("three ops (astype, adam_update_multi, cast), same arrays", "aux", unfused,
                   case.bytes),
            Runner(f"{ADAMOP} Updater step, multi_precision=True", "aux", whole, case.bytes)]


_HYPER = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "rescale_grad": 1.0,
          "lazy_update": True}


def _check_mp(ws: list, gs: list, masters: list) -> None:
    """adamop's multi-precision step leaves the bits MXNet's three operations leave."""
    runs = []
    for step in (lambda *a: mp_adam_steps(*a, lr=LR, wd=0.0, hyper=_HYPER), _three_ops):
        arrays = ([w.copy() for w in ws], gs, [m.copy() for m in masters],
                  [np.zeros_like(m) for m in masters], [np.zeros_like(m) for m in masters])
        step(*arrays)
        runs.append(arrays)
    (w1, _, m1, a1, b1), (w2, _, m2, a2, b2) = runs
    for i in range(len(ws)):
        _same((m1[i], a1[i], b1[i]), (m2[i], a2[i], b2[i]), f"multi-precision tensor {i}")
        if not np.array_equal(w1[i].view(np.uint16), w2[i].view(np.uint16)):
            raise CheckFailed(f"multi-precision tensor {i}: the float16 weight differs from "
                              f"the three-operation sequence")
