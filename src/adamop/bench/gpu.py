"""``adamop bench --device cuda``: adamop on torch CUDA tensors against the peers on the GPU.

The limit is a device-to-device copy of the case's elements (``BENCH.md``); the peers are
``torch.optim.Adam`` (fused, foreach), ``torch.optim.SparseAdam`` and ``optax.adam`` under
``jax.jit`` when JAX sees a GPU. Timing uses the CPU harness (interleaved, median and p20-p80);
every sample is bracketed by device synchronisations, so a sample is the device time of its
calls plus one launch latency. adamop's first step is checked bit for bit against the NumPy
reference on the host before anything is timed (on a sample of rows or tensors for big cases).

``device`` is a parameter so that this module's logic can be run on CPU tensors too: the tests
do, and so does ``adamop bench --device cuda --rehearse`` (tiny sizes, no measurement), which
rehearses a GPU run on a machine without one.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable

import numpy as np

import adamop
from adamop import AdamParams, reference
from adamop.storage import RowSparseArray

from .cases import LR, Case
from .peers import Runner, _same

LIMIT = "limit (device copy)"
OPTAX = "optax adam (jax.jit)"


def cases(divisor: int = 1) -> list[Case]:
    """The GPU cases of ``BENCH.md``, most important first (a run cut short keeps those), each
    ``1/divisor`` of its size (--quick: 64, --rehearse: 1024): one 2^28 tensor, 2,000 tensors of
    64K in one call, a lazy update of 200,000 rows of an 8M x 64 table, then float16 and float64,
    then smaller float32 tensors for the plot of GB/s against size."""
    k = divisor
    return [Case("dense", "float32", (1 << 28) // k),
            Case("multi", "float32", 1 << 16, count=max(2, 2000 // k)),
            Case("lazy", "float32", (8 << 20) // k, rows=max(2, 200_000 // k), row_length=64),
            Case("dense", "float16", (1 << 28) // k),
            Case("dense", "float64", (1 << 27) // k),
            Case("dense", "float32", (1 << 24) // k),
            Case("dense", "float32", (1 << 20) // k)]


def unavailable() -> str | None:
    """Why there is no CUDA device to measure, or None."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "torch reports no CUDA device (torch.cuda.is_available() is False)"
    return None


def describe() -> dict[str, str]:
    """The device, its memory, the CUDA version torch was built with."""
    import torch
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {"device": props.name, "device_memory_gib": f"{props.total_memory / 2 ** 30:.1f}",
            "cuda": str(torch.version.cuda)}


def _synced(step: Callable[[], Any], sync: Callable[[Any], None]) -> Callable[[int], float]:
    def timer(calls: int) -> float:
        sync(None)
        t0 = time.perf_counter()
        result = None
        for _ in range(calls):
            result = step()
        sync(result)
        return time.perf_counter() - t0
    return timer


def _runner(name: str, role: str, step: Callable[[], Any], nbytes: int,
            sync: Callable[[Any], None]) -> Runner:
    return Runner(name, role, step, nbytes, timer=_synced(step, sync))


def _host(*tensors: Any) -> tuple[np.ndarray, ...]:
    return tuple(t.detach().cpu().numpy() for t in tensors)


