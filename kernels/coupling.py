"""Fused RealNVP affine coupling (Dinh et al., 2017) over 2-D float arrays of shape (N, D).

With x = (x1, x2) and s, t = net(x1) (the network is not part of this module):

    forward    y2 = x2 * exp(s) + t            logdet =  sum_j s[:, j]       (shape (N,))
    inverse    x2 = (y2 - t) * exp(-s)         logdet = -sum_j s[:, j]

and the vector-Jacobian products for upstream gradients g (N, D) and gl (N,):

    forward    gx2 = g * exp(s)      gs = (g * x2) * exp(s) + gl[:, None]                gt = g
    inverse    gy2 = g * exp(-s)     gs = -((g * (y2 - t)) * exp(-s)) - gl[:, None]     gt = -gy2

Each is ONE pass over memory instead of the 4-6 array passes (and temporaries) of the
unfused ops. The operation order inside each formula is that of the unfused engine
composition, so results agree with it to rounding (only exp itself differs, see below).

Public API (one dispatcher per operation; `impl=` picks an implementation):

    affine_forward(x2, s, t, save_exp=False, impl=None)            -> y2, logdet [, exp(s)]
    affine_inverse(y2, s, t, save_exp=False, impl=None)            -> x2, -logdet [, exp(-s)]
    affine_forward_backward(x2, s, g, gl=None, exp_s=None, need_gx2=True, impl=None)
                                                                   -> gx2 (or None), gs, gt
    affine_inverse_backward(y2, s, t, g, gl=None, exp_neg_s=None, impl=None)
                                                                   -> gy2, gs, gt

`exp_s` / `exp_neg_s` are the arrays returned with save_exp=True. Passing them lets the CPU
backward skip recomputing exp (on the CPU exp is the expensive part; on a GPU the kernels are
memory-bound, so the GPU paths ignore them and recompute, which reads the same bytes).

Implementations:
  'reference'  NumPy (or CuPy) ufuncs: the readable spec; works on any array module and dtype.
  'numba'      Numba CPU, prange over rows (`_*_par`) or a plain loop (`_*_ser`) below
               PARALLEL_MIN elements. Separate functions, not one compiled twice, so the
               `cache=True` files never collide (as in optim_step.py).
  'cuda'       Numba CUDA kernels (also run under the simulator, NUMBA_ENABLE_CUDASIM=1).
               NumPy inputs are copied to the device and back; CUDA-array-interface inputs
               (CuPy) are used in place and the outputs are CuPy arrays.
  'cupy'       CuPy RawKernel (rows, with the logdet reduction) + ElementwiseKernels (backward).
  None/'auto'  NumPy float32/float64 -> 'numba' (other dtypes -> 'reference');
               CuPy arrays -> 'cupy'.
`FORCE_IMPL` overrides every call (for tests and benchmarks).

Threads. The prange kernels run from PARALLEL_MIN elements on (NUMBA_NUM_THREADS threads),
the serial ones below. The threshold is deliberately high (2^18, i.e. batches above ~670 rows
of 392 features): the serial kernel already runs at ~1 ns per element, so two threads can save
at most ~50 us at MNIST sizes, while on an oversubscribed machine (more runnable threads than
cores) a parallel region waits for a descheduled worker. With Numba's OpenMP layer and the
default (spinning) OMP_WAIT_POLICY we measured ~10-15 ms per call instead of ~0.1 ms on a
2-core VM at load 5-6, and the spinning workers also slowed the serial code in between;
OMP_WAIT_POLICY=PASSIVE removed the stalls. On shared machines set NUMBA_NUM_THREADS=1 or
OMP_WAIT_POLICY=PASSIVE (before Numba is imported). Numbers: bench/results_coupling.md.
Tiny arrays: no switch to the reference. Both cost ~5 us per call there (all overhead), the
reference ~0.5 us less below ~1000 elements; numba wins from ~2000 elements. A size-dependent
switch would save < 1 us and make the rounding of exp depend on the batch size.

Shared elementwise bodies: `_forward_elem`, `_inverse_elem`, `_forward_grad_elem`,
`_inverse_grad_elem` are plain Python functions compiled twice, by `numba.njit` for the CPU
kernels and by `cuda.jit(device=True)` for the CUDA kernels (the simulator runs them as
Python). They take exp(+-s) as an argument rather than calling exp, because exp is the one
target-specific part: NVVM has a fast hardware-backed exp, while on the CPU `math.exp` is a
scalar libm call per element (no SVML in a stock Numba), which made the fused CPU kernel 2x
SLOWER than NumPy's SIMD exp in float32. The CPU kernels therefore use `_exp` below, a
branch-free Cephes-style exp that LLVM vectorises (AVX2: ~4x faster than libm expf, ~1.7x
faster than numpy's exp here), accurate to <= 1 ulp (numpy's float32 exp: ~2.4 ulp).

Numerics and extreme values. All kernels compute in the array dtype (no float64 accumulator
for float32), like the reference. Differences from the reference are rounding only:
  - exp: < 1 ulp apart from the exact value for every implementation;
  - logdet: the CPU kernel sums with 'reassoc' (vectorised partial sums), the GPU kernels
    with a tree; NumPy uses pairwise summation. Differences are bounded by ~D * eps * sum|s|.
  - GPU compilers contract x * e + t into an FMA (half an ulp better, not bitwise equal).
exp overflows and underflows exactly where NumPy's does: s > log(max float) gives e = inf
(88.72 in float32, 709.78 in float64) and s below log(smallest subnormal / 2) gives e = 0
(-103.97 / -745.13), subnormals in between. Then y2 = x2 * inf + t is +-inf, or nan where
x2 == 0 (0 * inf); e = 0 gives y2 = t; nan in s gives nan. logdet stays finite for any finite
s (it never uses exp). The gradients follow the same IEEE rules, as the reference's do.
"""
import functools
import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

