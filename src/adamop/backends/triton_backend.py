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
from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..params import Scalars
from .triton_kernels import adam_dense_kernel, adam_multi_kernel, adam_rows_kernel, triton

__all__ = ["adam_dense", "adam_lazy", "adam_std", "adam_dense_multi"]

# Launch shapes. Elementwise and memory-bound: 2048 elements per program (16 per thread with
# 4 warps) keeps enough bytes in flight; to be tuned on the GPU with benchmarks/gpu/.
BLOCK = 2048
NUM_WARPS = 4
ROW_TILE = 2048            # elements per program of the row kernels (BLOCK_R * BLOCK_C)
MAX_BLOCK_C = 1024
_OPTIONS = dict(num_warps=NUM_WARPS, enable_fp_fusion=False)   # no FMA contraction, ever

_NAMES = ("lr", "beta1", "beta2", "epsilon", "wd", "rescale_grad", "clip_gradient")
_TABLE_CACHE: OrderedDict = OrderedDict()
_TABLE_CACHE_SIZE = 16


# ---- arguments ---------------------------------------------------------------------------------
def _flags(t: torch.Tensor) -> dict:
    if t.dtype not in (torch.float16, torch.float32, torch.float64):
        raise TypeError(f"the triton backend updates float16, float32 and float64 tensors, got "
                        f"{t.dtype}; convert with .float()")
    return dict(IS_F16=t.dtype == torch.float16, IS_F64=t.dtype == torch.float64)


def _scalar_args(s: Scalars) -> tuple[float, ...]:
    """The seven scalars as Python floats, each exactly a float32 (the kernels take float32)."""
    values = tuple(float(getattr(s, name)) for name in _NAMES)
    for name, x in zip(_NAMES, values):
        if not (np.isnan(x) or float(np.float32(x)) == x):
            raise ValueError(f"scalar {name}={x!r} is not a float32 value; Scalars must come "
                             f"from AdamParams.scalars(dtype)")
    return values


def _guard(t: torch.Tensor) -> contextlib.AbstractContextManager:
    """Launch on the tensors' own GPU, whatever the current device is."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


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
    with _guard(weight):
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
    with _guard(weight):
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


def _cached(key: tuple, build: Callable[[], Any]) -> Any:
    hit = _TABLE_CACHE.get(key)
    if hit is None:
        hit = _TABLE_CACHE[key] = build()
        while len(_TABLE_CACHE) > _TABLE_CACHE_SIZE:
            _TABLE_CACHE.popitem(last=False)
    else:
        _TABLE_CACHE.move_to_end(key)
    return hit


def _overlapping(tasks: Sequence[tuple]) -> bool:
    """True if one task writes memory another task reads or writes: those must run in order."""
    spans = []
    for i, task in enumerate(tasks):
        for j, a in enumerate(task[:5]):
            start = a.data_ptr()
            spans.append((start, start + a.numel() * a.element_size(), i, j >= 2))
    spans.sort()
    open_spans: list = []
    for start, end, i, written in spans:
        open_spans = [sp for sp in open_spans if sp[0] > start]
        if any(k != i and (w or written) for _, k, w in open_spans):
            return True
        open_spans.append((end, i, written))
    return False


def _geometry(tasks: Sequence[tuple], device: torch.device) -> tuple | None:
    """(table, chunk -> tensor, first chunk of each tensor) on the device, or None when the tasks
    overlap. Cached by every address and size, so a training loop builds it once."""
    key = ("geometry", str(device)) + tuple(
        x for t in tasks for x in (*(a.data_ptr() for a in t[:5]), t[0].numel()))

    def build():
        if _overlapping(tasks):
            return None
        table = np.array([[*(a.data_ptr() for a in t[:5]), t[0].numel()] for t in tasks],
                         dtype=np.int64)
        chunks = -(-table[:, 5] // BLOCK)
        first = np.concatenate(([0], np.cumsum(chunks)[:-1])).astype(np.int64)
        owner = np.repeat(np.arange(len(tasks), dtype=np.int32), chunks)
        return (_to_device(table, device), _to_device(owner, device), _to_device(first, device),
                int(chunks.sum()))
    return _cached(key, build)


def adam_dense_multi(tasks: Sequence[tuple]) -> None:
    """Batched dense updates, ``tasks`` = ``(weight, grad, mean, var, out, s)`` tuples.

    Contiguous tensors of one dtype and device (and one clipping mode) go to one launch of
    ``adam_multi_kernel``, one program per BLOCK-sized chunk of any tensor, so 2,000 small
    tensors keep the GPU as busy as one large one. Scalars shared by all tensors are kernel
    arguments; different ones travel in a per-tensor table. The address table is built on the
    first call and cached, so later calls with the same tensors read nothing from the host (and
    can be captured in a CUDA graph). Other tasks run one launch each.
    """
    groups: dict = {}
    for task in tasks:
        w = task[0]
        if w.numel() == 0:
            continue
        if all(a.is_contiguous() for a in task[:5]):
            aligned = all(a.data_ptr() % 16 == 0 for a in task[:5])
            key = (w.dtype, str(w.device), bool(task[5].clip), aligned)
            groups.setdefault(key, []).append(task)
        else:
            adam_dense(*task)
    for (dtype, _, clip, aligned), group in groups.items():
        if len(group) == 1:
            adam_dense(*group[0])
            continue
        device = group[0][0].device
        geometry = _geometry(group, device)
        if geometry is None:                       # the tasks share memory: keep their order
            for task in group:
                adam_dense(*task)
            continue
        table, owner, first, n_chunks = geometry
        scalars = [_scalar_args(t[5]) for t in group]
        per_tensor = any(sc != scalars[0] for sc in scalars)
        table_s = (_cached(("scalars", str(device)) + tuple(scalars), lambda: _to_device(
            np.array(scalars, dtype=np.float32), device)) if per_tensor else table)
        args = (0.0,) * 7 if per_tensor else scalars[0]
        with _guard(group[0][0]):
            adam_multi_kernel[(n_chunks,)](
                table, owner, first, table_s, *args, DT=_TL_DTYPES[dtype], PER_TENSOR=per_tensor,
                ALIGNED=aligned, CLIP=clip, BLOCK=BLOCK, **_flags(group[0][0]), **_OPTIONS)


_TL_DTYPES = {torch.float16: triton.language.float16, torch.float32: triton.language.float32,
              torch.float64: triton.language.float64}
