"""The GPU backend: launchers for :mod:`adamop.backends.triton_kernels` over torch CUDA tensors.

Same contract as :mod:`adamop.reference` (any strides; ``out`` may be the same view as an input;
``grad_indices`` ascending, unique int64; rules handed in), bit-identical results. Nothing here
reads a value back to the host, so an update can be captured in a CUDA graph (a batch needs one
warm-up call first, to put its tables on the device: see :func:`adam_dense_batch`).

Layout: a tensor whose elements are ``base + i * stride`` in row-major order (every contiguous
tensor, and slices such as ``x[::2]``) is passed as it is; any other layout is staged through a
contiguous copy, copied back afterwards if the kernel writes it.

With ``TRITON_INTERPRET=1`` set before this module is imported, the kernels run in Triton's
interpreter on CPU tensors (how the tests check them without a GPU).
"""
from __future__ import annotations

import contextlib
import functools
from collections import OrderedDict
from types import SimpleNamespace
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..params import Scalars
from ..reference import PathRule
from .triton_kernels import adam_dense_kernel, adam_multi_kernel, adam_rows_kernel, triton

__all__ = ["adam_dense", "adam_rows", "adam_dense_batch", "mp_adam_dense", "mp_adam_dense_batch"]

# Launch shapes. Elementwise and memory-bound: 2048 elements per program (16 per thread with
# 4 warps) keeps enough bytes in flight; to be tuned on the GPU with `adamop bench --device cuda`.
BLOCK = 2048
NUM_WARPS = 4
ROW_TILE = 2048            # elements per program of the row kernels (BLOCK_R * BLOCK_C)
MAX_BLOCK_C = 1024
_OPTIONS = dict(num_warps=NUM_WARPS, enable_fp_fusion=False)   # no FMA contraction, ever

_TABLE_CACHE: OrderedDict = OrderedDict()
_TABLE_CACHE_SIZE = 16
_CAPTURED: dict = {}       # tables a captured CUDA graph reads: kept alive for its lifetime
_MISSING = object()


# ---- arguments ---------------------------------------------------------------------------------
def _flags(dtype: torch.dtype) -> dict:
    if dtype not in (torch.float16, torch.float32, torch.float64):
        raise TypeError(f"the triton backend updates float16, float32 and float64 tensors, got "
                        f"{dtype}; convert with .float()")
    return dict(IS_F16=dtype == torch.float16, IS_F64=dtype == torch.float64)


@functools.lru_cache(maxsize=4096)      # Scalars hash their bits: 2,000 equal ones cost one check
def _scalar_args(s: Scalars) -> tuple[float, ...]:
    """``Scalars.floats``, checked to be float32 values (the kernels take float32)."""
    for name, x in zip(s.names, s.floats):
        if not (np.isnan(x) or float(np.float32(x)) == x):
            raise ValueError(f"scalar {name}={x!r} is not a float32 value; Scalars must come "
                             f"from the op's parameters (.scalars(dtype))")
    return s.floats


