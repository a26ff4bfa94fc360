"""float16 <-> float32 for the Numba kernels: float16 is carried as its ``uint16`` bits.

Each conversion has two implementations: the CPU's F16C instructions (``vcvtph2ps`` /
``vcvtps2ph``, correctly rounded, ties to even, vectorised) where the CPU has them, and integer
bit operations with selects (also vectorised) elsewhere. :data:`HARDWARE_HALF` says which one the
kernels use; both are tested exhaustively against NumPy.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["round_half", "half_to_float", "float_to_half", "HARDWARE_HALF"]

_CALL = dict(cache=True)
_TWO_POW_24 = np.float32(2.0 ** 24)
_TWO_POW_23 = np.float32(2.0 ** 23)
_TWO_POW_M24 = np.float32(2.0 ** -24)


# ---- bit casts ----------------------------------------------------------------------------
@intrinsic
def _bits(typingctx, x):
    """float32 -> its uint32 bit pattern."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.uint32(types.float32), codegen


@intrinsic
def _float(typingctx, u):
    """uint32 bit pattern -> float32."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(builder.trunc(args[0], ir.IntType(32)) if sig.args[0].bitwidth > 32
                               else args[0], ir.FloatType())
    return types.float32(u), codegen


# ---- float16 <-> float32 ----------------------------------------------------------------------
@njit(**_CALL)
def _round_half_soft(x):
    """The float16 value nearest to float32 ``x`` (ties to even), as a float32; overflow -> inf."""
    u = np.int64(_bits(x))
    a = u & 0x7FFFFFFF
    # normal float16 range: drop the 13 low mantissa bits, ties to even (a carry may bump the
    # exponent, which is the correct rounding up to the next binade)
    normal = (a + 0xFFF + ((a >> 13) & 1)) & 0x7FFFE000
    # subnormal float16 range: |x| * 2^24 < 2^10 is exact; adding and subtracting 2^23 rounds it to
    # an integer with the FPU's ties-to-even, and * 2^-24 is exact again
    y = _float(a) * _TWO_POW_24
    sub = np.int64(_bits(((y + _TWO_POW_23) - _TWO_POW_23) * _TWO_POW_M24))
    r = normal if a >= 0x38800000 else sub
    r = 0x7F800000 if a >= 0x477FF000 else r     # beyond 65504 + half an ulp: inf
    r = a if a > 0x7F800000 else r                # NaN stays NaN
    return _float(r | (u & 0x80000000))


@njit(**_CALL)
def _half_to_float_soft(h):
    """float16 bits -> float32 (exact)."""
    h = np.int64(h)
    e = (h >> 10) & 0x1F
    sub = np.int64(_bits(np.float32(h & 0x3FF) * _TWO_POW_M24))
    r = ((h & 0x7FFF) << 13) + 0x38000000
    r = sub if e == 0 else r
    r = 0x7F800000 | ((h & 0x3FF) << 13) if e == 0x1F else r
    return _float(r | ((h & 0x8000) << 16))


@njit(**_CALL)
def _float_to_half_soft(x):
    """float32 -> float16 bits, rounding to nearest even (NaN becomes a quiet NaN)."""
    u = np.int64(_bits(_round_half_soft(x)))
    a = u & 0x7FFFFFFF
    sub = np.int64(_float(a) * _TWO_POW_24)    # exact: a is a multiple of 2^-24 here
    r = (a - 0x38000000) >> 13 if a >= 0x38800000 else sub
    r = 0x7C00 if a == 0x7F800000 else r
    r = 0x7E00 | ((a >> 13) & 0x3FF) if a > 0x7F800000 else r
    return np.uint16(r | ((u >> 16) & 0x8000))


# With F16C (x86 CPUs since about 2012) LLVM turns these conversions into one vcvtps2ph /
# vcvtph2ps each, correctly rounded (ties to even) and vectorised: float16 updates ran ~10x faster
# than with the integer versions above, which remain for CPUs without it (LLVM would otherwise
# emit calls to compiler-rt helpers that Numba does not link).
@intrinsic
def _round_half_f16c(typingctx, x):
    def codegen(context, builder, sig, args):
        return builder.fpext(builder.fptrunc(args[0], ir.HalfType()), ir.FloatType())
    return types.float32(types.float32), codegen


@intrinsic
def _half_to_float_f16c(typingctx, h):
    def codegen(context, builder, sig, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())
    return types.float32(types.uint16), codegen


@intrinsic
def _float_to_half_f16c(typingctx, x):
    def codegen(context, builder, sig, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))
    return types.uint16(types.float32), codegen


def _host_has_f16c() -> bool:
    from llvmlite import binding
    return bool(binding.get_host_cpu_features().get("f16c", False))


HARDWARE_HALF = _host_has_f16c()
if HARDWARE_HALF:
    round_half, half_to_float, float_to_half = (
        _round_half_f16c, _half_to_float_f16c, _float_to_half_f16c)
else:
    round_half, half_to_float, float_to_half = (
        _round_half_soft, _half_to_float_soft, _float_to_half_soft)
