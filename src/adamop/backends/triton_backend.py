"""The GPU backend: launchers for :mod:`adamop.backends.triton_kernels` over torch CUDA tensors.

Same contract as :mod:`adamop.reference` (any strides; ``out`` may be the same view as an input;
``grad_indices`` ascending, unique int64), bit-identical results. Nothing here reads a value back
to the host, so an update can be captured in a CUDA graph (the batched launch needs one warm-up
call first, to build its device table: see :func:`adam_dense_multi`).

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
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..params import Scalars
from .triton_kernels import adam_dense_kernel, adam_multi_kernel, adam_rows_kernel, triton

__all__ = ["adam_dense", "adam_lazy", "adam_std", "adam_dense_multi", "plan_dense_multi"]

# Launch shapes. Elementwise and memory-bound: 2048 elements per program (16 per thread with
# 4 warps) keeps enough bytes in flight; to be tuned on the GPU with `adamop bench --device cuda`.
BLOCK = 2048
NUM_WARPS = 4
ROW_TILE = 2048            # elements per program of the row kernels (BLOCK_R * BLOCK_C)
MAX_BLOCK_C = 1024
_OPTIONS = dict(num_warps=NUM_WARPS, enable_fp_fusion=False)   # no FMA contraction, ever

_NAMES = ("lr", "beta1", "beta2", "epsilon", "wd", "rescale_grad", "clip_gradient")
_TABLE_CACHE: OrderedDict = OrderedDict()
_TABLE_CACHE_SIZE = 16
_CAPTURED: dict = {}       # tables a captured CUDA graph reads: kept alive for its lifetime
_MISSING = object()


# ---- arguments ---------------------------------------------------------------------------------
def _flags(t: torch.Tensor) -> dict:
    if t.dtype not in (torch.float16, torch.float32, torch.float64):
        raise TypeError(f"the triton backend updates float16, float32 and float64 tensors, got "
                        f"{t.dtype}; convert with .float()")
    return dict(IS_F16=t.dtype == torch.float16, IS_F64=t.dtype == torch.float64)


@functools.lru_cache(maxsize=4096)      # Scalars hash their bits: 2,000 equal ones cost one check
def _scalar_args(s: Scalars) -> tuple[float, ...]:
    """The seven scalars as Python floats, each exactly a float32 (the kernels take float32)."""
    values = tuple(float(getattr(s, name)) for name in _NAMES)
    for name, x in zip(_NAMES, values):
        if not (np.isnan(x) or float(np.float32(x)) == x):
            raise ValueError(f"scalar {name}={x!r} is not a float32 value; Scalars must come "
                             f"from AdamParams.scalars(dtype)")
    return values


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
def adam_dense(weight, grad, mean, var, out, s: Scalars) -> None:
    """The dense kernel (``reference.adam_dense``) over torch tensors of any strides."""
    n = weight.numel()
    if n == 0:
        return
    flags = _flags(weight)
    ops, finish = _stage((weight, grad, mean, var, out), (False, False, True, True, True),
                         _flat_stride)
    strides = [_flat_stride(a) for a in ops]
    with _guard(weight.device):
        adam_dense_kernel[(triton.cdiv(n, BLOCK),)](
            *ops, n, *strides, *_scalar_args(s), CLIP=s.clip, BLOCK=BLOCK, **flags, **_OPTIONS)
    finish()


# ---- row_sparse --------------------------------------------------------------------------------
def _rows(weight, grad_data, grad_indices, mean, var, out, s: Scalars, *, lazy: bool) -> None:
    shape = tuple(weight.shape)
    n_rows_total = shape[0] if shape else 1
    n_cols = weight.numel() // n_rows_total if n_rows_total else 0
    nnz = int(grad_indices.shape[0])                 # from the shape: no device read
    n_rows = nnz if lazy else n_rows_total
    if n_rows == 0 or n_cols == 0:
        return
    flags = _flags(weight)
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
            w, gd, idx, pos, m, v, o, n_rows, n_cols, col_blocks, *strides, *_scalar_args(s),
            LAZY=lazy, CLIP=s.clip, BLOCK_R=block_r, BLOCK_C=block_c, **flags, **_OPTIONS)
    finish()


def adam_lazy(weight, grad_data, grad_indices, mean, var, out, s: Scalars) -> None:
    """The lazy row_sparse kernel (``reference.adam_lazy``): one program per (row block, column
    block) of the grad's stored rows; no other row is read or written."""
    _rows(weight, grad_data, grad_indices, mean, var, out, s, lazy=True)