cuda = None                  # numba.cuda, imported on first use of impl='cuda'
IMPLS = ("reference", "numba", "cuda", "cupy")
FORCE_IMPL = None            # one of IMPLS: override every call's dispatch (tests, benchmarks)
PARALLEL_MIN = 1 << 18       # elements; smaller calls run the serial kernels. See 'Threads' above.
CUDA_MAX_THREADS = 256       # threads per block of the row kernels (a power of two)
CUDA_MAX_BLOCKS = 4096       # grid size cap; the kernels grid-stride over the rest


# ------------------------------------------------------------------------------------------------
# Elementwise bodies, shared by the CPU (njit) and CUDA (cuda.jit(device=True)) kernels.
# e is exp(s) for the forward, exp(-s) for the inverse.
# ------------------------------------------------------------------------------------------------
def _forward_elem(x, e, t):
    return x * e + t


def _inverse_elem(y, e, t):
    return (y - t) * e


def _forward_grad_elem(g, x, e):
    """(d/dx2, d/ds) of <g, y2>, without the logdet term."""
    return g * e, g * x * e


def _inverse_grad_elem(g, y, t, e):
    """(d/dy2, d/ds, d/dt) of <g, x2>, without the logdet term."""
    gy = g * e
    return gy, -(g * (y - t) * e), -gy


# ------------------------------------------------------------------------------------------------
# (a) Reference: the spec. Array-module generic (NumPy or CuPy), any float dtype.
# ------------------------------------------------------------------------------------------------
def _forward_ref(x2, s, t):
    e = _xp(s).exp(s)
    return x2 * e + t, s.sum(axis=1), e


def _inverse_ref(y2, s, t):
    e = _xp(s).exp(-s)
    return (y2 - t) * e, -s.sum(axis=1), e


def _forward_grad_ref(x2, s, g, gl, e):
    e = _xp(s).exp(s) if e is None else e
    gs = g * x2 * e
    if gl is not None:
        gs = gs + gl[:, None]
    return g * e, gs, g