def _guard(device: torch.device) -> contextlib.AbstractContextManager:
    """Launch on the tensors' own GPU, whatever the current device is."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _flat_stride(t: torch.Tensor) -> int | None:
    """s such that row-major element i of t is at storage offset i*s, or None if there is none."""
    stride, expected = None, None
    for size, st in zip(reversed(t.shape), reversed(t.stride())):
        if size == 1:
            continue
        if stride is None:
            stride = st
        elif st != expected:
            return None
        expected = st * size
    return 1 if stride is None else stride


def _row_strides(t: torch.Tensor) -> tuple[int, int] | None:
    """(row stride, column stride) viewing t as (shape[0], rest), or None if it cannot be."""
    if t.dim() <= 1:
        return (t.stride(0) if t.dim() else 1), 1
    cs = _flat_stride(t[0]) if t.shape[0] else 1
    return None if cs is None else (t.stride(0), cs)


def _stage(arrays: Sequence[torch.Tensor], written: Sequence[bool],
           addressable: Callable[[torch.Tensor], Any]) -> tuple[list, Callable[[], None]]:
    """Kernel operands for ``arrays``: an array the kernel cannot address becomes a contiguous
    copy (one copy per distinct view, so identical views stay aliased), and the copies of written
    arrays are copied back by the returned function."""
    copies: dict = {}
    dirty: dict = {}
    operands = []
    for a, wr in zip(arrays, written):
        if addressable(a) is not None:
            operands.append(a)
            continue
        key = (a.data_ptr(), tuple(a.shape), a.stride())
        if key not in copies:
            copies[key] = (a, a.contiguous())
        if wr:
            dirty[key] = copies[key]
        operands.append(copies[key][1])

    def finish() -> None:
        for original, copy in dirty.values():
            original.copy_(copy)
    return operands, finish


# ---- dense -------------------------------------------------------------------------------------
def adam_dense(weight, grad, mean, var, out, s: Scalars, rule: PathRule) -> None:
    """The dense kernel (``reference.adam_dense``) over torch tensors of any strides."""
    n = weight.numel()
    if n == 0:
        return
    flags = _flags(weight.dtype)
    ops, finish = _stage((weight, grad, mean, var, out), (False, False, True, True, True),
                         _flat_stride)
    strides = [_flat_stride(a) for a in ops]
    with _guard(weight.device):
        adam_dense_kernel[(triton.cdiv(n, BLOCK),)](
            *ops, n, *strides, *_scalar_args(s), CLIP=s.clip,
            V_SQUARE_FIRST=rule.v_square_first(s.clip), BLOCK=BLOCK, **flags, **_OPTIONS)
    finish()


# ---- row_sparse --------------------------------------------------------------------------------
def adam_rows(weight, grad_data, grad_indices, mean, var, out, s: Scalars,
              rule: PathRule) -> None:
    """A row_sparse kernel (``reference.adam_rows``). Lazy: one program per (row block, column
    block) of the grad's stored rows, no other row read or written. Standard: every weight row,
    each finding its grad row (if any) through a device map built by a scatter of the sorted
    indices. Row indices outside the table are masked off, never addressed."""
    lazy = rule.rows == "stored"
    shape = tuple(weight.shape)
    n_rows_total = shape[0] if shape else 1
    n_cols = weight.numel() // n_rows_total if n_rows_total else 0
    nnz = int(grad_indices.shape[0])                 # from the shape: no device read
    n_rows = nnz if lazy else n_rows_total
    if n_rows == 0 or n_cols == 0:
        return
    flags = _flags(weight.dtype)
    ops, finish = _stage((weight, mean, var, out, grad_data), (False, True, True, True, False),
                         _row_strides)
    w, m, v, o, gd = ops
    idx = grad_indices.contiguous()
    if lazy:
        pos = idx                                        # unused by the lazy kernel
    else:
        # pos[r] = the grad row of weight row r, or -1: a device scatter, no host round trip
        pos = torch.full((n_rows_total,), -1, dtype=torch.int64, device=weight.device)
        if nnz:
            pos.scatter_(0, idx, torch.arange(nnz, dtype=torch.int64, device=weight.device))
    if nnz == 0:
        gd, idx = w, pos                                 # never loaded; any valid address
    block_c = min(MAX_BLOCK_C, triton.next_power_of_2(n_cols))
    block_r = max(1, ROW_TILE // block_c)
    col_blocks = triton.cdiv(n_cols, block_c)
    grid = (triton.cdiv(n_rows, block_r) * col_blocks,)
    strides = [x for a in (w, gd, m, v, o) for x in _row_strides(a)]
    with _guard(weight.device):
        adam_rows_kernel[grid](
            w, gd, idx, pos, m, v, o, n_rows, n_cols, col_blocks, n_rows_total, *strides,
            *_scalar_args(s), LAZY=lazy, CLIP=s.clip, V_SQUARE_FIRST=rule.v_square_first(s.clip),
            BLOCK_R=block_r, BLOCK_C=block_c, **flags, **_OPTIONS)
    finish()


# ---- batched -----------------------------------------------------------------------------------
def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host table on the device; from pinned memory, so the copy does not block the host."""
    host = torch.from_numpy(array)
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


