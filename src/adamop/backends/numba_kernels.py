"""The Numba kernels: one ``prange`` loop per path, the math of :mod:`adamop.reference`.

Every kernel is compiled on first call (not at import) with ``parallel=True, cache=True`` and
without ``fastmath``: LLVM then keeps each multiply, add, divide and sqrt a separately rounded IEEE
operation (no FMA contraction, no reassociation), which is what bit-exactness needs.

float16 is carried as its ``uint16`` bits. Each value is widened to float32 (exact), every
operation is done in float32 and rounded back to the nearest float16 (ties to even) before the
next one uses it. float32 has 24 >= 2*11 + 2 bits, so this equals native float16 arithmetic and
NumPy's float16 ufuncs (SPEC B §1.3). The conversions are the CPU's F16C instructions where it
has them, else integer bit operations and selects (both vectorise).

Arrays are 1-D (dense) or 2-D ``(rows, row_length)`` (row_sparse) of any layout; ``sc`` is
``Scalars.vector``: ``lr, beta1, beta2, epsilon, wd, rescale_grad, clip_gradient`` in the compute
type (float32 for float16 arrays: every float16 scalar is a float32 exactly). ``clip`` and
``square_first`` come from the scalars and the path's rule (:class:`adamop.reference.PathRule`).
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import carray, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from .numba_half import (  # noqa: F401
    HARDWARE_HALF,
    _float_to_half_f16c,
    _float_to_half_soft,
    _half_to_float_f16c,
    _half_to_float_soft,
    float_to_half,
    half_to_float,
    round_half,
)

_JIT = dict(parallel=True, cache=True)      # never fastmath: it would allow FMA and reordering
# Loop bodies are inlined at Numba IR level: a call left in a loop stops LLVM's vectoriser
# (measured: no vsqrtps/vdivps, 2-4x slower). The float16 conversions stay calls: inlining their
# ~15 copies per element made one compile take ~50 s.
_INLINE = dict(cache=True, inline="always")
_CALL = dict(cache=True)

_CHUNK = 1 << 15   # elements per work item of the batched kernel (~128 KiB per fp32 array)
_STD_BLOCK = 1 << 14   # elements per work item of the standard row_sparse kernel


# ---- raw pointers ------------------------------------------------------------------------------
@intrinsic
def _pointer(typingctx, address, like):
    """An int64 address -> a pointer to ``like``'s dtype (for :func:`numba.carray`)."""
    ptr_type = types.CPointer(like.dtype)

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], context.get_value_type(ptr_type))
    return ptr_type(address, like), codegen


# ---- loads, stores and rounding, specialised on the array dtype at compile time --------------
def _ld(a, i):
    """a[i] in the compute type."""


def _st(a, i, x):
    """a[i] = x from the compute type."""


def _r(x, like):
    """x rounded to ``like``'s dtype (float16 arrays round; float32/64 are already exact)."""


@overload(_ld, inline="always")
def _ld_impl(a, i):
    if a.dtype == types.uint16:
        return lambda a, i: half_to_float(a[i])
    return lambda a, i: a[i]


@overload(_st, inline="always")
def _st_impl(a, i, x):
    if a.dtype == types.uint16:
        def store_half(a, i, x):
            a[i] = float_to_half(x)
        return store_half

    def store(a, i, x):
        a[i] = x
    return store


@overload(_r, inline="always")
def _r_impl(x, like):
    if like.dtype == types.uint16:
        return lambda x, like: round_half(x)
    return lambda x, like: x


# ---- the update of one element ------------------------------------------------------------
def _one_minus(b, like):
    """``1 - b`` in the compute type of ``b``, rounded to ``like``'s dtype (reference._step)."""


@overload(_one_minus, inline="always")
def _one_minus_impl(b, like):
    # 1 - b is exact in the next wider type (b has at most 24 significant bits), so one rounding
    if b == types.float32:
        return lambda b, like: _r(np.float32(1.0 - np.float64(b)), like)
    return lambda b, like: _r(1.0 - b, like)


@njit(**_INLINE)
def _consts(sc, h):
    """The scalars as locals, read once per range rather than per element (LLVM cannot hoist
    loads from ``sc`` past the stores to arrays it cannot prove distinct): ``lr, beta1, beta2,
    epsilon, wd, rescale_grad, clip_gradient, 1-beta1, 1-beta2``."""
    return (sc[0], sc[1], sc[2], sc[3], sc[4], sc[5], sc[6], _one_minus(sc[1], h),
            _one_minus(sc[2], h))


@njit(**_INLINE)
def _prologue(gi, wi, k, h):
    """The gradient the moments see, before clipping: ``grad*rg + w*wd`` (reference._prologue)."""
    return _r(_r(gi * k[5], h) + _r(wi * k[4], h), h)