def _inverse_grad_ref(y2, s, t, g, gl, e):
    e = _xp(s).exp(-s) if e is None else e
    gy = g * e
    gs = -(g * (y2 - t) * e)
    if gl is not None:
        gs = gs - gl[:, None]
    return gy, gs, -gy


# ------------------------------------------------------------------------------------------------
# (b) Numba CPU.
# A vectorisable exp: exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 (Cody-Waite:
# ln 2 split in two so n * C1 is exact), exp(r) by a polynomial on |r| <= ln(2) / 2, and 2^n
# built from exponent bits, as two factors 2^(n//2) * 2^(n - n//2) so that results in the
# subnormal range round once, correctly. Selects, not branches, so LLVM vectorises the loop.
# float32: Cephes expf polynomial; float64: Taylor series to degree 13 (truncation < 0.05 ulp).
# ------------------------------------------------------------------------------------------------
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


def _exp(x):
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


# 'contract' lets LLVM use FMAs in the polynomial (~20% faster, still < 1 ulp).
@overload(_exp, jit_options={"fastmath": {"contract"}})
def _exp_overload(x):
    if x == types.float32:
        return _exp_f32
    if x == types.float64:
        return _exp_f64


_fwd_cpu = njit(cache=True)(_forward_elem)
_inv_cpu = njit(cache=True)(_inverse_elem)
_fwd_grad_cpu = njit(cache=True)(_forward_grad_elem)
_inv_grad_cpu = njit(cache=True)(_inverse_grad_elem)


# One row of the forward (or inverse) with its logdet. Each flag combination has its own loop
# (see the gradient rows below for why). 'reassoc' is only for the row sum: it lets LLVM keep
# vector partial sums (a sequential float sum cannot be vectorised); the elementwise bodies and
# _exp are separate functions, compiled with their own flags.
@njit(cache=True, fastmath={"reassoc"})
def _rows_one(i, v, s, t, out, ld, e_out, zero, inverse, save_e):
    d = v.shape[1]
    acc = zero
    if inverse and save_e:
        for j in range(d):
            e = _exp(-s[i, j])
            out[i, j] = _inv_cpu(v[i, j], e, t[i, j])
            e_out[i, j] = e
            acc += s[i, j]
    elif inverse:
        for j in range(d):
            out[i, j] = _inv_cpu(v[i, j], _exp(-s[i, j]), t[i, j])
            acc += s[i, j]
    elif save_e:
        for j in range(d):
            e = _exp(s[i, j])
            out[i, j] = _fwd_cpu(v[i, j], e, t[i, j])
            e_out[i, j] = e
            acc += s[i, j]
    else:
        for j in range(d):
            out[i, j] = _fwd_cpu(v[i, j], _exp(s[i, j]), t[i, j])
            acc += s[i, j]
    ld[i] = -acc if inverse else acc


@njit(parallel=True, cache=True)
def _rows_par(v, s, t, out, ld, e_out, zero, inverse, save_e):
    for i in prange(v.shape[0]):
        _rows_one(i, v, s, t, out, ld, e_out, zero, inverse, save_e)


@njit(cache=True)
def _rows_ser(v, s, t, out, ld, e_out, zero, inverse, save_e):
    for i in range(v.shape[0]):
        _rows_one(i, v, s, t, out, ld, e_out, zero, inverse, save_e)


# The gradient rows. Each combination of flags gets its own loop: LLVM vectorises a
# straight-line loop, but not one with a conditional store or a conditional exp (measured:
# 5x slower). `add` is gl[i], or -0.0 without gl (x + -0.0 == x for every x, -0.0 included).
@njit(cache=True)
def _forward_grad_one(i, x, s, g, e_in, gx, gs, add, has_e, need_gx):
    d = x.shape[1]
    if has_e and need_gx:
        for j in range(d):
            a, b = _fwd_grad_cpu(g[i, j], x[i, j], e_in[i, j])
            gx[i, j] = a
            gs[i, j] = b + add
    elif has_e:
        for j in range(d):
            gs[i, j] = _fwd_grad_cpu(g[i, j], x[i, j], e_in[i, j])[1] + add
    elif need_gx:
        for j in range(d):
            a, b = _fwd_grad_cpu(g[i, j], x[i, j], _exp(s[i, j]))
            gx[i, j] = a
            gs[i, j] = b + add
    else:
        for j in range(d):
            gs[i, j] = _fwd_grad_cpu(g[i, j], x[i, j], _exp(s[i, j]))[1] + add