def adam_std(weight, grad_data, grad_indices, mean, var, out, s: Scalars) -> None:
    """The standard row_sparse kernel (``reference.adam_std``): every weight row, each finding
    its grad row (if any) through a device map built by a scatter of the sorted indices."""
    _rows(weight, grad_data, grad_indices, mean, var, out, s, lazy=False)


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
            raise RuntimeError("adam_update_multi is being captured in a CUDA graph with tensors "
                               "(or per-tensor scalars) it has not seen: call it once with the "
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


def _span(a: torch.Tensor) -> tuple[int, int]:
    """[first byte, last byte + 1) of the memory a view can touch."""
    last = sum((n - 1) * st for n, st in zip(a.shape, a.stride()))
    return a.data_ptr(), a.data_ptr() + (last + 1) * a.element_size()


def _overlapping(tasks: Sequence[tuple]) -> bool:
    """True if one task writes memory another task reads or writes: those must run in order."""
    spans = sorted((*_span(a), i, j >= 2) for i, t in enumerate(tasks)
                   for j, a in enumerate(t[:5]))
    open_spans: list = []
    for start, end, i, written in spans:
        open_spans = [sp for sp in open_spans if sp[0] > start]
        if any(k != i and (w or written) for _, k, w in open_spans):
            return True
        open_spans.append((end, i, written))
    return False


def _task_key(t: tuple) -> tuple:
    """What a plan depends on: addresses, size, dtype, clipping, and strides unless contiguous."""
    arrays = t[:5]
    return (*(a.data_ptr() for a in arrays), t[0].numel(), t[0].dtype, t[5].clip,
            *(None if a.is_contiguous() else a.stride() for a in arrays))


def _plan(tasks: Sequence[tuple], device: torch.device) -> list[tuple]:
    """The launches for ``tasks``: ('single', i) or ('batch', indices, tables, chunks, constexprs).

    Tasks that share memory with another task's writes run one by one, in order (as the
    reference does). Otherwise contiguous tasks of one dtype, clipping mode and alignment form a
    batch: a table of (w, g, m, v, out addresses, numel) and a chunk -> tensor map, on the device.
    """
    if _overlapping(tasks):
        return [("single", i) for i in range(len(tasks))]
    groups: dict = {}
    steps: list[tuple] = []
    for i, t in enumerate(tasks):
        if all(a.is_contiguous() for a in t[:5]):
            aligned = all(a.data_ptr() % 16 == 0 for a in t[:5])
            groups.setdefault((t[0].dtype, bool(t[5].clip), aligned), []).append(i)
        else:
            steps.append(("single", i))
    for (dtype, clip, aligned), idx in groups.items():
        if len(idx) == 1:
            steps.append(("single", idx[0]))
            continue
        table = np.array([[*(a.data_ptr() for a in tasks[i][:5]), tasks[i][0].numel()]
                          for i in idx], dtype=np.int64)
        chunks = -(-table[:, 5] // BLOCK)
        first = np.concatenate(([0], np.cumsum(chunks)[:-1])).astype(np.int64)
        owner = np.repeat(np.arange(len(idx), dtype=np.int32), chunks)
        tables = tuple(_to_device(x, device) for x in (table, owner, first))
        const = dict(DT=_TL_DTYPES[dtype], CLIP=clip, ALIGNED=aligned,
                     **_flags(tasks[idx[0]][0]))
        steps.append(("batch", idx, tables, int(chunks.sum()), const))
    return steps


def plan_dense_multi(tasks: Sequence[tuple]) -> Callable[[], None]:
    """Everything :func:`adam_dense_multi` decides for ``tasks``, done once: the returned function
    only launches kernels, with no per-tensor Python work. For callers that update the same
    tensors with the same scalars again and again (a bound executor): at 2,000 tensors the
    per-tensor work costs milliseconds, longer than the GPU takes for the update itself."""
    by_device: dict = {}
    for t in tasks:
        if t[0].numel():
            by_device.setdefault(str(t[0].device), []).append(t)
    launches: list[Callable[[], None]] = []
    for group in by_device.values():
        if len(group) == 1:
            launches.append(functools.partial(adam_dense, *group[0]))
            continue
        device = group[0][0].device
        plan = _cached(("plan", str(device)) + tuple(_task_key(t) for t in group),
                       lambda: _plan(group, device), device)
        for step in plan:
            if step[0] == "single":
                launches.append(functools.partial(adam_dense, *group[step[1]]))
                continue
            _, idx, (table, owner, first), n_chunks, const = step
            # Scalars compare by their bits (floats would take -0.0 for 0.0)
            each = [group[i][5] for i in idx]
            per_tensor = any(sc != each[0] for sc in each)
            scalars = [_scalar_args(sc) for sc in each]
            table_s = (_cached(("scalars", str(device)) + tuple(each), lambda: _to_device(
                np.array(scalars, dtype=np.float32), device), device) if per_tensor else table)
            args = (table, owner, first, table_s) + ((0.0,) * 7 if per_tensor else scalars[0])
            launches.append(functools.partial(
                _launch_batch, device, n_chunks, args, dict(PER_TENSOR=per_tensor, **const)))

    def run() -> None:
        for launch in launches:
            launch()
    return run


def _launch_batch(device: torch.device, n_chunks: int, args: tuple, const: dict) -> None:
    with _guard(device):
        adam_multi_kernel[(n_chunks,)](*args, BLOCK=BLOCK, **const, **_OPTIONS)


def adam_dense_multi(tasks: Sequence[tuple]) -> None:
    """Batched dense updates, ``tasks`` = ``(weight, grad, mean, var, out, s)`` tuples.

    Contiguous tensors of one dtype and device (and one clipping mode) go to one launch of
    ``adam_multi_kernel``, one program per BLOCK-sized chunk of any tensor, so 2,000 small
    tensors keep the GPU as busy as one large one. Scalars shared by all tensors are kernel
    arguments; different ones travel in a per-tensor table. The plan and its address tables are
    built on the first call and cached, so later calls with the same tensors read nothing from
    the host (and can be captured in a CUDA graph). Other tasks run one launch each; tasks that
    share memory with another's writes run one by one, in order.
    """
    plan_dense_multi(tasks)()


_TL_DTYPES = {torch.float16: triton.language.float16, torch.float32: triton.language.float32,
              torch.float64: triton.language.float64}