def build(case: Case, rng: np.random.Generator, device: str = "cuda", skip: tuple = (),
          ) -> tuple[list[Runner], list[tuple[str, str]]]:
    """The runners for ``case`` on ``device`` (adamop checked) and the skipped ones; a peer
    whose name contains one of ``skip`` is not built."""
    import torch
    dev = torch.device(device)
    td = getattr(torch, case.dtype)
    sync = (lambda _: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda _: None)
    gen = torch.Generator(device=dev).manual_seed(int(rng.integers(1 << 31)))

    def randn(*shape):
        return torch.randn(*shape, dtype=td, device=dev, generator=gen)

    def rand(*shape):
        return torch.rand(*shape, dtype=td, device=dev, generator=gen) * 0.1

    skipped: list[tuple[str, str]] = []

    def wanted(name: str) -> bool:
        if any(p in name for p in skip):
            skipped.append((name, "--skip"))
            return False
        return True
    s = AdamParams.from_kwargs({"lr": LR}).scalars(np.dtype(case.dtype))
    src = torch.empty(case.elements, dtype=td, device=dev)
    dst = torch.empty_like(src)
    runners = [_runner(LIMIT, "limit", lambda: dst.copy_(src), 2 * src.nbytes, sync)]

    if case.kind in ("dense", "multi"):
        count = case.count if case.kind == "multi" else 1
        ws, gs, ms = ([randn(case.size) for _ in range(count)] for _ in range(3))
        vs = [rand(case.size) for _ in range(count)]
        sample = list(range(0, count, max(1, count // 16)))   # tensors checked on the host
        k = min(case.size, 1 << 20)                           # and a prefix of each
        # copies (on a CPU device .cpu().numpy() would share the tensors' memory)
        host = [[t[:k].cpu().numpy().copy() for t in (ws[i], gs[i], ms[i], vs[i])]
                for i in sample]
        if case.kind == "dense":
            def step():
                adamop.adam_update(ws[0], gs[0], ms[0], vs[0], lr=LR, out=ws[0])
        else:
            def step():
                adamop.adam_update_multi(ws, gs, ms, vs, lr=LR, out=ws)
        step()
        sync(None)
        for i, (w, g, m, v) in zip(sample, host):
            reference.adam_dense(w, g, m, v, w, s, reference.DENSE)
            _same(_host(ws[i][:k], ms[i][:k], vs[i][:k]), (w, m, v), f"adamop tensor {i}")
        backend = adamop.dispatch.select(dev.type)[0].name
        runners.append(_runner(f"adamop[{backend}]", "adamop", step, case.bytes, sync))
        for impl, flags in (("fused", {"fused": True}), ("foreach", {"foreach": True})):
            if not wanted(f"torch Adam {impl}"):
                continue
            params = [torch.nn.Parameter(w.clone()) for w in ws]
            for p, g in zip(params, gs):
                p.grad = g.clone()
            opt = torch.optim.Adam(params, lr=LR, **flags)
            runners.append(_runner(f"torch Adam {impl}", "peer", opt.step, case.bytes, sync))
        if wanted(OPTAX):
            optax = _optax([tuple(w.shape) for w in ws], case.dtype)
            if isinstance(optax, str):
                skipped.append((OPTAX, optax))
            else:
                runners.append(_runner(OPTAX, "peer", optax[0], case.bytes, optax[1]))
    elif case.kind == "lazy":
        w, m = randn(case.size, case.row_length), randn(case.size, case.row_length)
        v = rand(case.size, case.row_length)
        idx = torch.randperm(case.size, device=dev, generator=gen)[:case.rows].sort().values
        gdata = randn(case.rows, case.row_length)
        grad = RowSparseArray(gdata, idx, tuple(w.shape))   # built once, outside the timing
        coo = grad.to_torch()
        rows = idx[: min(case.rows, 4096)]                   # rows checked on the host
        host = [t[rows].cpu().numpy().copy() for t in (w, m, v)]

        def step():
            adamop.adam_update(w, grad, m, v, lr=LR, out=w)
        step()
        sync(None)
        reference.adam_rows(host[0], gdata[: rows.shape[0]].cpu().numpy(),
                            np.arange(rows.shape[0]), host[1], host[2], host[0], s,
                            reference.LAZY)
        _same(_host(w[rows], m[rows], v[rows]), host, "adamop lazy")
        backend = adamop.dispatch.select(dev.type)[0].name
        runners.append(_runner(f"adamop[{backend}]", "adamop", step, case.bytes, sync))
        runners.append(_runner(f"adamop[{backend}] from a torch COO grad", "adamop",
                               lambda: adamop.adam_update(w, coo, m, v, lr=LR, out=w),
                               case.bytes, sync))
        if wanted("torch SparseAdam"):
            p = torch.nn.Parameter(w.clone())
            p.grad = coo.clone()
            runners.append(_runner("torch SparseAdam", "peer",
                                   torch.optim.SparseAdam([p], lr=LR).step, case.bytes, sync))
        skipped.append((OPTAX, "optax has no row-sparse update"))
    else:
        raise ValueError(f"no GPU benchmark for {case.kind!r} cases")
    return runners, skipped


def _optax(shapes: list[tuple], dtype: str,
           ) -> tuple[Callable[[], Any], Callable[[Any], None]] | str:
    """A jitted optax.adam step over arrays of ``shapes`` on the GPU, or why there is none."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")   # share the GPU with torch
    try:
        import jax
        import optax
    except ImportError as exc:
        return f"not installed ({exc})"
    try:
        if not any(d.platform == "gpu" for d in jax.devices()):
            return "JAX sees no GPU"
    except RuntimeError as exc:         # a JAX whose CUDA plugin cannot start next to torch
        return f"JAX cannot start: {exc}"
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    opt = optax.adam(LR)
    keys = jax.random.split(jax.random.PRNGKey(0), 2 * len(shapes))
    params = [jax.random.normal(keys[2 * i], s, dtype=dtype) for i, s in enumerate(shapes)]
    grads = [jax.random.normal(keys[2 * i + 1], s, dtype=dtype) for i, s in enumerate(shapes)]
    box = {"params": params, "state": opt.init(params)}

    @jax.jit
    def update(p, g, st):
        updates, st = opt.update(g, st, p)
        return optax.apply_updates(p, updates), st

    def step():
        box["params"], box["state"] = update(box["params"], grads, box["state"])
        return box["params"]
    return step, lambda result: jax.block_until_ready(result) if result is not None else None