@njit(parallel=True, cache=True)
def _forward_grad_par(x, s, g, gl, e_in, gx, gs, has_gl, has_e, need_gx, neg_zero):
    for i in prange(x.shape[0]):
        _forward_grad_one(i, x, s, g, e_in, gx, gs, gl[i] if has_gl else neg_zero, has_e, need_gx)


@njit(cache=True)
def _forward_grad_ser(x, s, g, gl, e_in, gx, gs, has_gl, has_e, need_gx, neg_zero):
    for i in range(x.shape[0]):
        _forward_grad_one(i, x, s, g, e_in, gx, gs, gl[i] if has_gl else neg_zero, has_e, need_gx)


# `sub` is gl[i], or +0.0 without gl (x - 0.0 == x for every x).
@njit(cache=True)
def _inverse_grad_one(i, y, s, t, g, e_in, gy, gs, gt, sub, has_e):
    d = y.shape[1]
    if has_e:
        for j in range(d):
            a, b, c = _inv_grad_cpu(g[i, j], y[i, j], t[i, j], e_in[i, j])
            gy[i, j] = a
            gs[i, j] = b - sub
            gt[i, j] = c
    else:
        for j in range(d):
            a, b, c = _inv_grad_cpu(g[i, j], y[i, j], t[i, j], _exp(-s[i, j]))
            gy[i, j] = a
            gs[i, j] = b - sub
            gt[i, j] = c


@njit(parallel=True, cache=True)
def _inverse_grad_par(y, s, t, g, gl, e_in, gy, gs, gt, has_gl, has_e, zero):
    for i in prange(y.shape[0]):
        _inverse_grad_one(i, y, s, t, g, e_in, gy, gs, gt, gl[i] if has_gl else zero, has_e)


@njit(cache=True)
def _inverse_grad_ser(y, s, t, g, gl, e_in, gy, gs, gt, has_gl, has_e, zero):
    for i in range(y.shape[0]):
        _inverse_grad_one(i, y, s, t, g, e_in, gy, gs, gt, gl[i] if has_gl else zero, has_e)


def _pick(par, ser, n_rows, size):
    return par if size >= PARALLEL_MIN and n_rows > 1 else ser


def _c(a):
    return np.ascontiguousarray(a)


def _rows_numba(v, s, t, inverse, save_e):
    v, s, t = _c(v), _c(s), _c(t)
    dt = s.dtype
    out, ld = np.empty_like(s), np.empty(s.shape[0], dt)
    e = np.empty_like(s) if save_e else np.empty((0, 0), dt)
    _pick(_rows_par, _rows_ser, s.shape[0], s.size)(v, s, t, out, ld, e, dt.type(0), inverse, save_e)
    return out, ld, (e if save_e else None)


def _forward_grad_numba(x2, s, g, gl, e, need_gx):
    x2, s, g = _c(x2), _c(s), _c(g)
    dt = s.dtype
    gs = np.empty_like(s)
    gx = np.empty_like(s) if need_gx else np.empty((0, 0), dt)
    gl_ = _c(gl) if gl is not None else np.empty(0, dt)
    e_ = _c(e) if e is not None else np.empty((0, 0), dt)
    _pick(_forward_grad_par, _forward_grad_ser, s.shape[0], s.size)(
        x2, s, g, gl_, e_, gx, gs, gl is not None, e is not None, need_gx, dt.type(-0.0))
    return (gx if need_gx else None), gs, g


