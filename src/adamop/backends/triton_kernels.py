r"""Triton kernels of MXNet 1.9.1's ``adam_update``: the math of :mod:`adamop.reference` on GPUs.

Bit-exactness on NVIDIA hardware rests on five things, each chosen here or by the launcher:

* every ``+ - *`` is its own IEEE operation: launches pass ``enable_fp_fusion=False`` (Triton then
  emits no contraction and runs ptxas with ``--fmad=false``);
* float32 division and square root are ``tl.div_rn`` / ``tl.sqrt_rn``: Triton's ``/`` and
  ``tl.sqrt`` are the approximate ``div.full.f32`` / ``sqrt.approx.f32`` for float32. float64
  ``/`` and ``tl.sqrt`` already lower to the IEEE ``div.rn.f64`` / ``sqrt.rn.f64``;
* float16 is computed as float32 operations, each rounded to half (round to nearest even) before
  the next one, which is what MXNet's ``half_t`` and NumPy's float16 ufuncs do (float32 carries
  24 >= 2*11+2 bits, so this equals correctly rounded half arithmetic);
* 64-bit offsets (``program_id`` is widened to int64 before it is scaled), so tensors of more than
  2^31 elements are addressed correctly.
* negation keeps the sign of zero: ``x * -1.0`` (LLVM makes it ``neg``), never unary ``-x``, which
  Triton 3.6 lowers to ``0 - x`` (+0.0 for x = +0.0, where MXNet's ``-x`` is -0.0).

``tests/test_triton_ptx.py`` checks all five in the PTX for sm_90, under Triton 3.6 and the CI's.

Scalars arrive as float32 kernel arguments: every ``Scalars`` value is a float32 parameter cast to
the dtype, so it is exact in float32 for all three dtypes. ``1 - beta`` is computed here in the
dtype, as MXNet does, because in float64 it need not fit a float32.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _r(x, IS_F16: tl.constexpr):
    """Round a float32 intermediate to half (and widen it back) when the dtype is float16."""
    if IS_F16:
        x = x.to(tl.float16).to(tl.float32)
    return x


@triton.jit
def _div(a, b, IS_F64: tl.constexpr):
    if IS_F64:
        q = a / b                  # f64 division is div.rn.f64 (IEEE) on NVIDIA
    else:
        q = tl.div_rn(a, b)        # f32 '/' would be the approximate div.full.f32
    return q


@triton.jit
def _sqrt(a, IS_F64: tl.constexpr):
    if IS_F64:
        r = tl.sqrt(a)             # f64 sqrt is sqrt.rn.f64
    else:
        r = tl.sqrt_rn(a)          # f32 tl.sqrt would be sqrt.approx.f32
    return r


@triton.jit
def _scalar(x, IS_F64: tl.constexpr):
    """A float32 kernel argument as a value of the compute type (exact: see the module doc)."""
    if IS_F64:
        y = tl.cast(x, tl.float64)
    else:
        y = tl.cast(x, tl.float32)
    return y


@triton.jit
def _scalars(lr, beta1, beta2, epsilon, wd, rescale_grad, clip_gradient, IS_F64: tl.constexpr):
    """Every hyperparameter through :func:`_scalar`."""
    return (_scalar(lr, IS_F64), _scalar(beta1, IS_F64), _scalar(beta2, IS_F64),
            _scalar(epsilon, IS_F64), _scalar(wd, IS_F64), _scalar(rescale_grad, IS_F64),
            _scalar(clip_gradient, IS_F64))


@triton.jit
def _prologue(grad, w, rescale_grad, wd, IS_F16: tl.constexpr):
    """The gradient the moments see, before clipping: ``grad*rg + w*wd`` (reference._prologue)."""
    return _r(_r(grad * rescale_grad, IS_F16) + _r(w * wd, IS_F16), IS_F16)


@triton.jit
def _step(w, g, m, v, lr, beta1, beta2, epsilon, clip_gradient,
          CLIP: tl.constexpr, V_SQUARE_FIRST: tl.constexpr, IS_F16: tl.constexpr,
          IS_F64: tl.constexpr):
    """Clip, moments, new weight: ``reference._step``, one rounding per operation."""
    one_minus_beta1 = _r(1.0 - beta1, IS_F16)
    one_minus_beta2 = _r(1.0 - beta2, IS_F16)
    if CLIP:
        # (g > c) ? c : ((g < -c) ? -c : g): NaN passes through, +-inf become +-c. -c is
        # c * -1.0: unary minus would be 0 - c on Triton 3.6, +0.0 for clip_gradient=0 where
        # MXNet clips a negative g to -0.0 (18 golden cases)
        neg_clip = clip_gradient * -1.0
        g = tl.where(g > clip_gradient, clip_gradient, tl.where(g < neg_clip, neg_clip, g))
    m = _r(_r(beta1 * m, IS_F16) + _r(one_minus_beta1 * g, IS_F16), IS_F16)
    if V_SQUARE_FIRST:
        t = _r(one_minus_beta2 * _r(g * g, IS_F16), IS_F16)
    else:
        t = _r(_r(one_minus_beta2 * g, IS_F16) * g, IS_F16)
    v = _r(_r(beta2 * v, IS_F16) + t, IS_F16)
    den = _r(_r(_sqrt(v, IS_F64), IS_F16) + epsilon, IS_F16)
    w = _r(w - _r(_div(_r(lr * m, IS_F16), den, IS_F64), IS_F16), IS_F16)
    return w, m, v


@triton.jit
def _load(ptr, mask, IS_F64: tl.constexpr):
    x = tl.load(ptr, mask=mask, other=0.0)
    if IS_F64:
        y = x
    else:
        y = x.to(tl.float32)
    return y


@triton.jit
def adam_dense_kernel(w_ptr, g_ptr, m_ptr, v_ptr, o_ptr, n,
                      w_s, g_s, m_s, v_s, o_s,        # flat element strides (1 when contiguous)
                      lr, beta1, beta2, epsilon, wd, rescale_grad, clip_gradient,
                      CLIP: tl.constexpr, V_SQUARE_FIRST: tl.constexpr, IS_F16: tl.constexpr,
                      IS_F64: tl.constexpr, BLOCK: tl.constexpr):
    """Dense update of ``n`` elements; element ``i`` of array ``x`` is at ``x_ptr + i * x_s``."""
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    _dense_block(w_ptr + offs * w_s, g_ptr + offs * g_s, m_ptr + offs * m_s, v_ptr + offs * v_s,
                 o_ptr + offs * o_s, mask, lr, beta1, beta2, epsilon, wd, rescale_grad,
                 clip_gradient, CLIP, V_SQUARE_FIRST, IS_F16, IS_F64)


@triton.jit
def _dense_block(wp, gp, mp, vp, op, mask, lr, beta1, beta2, epsilon, wd, rescale_grad,
                 clip_gradient, CLIP: tl.constexpr, V_SQUARE_FIRST: tl.constexpr,
                 IS_F16: tl.constexpr, IS_F64: tl.constexpr, lp=None, LOWP: tl.constexpr = False):
    lr, beta1, beta2, epsilon, wd, rescale_grad, clip_gradient = _scalars(
        lr, beta1, beta2, epsilon, wd, rescale_grad, clip_gradient, IS_F64)
    w = _load(wp, mask, IS_F64)
    g = _load(gp, mask, IS_F64)
    m = _load(mp, mask, IS_F64)
    v = _load(vp, mask, IS_F64)
    g = _prologue(g, w, rescale_grad, wd, IS_F16)
    w, m, v = _step(w, g, m, v, lr, beta1, beta2, epsilon, clip_gradient,
                    CLIP, V_SQUARE_FIRST, IS_F16, IS_F64)
    dt = op.dtype.element_ty
    tl.store(mp, m.to(dt), mask=mask)
    tl.store(vp, v.to(dt), mask=mask)
    tl.store(op, w.to(dt), mask=mask)          # last: out may be weight, grad, mean or var
    if LOWP:                                   # the master copy's float16 weight (nearest even)
        tl.store(lp, w.to(tl.float16), mask=mask)


@triton.jit
def adam_multi_kernel(table_ptr,          # int64 [tensors, roles + 1]: addresses, then numel
                      chunk_tensor_ptr,   # int32 [chunks]: the tensor of each chunk
                      chunk_first_ptr,    # int64 [tensors]: each tensor's first chunk
                      scalars_ptr,        # float32 [tensors, 7] when PER_TENSOR, else unused
                      lr, beta1, beta2, epsilon, wd, rescale_grad, clip_gradient,
                      DT: tl.constexpr, GDT: tl.constexpr, MP: tl.constexpr,
                      PER_TENSOR: tl.constexpr, ALIGNED: tl.constexpr,
                      CLIP: tl.constexpr, V_SQUARE_FIRST: tl.constexpr, IS_F16: tl.constexpr,
                      IS_F64: tl.constexpr, BLOCK: tl.constexpr):
    """Many contiguous tensors in one launch: program ``pid`` updates one BLOCK-sized chunk of one
    tensor, so every program does the same work however the sizes are spread.

    A table row holds adam_update's weight, grad, mean, var and out addresses, or with MP
    mp_adam_update's float16 weight, grad, mean, var, float32 master copy and float16 out: the
    master copy is then what is read and written (DT is float32, the grad of its own dtype GDT),
    and the new master rounded to float16 (nearest even) is also stored into out.

    Addresses and sizes come from memory, so the compiler knows nothing about their alignment:
    ALIGNED (every address a multiple of 16 bytes, checked by the launcher) says so, and a full
    chunk runs with a constant mask, so both allow vector loads; only a tensor's last chunk is
    masked by its size."""
    pid = tl.program_id(0)
    t = tl.load(chunk_tensor_ptr + pid).to(tl.int64)
    local = pid.to(tl.int64) - tl.load(chunk_first_ptr + t)
    if MP:
        row = table_ptr + t * 7
        n = tl.load(row + 6)
        w_at = 4
        lp = tl.load(row + 5).to(tl.pointer_type(tl.float16))
    else:
        row = table_ptr + t * 6
        n = tl.load(row + 5)
        w_at = 0
        lp = tl.load(row + 4).to(tl.pointer_type(DT))        # unused
    offs = local * BLOCK + tl.arange(0, BLOCK)
    if PER_TENSOR:
        sp = scalars_ptr + t * 7
        lr = tl.load(sp + 0)
        beta1 = tl.load(sp + 1)
        beta2 = tl.load(sp + 2)
        epsilon = tl.load(sp + 3)
        wd = tl.load(sp + 4)
        rescale_grad = tl.load(sp + 5)
        clip_gradient = tl.load(sp + 6)
    pt = tl.pointer_type(DT)
    wp = tl.load(row + w_at).to(pt)
    gp = tl.load(row + 1).to(tl.pointer_type(GDT))
    mp = tl.load(row + 2).to(pt)
    vp = tl.load(row + 3).to(pt)
    op = wp if MP else tl.load(row + 4).to(pt)
    if ALIGNED:
        wp = tl.multiple_of(wp, 16)
        gp = tl.multiple_of(gp, 16)
        mp = tl.multiple_of(mp, 16)
        vp = tl.multiple_of(vp, 16)
        op = tl.multiple_of(op, 16)
        lp = tl.multiple_of(lp, 16)
    if (local + 1) * BLOCK <= n:       # one call per branch: each keeps its own mask's facts
        _dense_block(wp + offs, gp + offs, mp + offs, vp + offs, op + offs,
                     tl.full([BLOCK], 1, tl.int1), lr, beta1, beta2, epsilon, wd, rescale_grad,
                     clip_gradient, CLIP, V_SQUARE_FIRST, IS_F16, IS_F64, lp + offs, MP)
    else:
        _dense_block(wp + offs, gp + offs, mp + offs, vp + offs, op + offs, offs < n, lr, beta1,
                     beta2, epsilon, wd, rescale_grad, clip_gradient, CLIP, V_SQUARE_FIRST,
                     IS_F16, IS_F64, lp + offs, MP)


@triton.jit
def adam_rows_kernel(w_ptr, gd_ptr, gi_ptr, pos_ptr, m_ptr, v_ptr, o_ptr,
                     n_rows, n_cols, n_col_blocks, n_table_rows,
                     w_rs, w_cs, g_rs, g_cs, m_rs, m_cs, v_rs, v_cs, o_rs, o_cs,
                     lr, beta1, beta2, epsilon, wd, rescale_grad, clip_gradient,
                     LAZY: tl.constexpr, CLIP: tl.constexpr, V_SQUARE_FIRST: tl.constexpr,
                     IS_F16: tl.constexpr, IS_F64: tl.constexpr, BLOCK_R: tl.constexpr,
                     BLOCK_C: tl.constexpr):
    """Row-sparse updates over (rows, cols) views; element (r, c) of x is at
    ``x_ptr + r * x_rs + c * x_cs``. One program per (row block, column block).

    LAZY: the ``n_rows`` rows are the grad's stored rows; grad row ``r`` updates weight row
    ``gi[r]`` and no other row is touched; a row index outside ``[0, n_table_rows)`` is masked
    off, never addressed (``reference.adam_rows`` with ``LAZY``).
    Otherwise (std): the ``n_rows`` rows are every weight row; ``pos[r]`` is the grad row of weight
    row ``r`` or -1, and rows without one use ``g = w*wd`` (``reference.adam_rows`` with ``STD``).
    """
    pid = tl.program_id(0).to(tl.int64)
    rb = pid // n_col_blocks
    cb = pid - rb * n_col_blocks
    r = rb * BLOCK_R + tl.arange(0, BLOCK_R)
    c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    rmask = r < n_rows
    mask = rmask[:, None] & (c < n_cols)[None, :]
    if LAZY:
        wrow = tl.load(gi_ptr + r, mask=rmask, other=0)
        rmask = rmask & (wrow >= 0) & (wrow < n_table_rows)
        mask = rmask[:, None] & (c < n_cols)[None, :]
        grow = r
        has = rmask
    else:
        wrow = r
        grow = tl.load(pos_ptr + r, mask=rmask, other=-1)
        has = grow >= 0
    lr, beta1, beta2, epsilon, wd, rescale_grad, clip_gradient = _scalars(
        lr, beta1, beta2, epsilon, wd, rescale_grad, clip_gradient, IS_F64)
    wr = wrow[:, None]
    cc = c[None, :]
    w = _load(w_ptr + wr * w_rs + cc * w_cs, mask, IS_F64)
    m = _load(m_ptr + wr * m_rs + cc * m_cs, mask, IS_F64)
    v = _load(v_ptr + wr * v_rs + cc * v_cs, mask, IS_F64)
    gd = _load(gd_ptr + grow[:, None] * g_rs + cc * g_cs, mask & has[:, None], IS_F64)
    g = _prologue(gd, w, rescale_grad, wd, IS_F16)
    if not LAZY:
        g = tl.where(has[:, None], g, _r(w * wd, IS_F16))   # no grad row: w*wd alone
    w, m, v = _step(w, g, m, v, lr, beta1, beta2, epsilon, clip_gradient,
                    CLIP, V_SQUARE_FIRST, IS_F16, IS_F64)
    dt = o_ptr.dtype.element_ty
    tl.store(m_ptr + wr * m_rs + cc * m_cs, m.to(dt), mask=mask)
    tl.store(v_ptr + wr * v_rs + cc * v_cs, v.to(dt), mask=mask)
    tl.store(o_ptr + wr * o_rs + cc * o_cs, w.to(dt), mask=mask)


__all__ = ["adam_dense_kernel", "adam_multi_kernel", "adam_rows_kernel", "triton"]