@njit(**_INLINE)
def _tail(w, g, m, v, k, clip, square_first, h):
    """Clip, the moments and the new weight from the rescaled gradient ``g`` (reference._step);
    ``k`` is :func:`_consts`."""
    c = k[6]
    if clip:
        # (g > c) ? c : ((g < -c) ? -c : g): NaN passes, +-inf become +-c
        g = c if g > c else (-c if g < -c else g)
    m = _r(_r(k[1] * m, h) + _r(k[7] * g, h), h)
    if square_first:
        t = _r(k[8] * _r(g * g, h), h)
    else:
        t = _r(_r(k[8] * g, h) * g, h)
    v = _r(_r(k[2] * v, h) + t, h)
    w = _r(w - _r(_r(k[0] * m, h) / _r(_r(np.sqrt(v), h) + k[3], h), h), h)
    return w, m, v


@njit(**_INLINE)
def _dense_range(w, g, m, v, out, lo, hi, sc, clip, square_first):
    k = _consts(sc, w)
    # unsigned bounds: Numba then skips negative-index wraparound, which otherwise stops LLVM
    # from vectorising the loop (measured: 2-3x slower)
    for i in range(np.uint64(lo), np.uint64(hi)):
        wi = _ld(w, i)
        gi = _prologue(_ld(g, i), wi, k, w)
        wn, mn, vn = _tail(wi, gi, _ld(m, i), _ld(v, i), k, clip, square_first, w)
        _st(m, i, mn)
        _st(v, i, vn)
        _st(out, i, wn)