def _inverse_grad_numba(y2, s, t, g, gl, e):
    y2, s, t, g = _c(y2), _c(s), _c(t), _c(g)
    dt = s.dtype
    gy, gs, gt = np.empty_like(s), np.empty_like(s), np.empty_like(s)
    gl_ = _c(gl) if gl is not None else np.empty(0, dt)
    e_ = _c(e) if e is not None else np.empty((0, 0), dt)
    _pick(_inverse_grad_par, _inverse_grad_ser, s.shape[0], s.size)(
        y2, s, t, g, gl_, e_, gy, gs, gt, gl is not None, e is not None, dt.type(0))
    return gy, gs, gt


# ------------------------------------------------------------------------------------------------
# (c) Numba CUDA. Rows: one block per row (grid-stride over rows), its threads stride over the
# row's columns (coalesced), then a shared-memory tree reduction gives logdet deterministically.
# Gradients: one thread per element, grid-stride. Built per dtype on first use, so importing
# this module never touches numba.cuda.
# ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _cuda_kernels(dtype, nmax):
    """(rows, forward_grad, inverse_grad) for arrays of `dtype`; rows launches <= nmax threads."""
    # `cuda` must be a module global, not a local captured by the kernels: the simulator swaps
    # the module globals that refer to numba.cuda for its fake module while a kernel runs.
    global cuda
    import numba
    from numba import cuda

    acc_t = numba.from_dtype(np.dtype(dtype))
    fwd = cuda.jit(device=True)(_forward_elem)
    inv = cuda.jit(device=True)(_inverse_elem)
    fwd_grad = cuda.jit(device=True)(_forward_grad_elem)
    inv_grad = cuda.jit(device=True)(_inverse_grad_elem)

    @cuda.jit
    def rows(v, s, t, out, ld, zero, inverse):
        buf = cuda.shared.array(nmax, acc_t)
        tid, nt = cuda.threadIdx.x, cuda.blockDim.x
        n, d = s.shape
        for i in range(cuda.blockIdx.x, n, cuda.gridDim.x):
            part = zero
            for j in range(tid, d, nt):
                sj = s[i, j]
                if inverse:
                    out[i, j] = inv(v[i, j], math.exp(-sj), t[i, j])
                else:
                    out[i, j] = fwd(v[i, j], math.exp(sj), t[i, j])
                part += sj
            buf[tid] = part
            cuda.syncthreads()
            step = nt // 2
            while step > 0:
                if tid < step:
                    buf[tid] += buf[tid + step]
                cuda.syncthreads()
                step //= 2
            if tid == 0:
                ld[i] = -buf[0] if inverse else buf[0]
            cuda.syncthreads()          # buf is reused by the next row

    @cuda.jit
    def forward_grad(x, s, g, gl, gx, gs, has_gl, need_gx):
        n, d = s.shape
        for k in range(cuda.grid(1), n * d, cuda.gridsize(1)):
            i = k // d
            j = k - i * d
            a, b = fwd_grad(g[i, j], x[i, j], math.exp(s[i, j]))
            if need_gx:
                gx[i, j] = a
            gs[i, j] = b + gl[i] if has_gl else b

    @cuda.jit
    def inverse_grad(y, s, t, g, gl, gy, gs, gt, has_gl):
        n, d = s.shape
        for k in range(cuda.grid(1), n * d, cuda.gridsize(1)):
            i = k // d
            j = k - i * d
            a, b, c = inv_grad(g[i, j], y[i, j], t[i, j], math.exp(-s[i, j]))
            gy[i, j] = a
            gs[i, j] = b - gl[i] if has_gl else b
            gt[i, j] = c

    return rows, forward_grad, inverse_grad


def _pow2_at_least(n):
    return 1 << max(0, int(n) - 1).bit_length()


class _CudaIO:
    """Host NumPy arrays go to the device and back; device arrays (CuPy) stay where they are."""

    def __init__(self, arrays):
        from numba import cuda
        self.cuda = cuda
        self.host = all(isinstance(a, np.ndarray) for a in arrays if a is not None)

    def put(self, a):
        if a is None:
            return None
        return self.cuda.to_device(np.ascontiguousarray(a)) if self.host else _xp(a).ascontiguousarray(a)

    def empty(self, shape, dtype):
        return self.cuda.device_array(shape, dtype) if self.host else _cupy().empty(shape, dtype)

    def get(self, a):
        return a.copy_to_host() if self.host else a


