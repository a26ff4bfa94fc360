"""GPU benchmark: adamop's triton backend against its peers; the limit is a device copy.

Cases (``BENCH.md``): one dense tensor of 2^28 elements; 2,000 tensors of 64K elements in one
call; a lazy row_sparse update of 200K rows of an 8M x 64 table. Peers: ``torch.optim.Adam``
(fused, foreach), ``torch.optim.SparseAdam``, and ``optax.adam`` under ``jax.jit`` when JAX with
a GPU is installed. Providers run interleaved (A B A B ...) in one process; each figure is the
median (and 20th-80th percentile) of ``--reps`` timings of ``--iters`` calls. adamop's result is
checked bit for bit against the NumPy reference before anything is timed.

GB/s counts 7 x itemsize bytes per updated element (read w, g, m, v; write w, m, v); the lazy
case counts only the touched rows (plus their int64 indices); the copy moves 2 x itemsize bytes
per element. The "limit" column is the fraction of the copy's GB/s.

    python benchmarks/gpu/bench_gpu.py                      # all cases, float32
    python benchmarks/gpu/bench_gpu.py --case lazy --reps 20 --csv results/h100.csv
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from typing import Callable

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")   # let JAX share the GPU

import numpy as np
import torch

import adamop
from adamop import RowSparseArray, reference

LR = 1e-3


def _sync_torch() -> None:
    torch.cuda.synchronize()


def _time(fn: Callable[[], object], sync: Callable[[object], None], iters: int) -> float:
    """Seconds per call of ``fn``, host-timed around ``iters`` calls and a final sync."""
    sync(None)
    t0 = time.perf_counter()
    for _ in range(iters):
        r = fn()
    sync(r)
    return (time.perf_counter() - t0) / iters


def _run(providers: dict, reps: int, iters: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in providers}
    for fn, sync, _ in providers.values():               # warm up: compile, build tables
        _time(fn, sync, 2)
    for _ in range(reps):                                  # interleaved
        for name, (fn, sync, _) in providers.items():
            times[name].append(_time(fn, sync, iters))
    return times


def _report(case: str, providers: dict, times: dict, rows: list, dtype: str) -> None:
    copy_gbs = providers["device copy"][2] / statistics.median(times["device copy"]) / 1e9
    ours = statistics.median(times["adamop"])
    print(f"\n== {case} ({dtype}) ==")
    print(f"{'provider':34s} {'ms':>9s} {'p20-p80 ms':>17s} {'GB/s':>8s} {'limit':>6s} "
          f"{'vs adamop':>9s}")
    for name, samples in times.items():
        med = statistics.median(samples)
        q = np.percentile(samples, [20, 80]) * 1e3
        gbs = providers[name][2] / med / 1e9
        print(f"{name:34s} {med * 1e3:9.3f} {q[0]:8.3f}-{q[1]:<8.3f} {gbs:8.0f} "
              f"{gbs / copy_gbs:6.2f} {med / ours:8.2f}x")
        rows.append(dict(case=case, provider=name, dtype=dtype, median_ms=med * 1e3,
                         p20_ms=q[0], p80_ms=q[1], gbps=gbs, fraction_of_copy=gbs / copy_gbs,
                         time_vs_adamop=med / ours, device=torch.cuda.get_device_name(),
                         torch=torch.__version__, adamop=adamop.__version__))


def _copy_provider(n: int, dtype: torch.dtype) -> tuple:
    src, dst = torch.empty(n, dtype=dtype, device="cuda"), torch.empty(n, dtype=dtype,
                                                                       device="cuda")
    return (lambda: dst.copy_(src), lambda _: _sync_torch(), 2 * n * src.element_size())


def _torch_adam(params: list[torch.Tensor], **kind) -> Callable[[], None]:
    ps = [torch.nn.Parameter(p.clone()) for p in params]
    for p in ps:
        p.grad = torch.randn_like(p)
    opt = torch.optim.Adam(ps, lr=LR, **kind)
    return opt.step


def _optax(shapes: list[tuple], np_dtype: str):
    """optax.adam under jax.jit over a list of arrays, or None (with a note) without JAX/GPU."""
    try:
        import jax
        import optax
    except ImportError:
        print("optax/jax not installed: the optax row is left out")
        return None
    if not any(d.platform == "gpu" for d in jax.devices()):
        print("JAX sees no GPU: the optax row is left out")
        return None
    if np_dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    opt = optax.adam(LR)
    key = jax.random.PRNGKey(0)
    params = [jax.random.normal(key, s, dtype=np_dtype) for s in shapes]
    grads = [jax.random.normal(key, s, dtype=np_dtype) for s in shapes]
    state = [opt.init(params)]
    params_box = [params]

    @jax.jit
    def step(p, g, st):
        updates, st = opt.update(g, st, p)
        return optax.apply_updates(p, updates), st

    def call():
        params_box[0], state[0] = step(params_box[0], grads, state[0])
        return params_box[0]
    return (call, lambda r: jax.block_until_ready(r) if r is not None else None)


def _check(got: torch.Tensor, expected: np.ndarray, what: str) -> None:
    a, e = got.cpu().numpy(), expected
    same = (a.view(np.uint8) == e.view(np.uint8)).reshape(a.shape + (-1,)).all(-1) | (
        np.isnan(a) & np.isnan(e))
    if not same.all():
        sys.exit(f"adamop differs from the reference in {what}: {(~same).sum()} elements")


def bench_dense(n: int, dtype: str, reps: int, iters: int, rows: list) -> None:
    td = getattr(torch, dtype)
    w, g, m = (torch.randn(n, dtype=td, device="cuda") for _ in range(3))
    v = torch.rand(n, dtype=td, device="cuda")
    k = min(n, 1 << 20)                                   # check a prefix on the CPU
    host = [t[:k].cpu().numpy() for t in (w, g, m, v)]
    adamop.adam_update(w, g, m, v, lr=LR, out=w)
    s = adamop.AdamParams.from_kwargs(dict(lr=LR)).scalars(np.dtype(dtype))
    reference.adam_dense(host[0], host[1], host[2], host[3], host[0], s)
    for t, h, name in ((w, host[0], "weight"), (m, host[2], "mean"), (v, host[3], "var")):
        _check(t[:k], h, f"dense {name}")
    nbytes = 7 * n * w.element_size()
    sync = lambda _: _sync_torch()                         # noqa: E731
    providers = {
        "device copy": _copy_provider(n, td),
        "adamop": (lambda: adamop.adam_update(w, g, m, v, lr=LR, out=w), sync, nbytes),
        "torch.optim.Adam(fused=True)": (_torch_adam([w], fused=True), sync, nbytes),
        "torch.optim.Adam(foreach=True)": (_torch_adam([w], foreach=True), sync, nbytes),
    }
    ox = _optax([(n,)], dtype)
    if ox:
        providers["optax.adam (jax.jit)"] = (*ox, nbytes)
    _report(f"dense 2^{int(np.log2(n))}", providers, _run(providers, reps, iters), rows, dtype)


def bench_multi(count: int, size: int, dtype: str, reps: int, iters: int, rows: list) -> None:
    td = getattr(torch, dtype)
    ws, gs, ms = ([torch.randn(size, dtype=td, device="cuda") for _ in range(count)]
                  for _ in range(3))
    vs = [torch.rand(size, dtype=td, device="cuda") for _ in range(count)]
    host = [[t.cpu().numpy() for t in ts[:50]] for ts in (ws, gs, ms, vs)]
    adamop.adam_update_multi(ws, gs, ms, vs, lr=LR, out=ws)
    s = adamop.AdamParams.from_kwargs(dict(lr=LR)).scalars(np.dtype(dtype))
    for i in range(50):
        reference.adam_dense(host[0][i], host[1][i], host[2][i], host[3][i], host[0][i], s)
        _check(ws[i], host[0][i], f"multi weight {i}")
    nbytes = 7 * count * size * ws[0].element_size()
    sync = lambda _: _sync_torch()                         # noqa: E731
    providers = {
        "device copy": _copy_provider(count * size, td),
        "adamop": (lambda: adamop.adam_update_multi(ws, gs, ms, vs, lr=LR, out=ws), sync,
                   nbytes),
        # the same kernel with the per-tensor host work done once (what a bound executor can do)
        "adamop triton plan_dense_multi": (_planned(ws, gs, ms, vs, dtype), sync, nbytes),
        "torch.optim.Adam(fused=True)": (_torch_adam(ws, fused=True), sync, nbytes),
        "torch.optim.Adam(foreach=True)": (_torch_adam(ws, foreach=True), sync, nbytes),
    }
    ox = _optax([(size,)] * count, dtype)
    if ox:
        providers["optax.adam (jax.jit)"] = (*ox, nbytes)
    _report(f"{count} x {size}", providers, _run(providers, reps, iters), rows, dtype)


def _planned(ws, gs, ms, vs, dtype: str) -> Callable[[], None]:
    from adamop.backends import triton_backend
    s = adamop.AdamParams.from_kwargs(dict(lr=LR)).scalars(np.dtype(dtype))
    return triton_backend.plan_dense_multi([(w, g, m, v, w, s) for w, g, m, v in
                                            zip(ws, gs, ms, vs)])


def bench_lazy(n_rows: int, cols: int, nnz: int, dtype: str, reps: int, iters: int,
               rows: list) -> None:
    td = getattr(torch, dtype)
    gen = torch.Generator(device="cuda").manual_seed(0)
    w, m = (torch.randn(n_rows, cols, dtype=td, device="cuda") for _ in range(2))
    v = torch.rand(n_rows, cols, dtype=td, device="cuda")
    idx = torch.randperm(n_rows, device="cuda", generator=gen)[:nnz].sort().values
    gdata = torch.randn(nnz, cols, dtype=td, device="cuda")
    grad = RowSparseArray(gdata, idx, (n_rows, cols))       # validated once, outside the timing
    coo = grad.to_torch()
    host = [t[idx].cpu().numpy() for t in (w, m, v)]
    adamop.adam_update(w, grad, m, v, lr=LR, out=w)
    s = adamop.AdamParams.from_kwargs(dict(lr=LR)).scalars(np.dtype(dtype))
    reference.adam_lazy(host[0], gdata.cpu().numpy(), np.arange(nnz), host[1], host[2],
                        host[0], s)
    for t, h, name in ((w, host[0], "weight"), (m, host[1], "mean"), (v, host[2], "var")):
        _check(t[idx], h, f"lazy {name}")
    nbytes = 7 * nnz * cols * w.element_size() + 8 * nnz
    sync = lambda _: _sync_torch()                         # noqa: E731
    p = torch.nn.Parameter(w.clone())
    p.grad = coo.clone()
    sparse_adam = torch.optim.SparseAdam([p], lr=LR)
    providers = {
        "device copy": _copy_provider(n_rows * cols, td),
        "adamop": (lambda: adamop.adam_update(w, grad, m, v, lr=LR, out=w), sync, nbytes),
        "adamop (from a torch COO grad)": (
            lambda: adamop.adam_update(w, coo, m, v, lr=LR, out=w), sync, nbytes),
        "torch.optim.SparseAdam": (sparse_adam.step, sync, nbytes),
    }
    _report(f"lazy {n_rows} x {cols}, {nnz} rows", providers, _run(providers, reps, iters),
            rows, dtype)
    print("optax has no row-sparse update: no optax row for this case")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", choices=["dense", "multi", "lazy", "all"], default="all")
    ap.add_argument("--dtype", choices=["float16", "float32", "float64"], default="float32")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--small", action="store_true", help="1/16 of every size (a quick look)")
    ap.add_argument("--csv", help="append result rows to this CSV file")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device (torch.cuda.is_available() is False): nothing to measure")
        return 1
    k = 16 if args.small else 1
    rows: list = []
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"backend: {adamop.dispatch.select('cuda')[0].name}")
    if args.case in ("dense", "all"):
        bench_dense(2 ** 28 // k, args.dtype, args.reps, args.iters, rows)
    if args.case in ("multi", "all"):
        bench_multi(2000 // k, 65536, args.dtype, args.reps, args.iters, rows)
    if args.case in ("lazy", "all"):
        bench_lazy(8 * 2 ** 20 // k, 64, 200_000 // k, args.dtype, args.reps, args.iters, rows)
    if args.csv:
        new = not os.path.exists(args.csv)
        with open(args.csv, "a", newline="") as f:
            out = csv.DictWriter(f, fieldnames=list(rows[0]))
            if new:
                out.writeheader()
            out.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