# ---- kernels ------------------------------------------------------------------------------
@njit(**_JIT)
def dense(w, g, m, v, out, sc, clip, square_first):
    """The dense update over 1-D arrays; ``out`` is written last (it may be any input)."""
    n = w.shape[0]
    for k in prange((n + _CHUNK - 1) // _CHUNK):
        _dense_range(w, g, m, v, out, k * _CHUNK, min(n, (k + 1) * _CHUNK), sc, clip,
                     square_first)


@njit(**_JIT)
def dense_inplace(w, g, m, v, sc, clip, square_first):
    """``dense`` with ``out=w``: one pointer for both, so LLVM needs no overlap check."""
    n = w.shape[0]
    for k in prange((n + _CHUNK - 1) // _CHUNK):
        _dense_range(w, g, m, v, w, k * _CHUNK, min(n, (k + 1) * _CHUNK), sc, clip,
                     square_first)


@njit(**_JIT)
def dense_multi(addr, items, rows, sc, clip, square_first, like):
    """Many contiguous tensors of one dtype in one parallel loop.

    ``addr[t]`` holds the data addresses of task t's weight, grad, mean, var and out (the caller
    keeps the arrays alive); ``items[k] = (task, start, stop)`` is one chunk of work;
    ``sc[rows[t]]`` and ``clip[rows[t]]`` are task t's scalars.
    """
    for k in prange(items.shape[0]):
        t, lo, hi = items[k, 0], items[k, 1], items[k, 2]
        row = rows[t]
        w = carray(_pointer(addr[t, 0], like), hi)
        g = carray(_pointer(addr[t, 1], like), hi)
        m = carray(_pointer(addr[t, 2], like), hi)
        v = carray(_pointer(addr[t, 3], like), hi)
        if addr[t, 4] == addr[t, 0]:
            _dense_range(w, g, m, v, w, lo, hi, sc[row], clip[row] != 0, square_first[row] != 0)
        else:
            out = carray(_pointer(addr[t, 4], like), hi)
            _dense_range(w, g, m, v, out, lo, hi, sc[row], clip[row] != 0,
                         square_first[row] != 0)


@njit(**_INLINE)
def _mp_range(w32, g, m, v, w16, lo, hi, sc, clip, square_first):
    """The multi-precision update of elements [lo, hi): the float32 master copy ``w32``, mean
    and var as in ``_dense_range`` (the grad widened from its own dtype), then the new master
    rounded to float16 (nearest even) into ``w16`` (its bits)."""
    k = _consts(sc, w32)
    for i in range(np.uint64(lo), np.uint64(hi)):
        wi = w32[i]
        gi = _prologue(_ld(g, i), wi, k, w32)
        wn, mn, vn = _tail(wi, gi, m[i], v[i], k, clip, square_first, w32)
        m[i] = mn
        v[i] = vn
        w32[i] = wn
        _st(w16, i, wn)


@njit(**_JIT)
def mp_multi(addr, items, rows, sc, clip, square_first, glike):
    """``dense_multi`` for the multi-precision op: ``addr[t]`` holds task t's float16 weight,
    grad (of ``glike``'s dtype), float32 mean, var and master copy, and float16 out. The float16
    weight is only validated, never read: the master copy is what is updated."""
    f32 = np.empty(0, np.float32)
    f16 = np.empty(0, np.uint16)
    for k in prange(items.shape[0]):
        t, lo, hi = items[k, 0], items[k, 1], items[k, 2]
        row = rows[t]
        _mp_range(carray(_pointer(addr[t, 4], f32), hi), carray(_pointer(addr[t, 1], glike), hi),
                  carray(_pointer(addr[t, 2], f32), hi), carray(_pointer(addr[t, 3], f32), hi),
                  carray(_pointer(addr[t, 5], f16), hi), lo, hi, sc[row], clip[row] != 0,
                  square_first[row] != 0)


@njit(**_INLINE)
def _row(w, gd, m, v, out, r, gr, n, kc, clip, square_first):
    """Row r of the table with grad row gr (gr < 0: no grad row, ``g = w*wd``); ``kc`` is
    :func:`_consts`. Indexing the 2-D arrays with unsigned column indices (no row views, no
    wraparound) lets LLVM vectorise."""
    for j in range(np.uint64(n)):
        wi = _ld(w, (r, j))
        if gr >= 0:
            gi = _prologue(_ld(gd, (gr, j)), wi, kc, w)
        else:
            gi = _r(wi * kc[4], w)
        wn, mn, vn = _tail(wi, gi, _ld(m, (r, j)), _ld(v, (r, j)), kc, clip, square_first, w)
        _st(m, (r, j), mn)
        _st(v, (r, j), vn)
        _st(out, (r, j), wn)


@intrinsic
def _prefetch(typingctx, a, r, c):
    """Hint the CPU to fetch element (r, c) of 2-D array ``a`` into cache, for writing."""
    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1], args[2]],
                                       wraparound=False)
        i8p = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        fnty = ir.FunctionType(ir.VoidType(), [i8p.type] + [ir.IntType(32)] * 3)
        fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p.type], fnty)
        i32 = ir.IntType(32)
        # read-write, high temporal locality, data cache
        builder.call(fn, [i8p, ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return types.void(a, types.int64, types.int64), codegen


# Rows ahead to prefetch in the lazy kernel. The rows sit at random places in large tables, so
# the loop waits on DRAM latency, not bandwidth; fetching the row 8 steps ahead keeps more
# misses in flight (1M x 64 float32, 20,000 rows: 0.76 -> 0.41 ms on the 2-core machine).
_AHEAD = 8


@njit(**_INLINE)
def _prefetch_ahead(w, m, v, idx, k):
    """Prefetch the w, m and v rows that step k + _AHEAD of a lazy loop will update."""
    if k + _AHEAD < idx.shape[0]:
        ahead = idx[k + _AHEAD]
        line = max(1, 64 // w.itemsize)   # elements per 64-byte cache line
        for c in range(0, w.shape[1], line):
            _prefetch(w, ahead, c)
            _prefetch(m, ahead, c)
            _prefetch(v, ahead, c)


@njit(cache=True)
def indices_ok(idx, rows):
    """True if ``idx`` is strictly ascending and within ``[0, rows)``: what the row kernels need
    to stay inside the table and free of races (a RowSparseArray guarantees it; this check keeps
    a kernel from writing out of bounds whatever was done to its indices since)."""
    for k in range(idx.shape[0]):
        if idx[k] < 0 or idx[k] >= rows or (k and idx[k] <= idx[k - 1]):
            return False
    return True


@njit(**_JIT)
def lazy(w, gd, idx, m, v, out, sc, clip, square_first):
    """Lazy row_sparse: only rows ``idx`` change."""
    n, nnz = w.shape[1], idx.shape[0]
    kc = _consts(sc, w)
    for k in prange(nnz):
        _prefetch_ahead(w, m, v, idx, k)
        _row(w, gd, m, v, out, idx[k], k, n, kc, clip, square_first)


@njit(**_JIT)
def std(w, gd, idx, m, v, out, sc, clip, square_first):
    """Standard row_sparse: every row; rows without a grad row use ``g = w*wd`` alone."""
    rows, n = w.shape[0], w.shape[1]
    block = max(1, _STD_BLOCK // max(n, 1))
    kc = _consts(sc, w)
    for b in prange((rows + block - 1) // block):
        r0, r1 = b * block, min(rows, (b + 1) * block)
        k = np.searchsorted(idx, r0)
        for r in range(r0, r1):
            if k < idx.shape[0] and idx[k] == r:
                _row(w, gd, m, v, out, r, k, n, kc, clip, square_first)
                k += 1
            else:
                _row(w, gd, m, v, out, r, -1, n, kc, clip, square_first)