def _cuda_rows_config(n, d):
    from numba import config
    lowest = 1 if config.ENABLE_CUDASIM else 32      # the simulator runs one Python thread per thread
    return min(n, CUDA_MAX_BLOCKS), min(CUDA_MAX_THREADS, max(lowest, _pow2_at_least(d)))


def _cuda_flat_config(size):
    from numba import config
    threads = 32 if config.ENABLE_CUDASIM else 256
    return max(1, min(-(-size // threads), CUDA_MAX_BLOCKS)), threads


def _rows_cuda(v, s, t, inverse, save_e):
    io = _CudaIO((v, s, t))
    n, d = s.shape
    dt = s.dtype
    v_, s_, t_ = io.put(v), io.put(s), io.put(t)
    out, ld = io.empty((n, d), dt), io.empty((n,), dt)
    if n and d:
        rows = _cuda_kernels(dt.str, CUDA_MAX_THREADS)[0]
        blocks, threads = _cuda_rows_config(n, d)
        rows[blocks, threads](v_, s_, t_, out, ld, dt.type(0), inverse)
    out, ld = io.get(out), io.get(ld)
    if n and not d:
        ld[...] = 0
    e = None
    if save_e:
        e = _xp(s).exp(-s if inverse else s)
    return out, ld, e


def _forward_grad_cuda(x2, s, g, gl, need_gx):
    io = _CudaIO((x2, s, g, gl))
    dt = s.dtype
    gx, gs = io.empty(s.shape, dt), io.empty(s.shape, dt)
    if s.size:
        kernel = _cuda_kernels(dt.str, CUDA_MAX_THREADS)[1]
        blocks, threads = _cuda_flat_config(s.size)
        gl_ = io.put(gl) if gl is not None else io.empty((1,), dt)
        kernel[blocks, threads](io.put(x2), io.put(s), io.put(g), gl_, gx, gs, gl is not None, need_gx)
    return (io.get(gx) if need_gx else None), io.get(gs), g


def _inverse_grad_cuda(y2, s, t, g, gl):
    io = _CudaIO((y2, s, t, g, gl))
    dt = s.dtype
    gy, gs, gt = io.empty(s.shape, dt), io.empty(s.shape, dt), io.empty(s.shape, dt)
    if s.size:
        kernel = _cuda_kernels(dt.str, CUDA_MAX_THREADS)[2]
        blocks, threads = _cuda_flat_config(s.size)
        gl_ = io.put(gl) if gl is not None else io.empty((1,), dt)
        kernel[blocks, threads](io.put(y2), io.put(s), io.put(t), io.put(g), gl_, gy, gs, gt, gl is not None)
    return io.get(gy), io.get(gs), io.get(gt)


# ------------------------------------------------------------------------------------------------
# (d) CuPy: a RawKernel for the rows (same one-block-per-row design as the Numba CUDA kernel)
# and ElementwiseKernels for the gradients (CuPy broadcasts gl[:, None] itself).
# ------------------------------------------------------------------------------------------------
_CUPY_ROWS_SRC = r"""
typedef {T} T;
extern "C" __global__ void coupling_rows(const T* v, const T* s, const T* t, T* out, T* ld,
                                         long long n, long long d, int inverse) {
    __shared__ T buf[{NMAX}];
    const int tid = threadIdx.x, nt = blockDim.x;
    for (long long i = blockIdx.x; i < n; i += gridDim.x) {
        T part = 0;
        for (long long j = tid; j < d; j += nt) {
            const long long k = i * d + j;
            const T sj = s[k];
            if (inverse) out[k] = (v[k] - t[k]) * {EXP}(-sj);
            else         out[k] = v[k] * {EXP}(sj) + t[k];
            part += sj;
        }
        buf[tid] = part;
        __syncthreads();
        for (int step = nt / 2; step > 0; step >>= 1) {
            if (tid < step) buf[tid] += buf[tid + step];
            __syncthreads();
        }
        if (tid == 0) ld[i] = inverse ? -buf[0] : buf[0];
        __syncthreads();
    }
}
"""

_CUPY_EXP = {"float32": ("float", "expf"), "float64": ("double", "exp")}


@functools.lru_cache(maxsize=None)
def _cupy_kernels(dtype, nmax):
    cp = _cupy()
    ctype, exp = _CUPY_EXP[dtype]
    src = _CUPY_ROWS_SRC.replace("{T}", ctype).replace("{EXP}", exp).replace("{NMAX}", str(nmax))
    rows = cp.RawKernel(src, "coupling_rows")
    fwd_grad = cp.ElementwiseKernel(
        "T x, T s, T g, T gl", "T gx, T gs",
        "T e = exp(s); gx = g * e; gs = g * x * e + gl;", "coupling_forward_grad")
    fwd_grad_s = cp.ElementwiseKernel(
        "T x, T s, T g, T gl", "T gs",
        "gs = g * x * exp(s) + gl;", "coupling_forward_grad_s")
    inv_grad = cp.ElementwiseKernel(
        "T y, T s, T t, T g, T gl", "T gy, T gs, T gt",
        "T e = exp(-s); gy = g * e; gs = -(g * (y - t) * e) - gl; gt = -gy;", "coupling_inverse_grad")
    return rows, fwd_grad, fwd_grad_s, inv_grad


def _rows_cupy(v, s, t, inverse, save_e):
    cp = _cupy()
    v, s, t = (cp.ascontiguousarray(a) for a in (v, s, t))
    n, d = s.shape
    out, ld = cp.empty_like(s), cp.zeros(n, s.dtype)
    if n and d:
        rows = _cupy_kernels(s.dtype.name, CUDA_MAX_THREADS)[0]
        threads = min(CUDA_MAX_THREADS, max(32, _pow2_at_least(d)))
        rows((min(n, CUDA_MAX_BLOCKS),), (threads,), (v, s, t, out, ld, np.int64(n), np.int64(d), np.int32(inverse)))
    e = cp.exp(-s if inverse else s) if save_e else None
    return out, ld, e


def _gl_column(gl, like):
    return like.dtype.type(0) if gl is None else gl[:, None]


def _forward_grad_cupy(x2, s, g, gl, need_gx):
    k = _cupy_kernels(s.dtype.name, CUDA_MAX_THREADS)
    if need_gx:
        gx, gs = k[1](x2, s, g, _gl_column(gl, s))
        return gx, gs, g
    return None, k[2](x2, s, g, _gl_column(gl, s)), g


def _inverse_grad_cupy(y2, s, t, g, gl):
    return _cupy_kernels(s.dtype.name, CUDA_MAX_THREADS)[3](y2, s, t, g, _gl_column(gl, s))


# ------------------------------------------------------------------------------------------------
# Dispatch
# ------------------------------------------------------------------------------------------------
def _cupy():
    import cupy
    return cupy


def _xp(a):
    return np if isinstance(a, np.ndarray) else _cupy().get_array_module(a)


def _check(arrays, names, vectors=()):
    a0 = arrays[0]
    if a0.ndim != 2:
        raise ValueError(f"affine coupling kernels take 2-D (N, D) arrays, got {names[0]} of shape {a0.shape}")
    for a, name in zip(arrays, names):
        if a.shape != a0.shape:
            raise ValueError(f"{name} has shape {a.shape}, expected {a0.shape} like {names[0]}")
        if a.dtype != a0.dtype:
            raise TypeError(f"{name} has dtype {a.dtype}, expected {a0.dtype} like {names[0]}")
    for v in vectors:
        if v is not None and (v.shape != a0.shape[:1] or v.dtype != a0.dtype):
            raise ValueError(f"gl must have shape {a0.shape[:1]} and dtype {a0.dtype}, got {v.shape} {v.dtype}")


def _select(impl, arrays):
    impl = FORCE_IMPL or impl or "auto"
    if impl == "auto":
        if all(isinstance(a, np.ndarray) for a in arrays if a is not None):
            return "numba" if arrays[0].dtype in (np.float32, np.float64) else "reference"
        return "cupy"
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS} or None, got {impl!r}")
    if impl == "numba" and not (arrays[0].dtype in (np.float32, np.float64) and
                                all(isinstance(a, np.ndarray) for a in arrays if a is not None)):
        raise TypeError("impl='numba' needs NumPy float32/float64 arrays")
    if impl in ("cuda", "cupy") and arrays[0].dtype not in (np.float32, np.float64):
        raise TypeError(f"impl={impl!r} needs float32/float64 arrays")
    return impl


def _rows(v, s, t, inverse, save_exp, impl):
    _check((v, s, t), ("y2" if inverse else "x2", "s", "t"))
    impl = _select(impl, (s, v, t))
    if impl == "reference":
        out, ld, e = (_inverse_ref if inverse else _forward_ref)(v, s, t)
    elif impl == "numba":
        out, ld, e = _rows_numba(v, s, t, inverse, save_exp)
    elif impl == "cuda":
        out, ld, e = _rows_cuda(v, s, t, inverse, save_exp)
    else:
        out, ld, e = _rows_cupy(v, s, t, inverse, save_exp)
    return (out, ld, e) if save_exp else (out, ld)


def affine_forward(x2, s, t, save_exp=False, impl=None):
    """y2 = x2 * exp(s) + t and logdet = s.sum(1), in one pass. With save_exp, also exp(s)."""
    return _rows(x2, s, t, False, save_exp, impl)


def affine_inverse(y2, s, t, save_exp=False, impl=None):
    """x2 = (y2 - t) * exp(-s) and -s.sum(1), in one pass. With save_exp, also exp(-s)."""
    return _rows(y2, s, t, True, save_exp, impl)


def affine_forward_backward(x2, s, g, gl=None, exp_s=None, need_gx2=True, impl=None):
    """Gradients of <g, y2> + <gl, logdet> w.r.t. (x2, s, t): (g e^s or None, (g x2) e^s + gl[:, None], g).

    gl=None means no logdet gradient. gt is `g` itself (no copy). need_gx2=False skips gx2.
    """
    _check((s, x2, g) + ((exp_s,) if exp_s is not None else ()), ("s", "x2", "g", "exp_s"), (gl,))
    impl = _select(impl, (s, x2, g, gl))
    if impl == "reference":
        gx, gs, gt = _forward_grad_ref(x2, s, g, gl, exp_s)
        return (gx if need_gx2 else None), gs, gt
    if impl == "numba":
        return _forward_grad_numba(x2, s, g, gl, exp_s, need_gx2)
    if impl == "cuda":
        return _forward_grad_cuda(x2, s, g, gl, need_gx2)
    return _forward_grad_cupy(x2, s, g, gl, need_gx2)


def affine_inverse_backward(y2, s, t, g, gl=None, exp_neg_s=None, impl=None):
    """Gradients of <g, x2> + <gl, -logdet> w.r.t. (y2, s, t) for x2 = (y2 - t) exp(-s):
    (g e^-s, -((g (y2 - t)) e^-s) - gl[:, None], -g e^-s)."""
    extra = (exp_neg_s,) if exp_neg_s is not None else ()
    _check((s, y2, t, g) + extra, ("s", "y2", "t", "g", "exp_neg_s"), (gl,))
    impl = _select(impl, (s, y2, t, g, gl))
    if impl == "reference":
        return _inverse_grad_ref(y2, s, t, g, gl, exp_neg_s)
    if impl == "numba":
        return _inverse_grad_numba(y2, s, t, g, gl, exp_neg_s)
    if impl == "cuda":
        return _inverse_grad_cuda(y2, s, t, g, gl)
    return _inverse_grad_cupy(y2, s, t, g, gl)
