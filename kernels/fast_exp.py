"""A vectorisable exp for the Numba CPU kernels: `exp(x)` below, for float32 and float64.

On the CPU `math.exp` is a scalar libm call per element (no SVML in a stock Numba), which made a
fused kernel slower than NumPy's SIMD exp in float32. This one is branch-free, so LLVM vectorises
the loops that call it, and accurate to <= 1 ulp (bench/results_coupling.md has the comparison).
Overflow and underflow happen exactly where NumPy's do: s > log(max float) gives inf, s below
log(smallest subnormal / 2) gives 0, subnormals in between; nan stays nan. The GPU kernels use the
device's own exp (NVVM has a fast hardware-backed one).

exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 (Cody-Waite: ln 2 split in two so
n * C1 is exact), exp(r) by a polynomial on |r| <= ln(2) / 2, and 2^n built from exponent bits, as
two factors 2^(n//2) * 2^(n - n//2) so that results in the subnormal range round once, correctly.
Selects, not branches, so LLVM vectorises the loop. float32: Cephes expf polynomial; float64:
Taylor series to degree 13 (truncation < 0.05 ulp).
"""
import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload


@intrinsic
def _f32_from_bits(typingctx, bits):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@intrinsic
def _f64_from_bits(typingctx, bits):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


_LOG2E = 1.4426950408889634
# Numba freezes these globals as compile-time constants. float32 (Cephes): overflow above
# log(FLT_MAX), zero below log(2^-150), half the smallest subnormal; ln 2 = C1 + C2.
_LO32, _HI32, _OVER32, _UNDER32 = -104.0, 89.0, 88.72283905206835, -103.97207708399179
_C1_32, _C2_32 = 0.693359375, -2.12194440e-4
# float64: overflow above log(DBL_MAX), zero below log(2^-1075).
_LO64, _HI64, _OVER64, _UNDER64 = -746.0, 710.0, 709.782712893384, -745.1332191019412
_C1_64, _C2_64 = 6.93145751953125e-1, 1.42860682030941723212e-6
_TAYLOR64 = tuple(1.0 / math.factorial(k) for k in range(13, 1, -1))  # 1/13!, ..., 1/2!


def exp(x):
    """exp for the CPU kernels (the Numba overload below); math.exp when called from Python."""
    return math.exp(x)


def _exp_f32(x):
    f = np.float32
    xc = x if x > f(_LO32) else f(_LO32)
    xc = xc if xc < f(_HI32) else f(_HI32)
    n = np.floor(xc * f(_LOG2E) + f(0.5))
    r = xc - n * f(_C1_32)
    r = r - n * f(_C2_32)
    p = ((((f(1.9875691500e-4) * r + f(1.3981999507e-3)) * r + f(8.3334519073e-3)) * r
          + f(4.1665795894e-2)) * r + f(1.6666665459e-1)) * r + f(5.0000001201e-1)
    p = p * (r * r) + r + f(1.0)
    k = np.int32(n)
    a = k >> np.int32(1)
    p = p * _f32_from_bits((a + np.int32(127)) << np.int32(23))
    p = p * _f32_from_bits((k - a + np.int32(127)) << np.int32(23))
    p = f(np.inf) if x > f(_OVER32) else p
    p = f(0.0) if x < f(_UNDER32) else p
    return x if x != x else p          # nan stays nan


def _exp_f64(x):
    xc = x if x > _LO64 else _LO64
    xc = xc if xc < _HI64 else _HI64
    n = np.floor(xc * _LOG2E + 0.5)
    r = xc - n * _C1_64
    r = r - n * _C2_64
    c = _TAYLOR64
    q = c[0]
    q = q * r + c[1]
    q = q * r + c[2]
    q = q * r + c[3]
    q = q * r + c[4]
    q = q * r + c[5]
    q = q * r + c[6]
    q = q * r + c[7]
    q = q * r + c[8]
    q = q * r + c[9]
    q = q * r + c[10]
    q = q * r + c[11]
    p = q * (r * r) + r + 1.0
    k = np.int32(n)
    a = k >> np.int32(1)
    p = p * _f64_from_bits(np.int64(a + np.int32(1023)) << np.int64(52))
    p = p * _f64_from_bits(np.int64(k - a + np.int32(1023)) << np.int64(52))
    p = np.inf if x > _OVER64 else p
    p = 0.0 if x < _UNDER64 else p
    return x if x != x else p


# 'contract' lets LLVM use FMAs in the polynomial (faster, still < 1 ulp).
@overload(exp, jit_options={"fastmath": {"contract"}})
def _exp_overload(x):
    if x == types.float32:
        return _exp_f32
    if x == types.float64:
        return _exp_f64