def _capturing(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def _cached(key: tuple, build: Callable[[], Any], device: torch.device) -> Any:
    """A device table from the cache, built on a miss. While a CUDA graph is being captured a
    miss cannot be served (the host-to-device copy would be replayed from freed memory), and a
    hit is kept alive as long as the process, since the graph holds its address."""
    hit = _TABLE_CACHE.get(key, _MISSING)
    if _capturing(device):
        if hit is _MISSING:
            raise RuntimeError("an update is being captured in a CUDA graph with tensors (or "
                               "per-tensor scalars) it has not run with: run it once with the "
                               "same arguments before the capture, as torch.cuda.graphs advises "
                               "for any warm-up")
        _CAPTURED[key] = hit
    if hit is _MISSING:
        hit = _TABLE_CACHE[key] = build()
        while len(_TABLE_CACHE) > _TABLE_CACHE_SIZE:
            _TABLE_CACHE.popitem(last=False)
    else:
        _TABLE_CACHE.move_to_end(key)
    return hit


def _launches(batch: Any, device: torch.device, clips: np.ndarray) -> list[tuple]:
    """The launches of a batch, made once per clipping pattern: tensors of one clipping mode and
    alignment share one launch of ``adam_multi_kernel``, with a table of (the roles' addresses,
    numel) and a chunk -> tensor map on the device."""
    aligned = (batch.addresses % 16 == 0).all(axis=1)
    launches = []
    for clip in (False, True):
        for align in (True, False):
            idx = np.flatnonzero((clips == clip) & (aligned == align) & (batch.sizes > 0))
            if not len(idx):
                continue
            table = np.concatenate([batch.addresses[idx], batch.sizes[idx, None]], axis=1)
            chunks = -(-batch.sizes[idx] // BLOCK)
            first = np.concatenate(([0], np.cumsum(chunks)[:-1])).astype(np.int64)
            owner = np.repeat(np.arange(len(idx), dtype=np.int32), chunks)
            tables = tuple(_to_device(np.ascontiguousarray(x), device)
                           for x in (table, owner, first))
            launches.append((idx, tables, int(chunks.sum()), bool(clip), bool(align)))
    return launches


def adam_dense_batch(batch: Any, scalars: Sequence[Scalars], rule: PathRule) -> None:
    """A plan's batch of contiguous dense updates (:class:`adamop.plan.DenseBatch`): one launch
    of ``adam_multi_kernel`` per clipping mode and alignment, one program per BLOCK-sized chunk
    of any tensor, so 2,000 small tensors keep the GPU as busy as one large one.

    The device tables are built on the batch's first run and kept with it, so a repeated step
    reads nothing from the host and launches without per-tensor work (and can be captured in a
    CUDA graph). Scalars shared by all tensors are kernel arguments; different ones travel in a
    per-tensor table, cached by their values.
    """
    _run_batch(batch, scalars, rule, mp=False)


def mp_adam_dense_batch(batch: Any, scalars: Sequence[Scalars], rule: PathRule) -> None:
    """A batch of ``mp_adam_update`` (roles: float16 weight, grad, mean, var, float32 master,
    float16 out), as :func:`adam_dense_batch`: the same kernel reads and writes the master copy
    and also stores it rounded to float16."""
    _run_batch(batch, scalars, rule, mp=True)


def mp_adam_dense(weight, grad, mean, var, weight32, out, s: Scalars, rule: PathRule) -> None:
    """One ``mp_adam_update`` of any layout: through contiguous copies where needed, copied back
    afterwards (mean, var, weight32, out)."""
    ops = [t.contiguous() for t in (grad, mean, var, weight32, out)]
    g, m, v, w32, o = ops
    batch = SimpleNamespace(
        addresses=np.array([[t.data_ptr() for t in (o, g, m, v, w32, o)]], np.int64),
        sizes=np.array([o.numel()], np.int64), device=str(o.device), prepared={},
        dtypes=tuple(np.dtype(str(t.dtype)[6:]) for t in (o, g, m, v, w32, o)))
    _run_batch(batch, [s], rule, mp=True)
    for target, copy in zip((mean, var, weight32, out), (m, v, w32, o)):
        if copy is not target:
            target.copy_(copy)


def _run_batch(batch: Any, scalars: Sequence[Scalars], rule: PathRule, *, mp: bool) -> None:
    if not len(batch.sizes):
        return
    device = torch.device(batch.device)
    first = scalars[0]
    # the distinct Scalars objects and each task's (C-level maps: no Python per task)
    ids = np.fromiter(map(id, scalars), np.int64, len(scalars))
    unique, rows = np.unique(ids, return_inverse=True)
    by_id = dict(zip(map(id, scalars), scalars))
    distinct = [by_id[i] for i in unique.tolist()]
    shared = all(s == first for s in distinct)     # (Scalars compare by their bits)
    clips = np.array([s.clip for s in distinct], bool)[rows]
    key = clips.tobytes()
    prepared = batch.prepared.setdefault("triton", {})
    launches = prepared.get(key)
    if launches is None:
        if _capturing(device):
            raise RuntimeError("an update is being captured in a CUDA graph before it has run "
                               "once with these tensors: run it once before the capture")
        launches = prepared[key] = _launches(batch, device, clips)
    elif _capturing(device):
        # a captured graph reads these tables: kept for the process, since a planner may drop
        # the plan that holds them
        _CAPTURED[("launches", id(launches))] = launches
    # adam_update: every role of one dtype; mp_adam_update: float32 arithmetic on the master
    dt, gdt = (np.dtype(np.float32), batch.dtypes[1]) if mp else (batch.dtypes[0],) * 2
    flags = _flags(_TORCH_DTYPES[dt])
    for idx, (table, owner, first_chunk), n_chunks, clip, aligned in launches:
        if shared:
            table_s, args = table, _scalar_args(first)
        else:   # a per-tensor table, cached by its bytes (a CUDA graph replays its address)
            values = np.array([_scalar_args(s) for s in distinct], np.float32)[rows[idx]]
            table_s = _cached(("scalars", str(device), values.tobytes()),
                              lambda: _to_device(values, device), device)
            args = (0.0,) * len(first.floats)
        const = dict(DT=_TL_DTYPES[dt], GDT=_TL_DTYPES[gdt], MP=mp, PER_TENSOR=not shared,
                     ALIGNED=aligned, CLIP=clip, V_SQUARE_FIRST=rule.v_square_first(clip),
                     **flags)
        with _guard(device):
            adam_multi_kernel[(n_chunks,)](table, owner, first_chunk, table_s, *args,
                                           BLOCK=BLOCK, **const, **_OPTIONS)


_TORCH_DTYPES = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32,
                 np.dtype(np.float64): torch.float64}
_TL_DTYPES = {np.dtype(np.float16): triton.language.float16,
              np.dtype(np.float32): triton.language.float32,
              np.dtype(np.float64): triton.language.float64}
