"""The PyTorch front end's cases: ``adamop.torch.Adam.step()`` on a whole model's parameters.

``torch-multi``: ``count`` float32 parameters of ``size`` elements, against the update of one
tensor of the same total size through the update plan (what batching can at best reach) and
``adam_update_multi`` on the very tensors the step updates. ``torch-resnet50``: ResNet-50's 161
parameter shapes (25,557,032 elements), against ``torch.optim.Adam`` (fused, foreach, for-loop)
on the same shapes. Each step is timed with the same gradients (a real loop's ``zero_grad``
gives new ones, which the plan then re-reads in bulk). Bytes: 28 per element (float32: 7 x 4).
"""
from __future__ import annotations

import numpy as np

import adamop

from .cases import LR, Case
from .peers import ADAMOP, LIMIT, CheckFailed, Runner, _limit, _sane

CHECKED = 8   # parameters whose first step is compared bit for bit before timing


def resnet50_shapes(width_divisor: int = 1) -> list[tuple[int, ...]]:
    """The shapes of ``torchvision.models.resnet50()``'s 161 parameters, in its order (stem,
    16 bottlenecks of conv 1x1, 3x3, 1x1 with BatchNorm, 4 downsample branches, the 1000-way
    classifier); ``width_divisor`` narrows every layer (a quick run)."""
    def c(n: int) -> int:
        return max(1, n // width_divisor)
    shapes: list[tuple[int, ...]] = [(c(64), 3, 7, 7), (c(64),), (c(64),)]
    inp = c(64)
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        w, out = c(width), c(width * 4)
        for b in range(blocks):
            shapes += [(w, inp, 1, 1), (w,), (w,), (w, w, 3, 3), (w,), (w,), (out, w, 1, 1),
                       (out,), (out,)]
            if b == 0:
                shapes += [(out, inp, 1, 1), (out,), (out,)]
            inp = out
    return shapes + [(1000, inp), (1000,)]


def shapes_of(case: Case) -> list[tuple[int, ...]]:
    if case.kind == "torch-resnet50":
        return resnet50_shapes(case.rows or 1)
    return [(case.size,)] * case.count


def build(case: Case, rng: np.random.Generator) -> tuple[list[Runner], list[tuple[str, str]]]:
    """The runners of a ``torch-multi`` or ``torch-resnet50`` case (checked), and the skipped."""
    import torch
    shapes = shapes_of(case)
    runners, skipped = [], []
    try:
        runners.append(_limit(Case("dense", "float32", case.elements), {}))
    except ImportError as exc:
        skipped.append((LIMIT, f"needs numba ({exc})"))
    ws = [torch.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in shapes]
    gs = [torch.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in shapes]
    runners.append(_adamop_torch(ws, gs, case))
    if case.kind == "torch-multi":
        runners += _same_size(case, rng, ws, gs)
    for impl, flags in (("fused", {"fused": True}), ("foreach", {"foreach": True}),
                        ("for-loop", {"foreach": False})):
        params = [torch.nn.Parameter(w.clone()) for w in ws]
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt = torch.optim.Adam(params, lr=LR, **flags)
        before = params[-2].detach().numpy().copy()
        opt.step()
        _sane(before, params[-2].detach().numpy(), f"torch Adam {impl}")
        runners.append(Runner(f"torch Adam {impl}", "peer", opt.step, case.bytes))
    return runners, skipped


def _adamop_torch(ws: list, gs: list, case: Case):
    """``adamop.torch.Adam.step()``, its first step checked against the op with MXNet's
    bias-corrected lr on NumPy copies."""
    import torch

    import adamop.torch
    params = [torch.nn.Parameter(w.clone()) for w in ws]
    for p, g in zip(params, gs):
        p.grad = g
    opt = adamop.torch.Adam(params, lr=LR)
    opt.step()
    lr = adamop.bias_corrected_lr(LR, 0.9, 0.999, 1)
    for i in range(min(CHECKED, len(ws))):
        w, m, v = ws[i].numpy().copy(), np.zeros(ws[i].shape, np.float32), np.zeros(
            ws[i].shape, np.float32)
        adamop.adam_update(w, gs[i].numpy(), m, v, lr=lr, out=w, backend="numpy")
        got = (params[i].detach().numpy(), opt.state[params[i]]["exp_avg"].numpy(),
               opt.state[params[i]]["exp_avg_sq"].numpy())
        for a, b, what in zip(got, (w, m, v), ("weight", "mean", "var")):
            if not np.array_equal(a.view(np.uint32), b.view(np.uint32)):
                raise CheckFailed(f"adamop.torch.Adam, parameter {i}: the {what} differs from "
                                  f"the NumPy reference")
    return Runner(f"{ADAMOP}.torch.Adam step", ADAMOP, opt.step, case.bytes)


def _same_size(case: Case, rng: np.random.Generator, ws: list, gs: list) -> list[Runner]:
    """One tensor of the same total size through the update plan, and ``adam_update_multi``
    on tensors of the case's shapes (its own copies)."""
    import torch
    n = case.elements
    one = [torch.from_numpy(rng.standard_normal(n).astype(np.float32)) for _ in range(2)]
    one += [torch.zeros(n), torch.zeros(n)]

    def single():
        adamop.adam_update(one[0], one[1], one[2], one[3], lr=LR, out=one[0])
    ws2 = [w.clone() for w in ws]
    ms, vs = [torch.zeros_like(w) for w in ws], [torch.zeros_like(w) for w in ws]

    def multi():
        adamop.adam_update_multi(ws2, gs, ms, vs, lr=LR, out=ws2)
    single()
    multi()
    return [Runner(f"{ADAMOP} one tensor, same size", "aux", single, case.bytes),
            Runner(f"{ADAMOP} adam_update_multi, same shapes", "aux", multi, case.bytes)]


def cases(quick: bool) -> list[Case]:
    """``torch-multi`` (count x size) and ``torch-resnet50`` (``rows``: the width divisor)."""
    if quick:
        return [Case("torch-multi", "float32", 1 << 10, count=50), _resnet(8)]
    return [Case("torch-multi", "float32", 1 << 14, count=2_000), _resnet(1)]


def _resnet(divisor: int) -> Case:
    shapes = resnet50_shapes(divisor)
    return Case("torch-resnet50", "float32", sum(int(np.prod(s)) for s in shapes),
                rows=divisor, count=len(shapes))
