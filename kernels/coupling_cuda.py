"""'cuda', the coupling as Numba CUDA kernels (run on the CPU under NUMBA_ENABLE_CUDASIM=1).

Rows: one block per row (grid-stride over rows), its threads stride over the row's columns
(coalesced), then a shared-memory tree reduction gives logdet deterministically. Gradients: one
thread per element, grid-stride. The element-wise math is coupling.py's `*_elem` functions,
compiled as device functions; exp is the device's. NumPy inputs are copied to the device and
back; CuPy inputs are used in place (through `__cuda_array_interface__`) and the outputs are CuPy
arrays (dispatch.CudaIO).

This module imports numba.cuda: coupling.py imports it on the first call with impl='cuda'. `cuda`
is a module global on purpose: the simulator swaps the module globals that refer to numba.cuda for
its fake module while a kernel runs.
"""
import functools
import math

import numba
import numpy as np

from . import coupling as api
from .coupling import _forward_elem, _forward_grad_elem, _inverse_elem, _inverse_grad_elem
from .dispatch import CudaIO, device, launch, simulating, xp
from .dispatch import cuda as _import_cuda

cuda = _import_cuda()
FLAT_THREADS = 256           # threads per block of the gradient kernels

_fwd = device(_forward_elem)
_inv = device(_inverse_elem)
_fwd_grad = device(_forward_grad_elem)
_inv_grad = device(_inverse_grad_elem)


@functools.lru_cache(maxsize=None)
def _kernels(dtype, nmax):
    """(rows, forward_grad, inverse_grad) for arrays of `dtype`; rows launches <= nmax threads."""
    acc_t = numba.from_dtype(np.dtype(dtype))

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
                    out[i, j] = _inv(v[i, j], math.exp(-sj), t[i, j])
                else:
                    out[i, j] = _fwd(v[i, j], math.exp(sj), t[i, j])
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
            a, b = _fwd_grad(g[i, j], x[i, j], math.exp(s[i, j]))
            if need_gx:
                gx[i, j] = a
            gs[i, j] = b + gl[i] if has_gl else b

    @cuda.jit
    def inverse_grad(y, s, t, g, gl, gy, gs, gt, has_gl):
        n, d = s.shape
        for k in range(cuda.grid(1), n * d, cuda.gridsize(1)):
            i = k // d
            j = k - i * d
            a, b, c = _inv_grad(g[i, j], y[i, j], t[i, j], math.exp(-s[i, j]))
            gy[i, j] = a
            gs[i, j] = b - gl[i] if has_gl else b
            gt[i, j] = c

    return rows, forward_grad, inverse_grad


def _pow2_at_least(n):
    return 1 << max(0, int(n) - 1).bit_length()


def _kernel(which, dtype):
    return _kernels(np.dtype(dtype).str, api.CUDA_MAX_THREADS)[which]


def rows(v, s, t, inverse, save_e):
    io = CudaIO((v, s, t))
    n, d = s.shape
    dt = s.dtype
    v_, s_, t_ = io.put(v), io.put(s), io.put(t)
    out, ld = io.empty((n, d), dt), io.empty((n,), dt)
    if n and d:
        threads = min(api.CUDA_MAX_THREADS, max(1 if simulating() else 32, _pow2_at_least(d)))
        blocks, threads = launch(n, threads, api.CUDA_MAX_BLOCKS, per_block=True, sim_threads=threads)
        _kernel(0, dt)[blocks, threads](v_, s_, t_, out, ld, dt.type(0), inverse)
    out, ld = io.get(out), io.get(ld)
    if n and not d:
        ld[...] = 0
    e = xp(s).exp(-s if inverse else s) if save_e else None
    return out, ld, e


def forward_grad(x2, s, g, gl, e, need_gx):
    io = CudaIO((x2, s, g, gl))
    dt = s.dtype
    gx, gs = io.empty(s.shape, dt), io.empty(s.shape, dt)
    if s.size:
        blocks, threads = launch(s.size, FLAT_THREADS, api.CUDA_MAX_BLOCKS)
        gl_ = io.put(gl) if gl is not None else io.empty((1,), dt)
        _kernel(1, dt)[blocks, threads](io.put(x2), io.put(s), io.put(g), gl_, gx, gs, gl is not None, need_gx)
    return (io.get(gx) if need_gx else None), io.get(gs), g


def inverse_grad(y2, s, t, g, gl, e):
    io = CudaIO((y2, s, t, g, gl))
    dt = s.dtype
    gy, gs, gt = io.empty(s.shape, dt), io.empty(s.shape, dt), io.empty(s.shape, dt)
    if s.size:
        blocks, threads = launch(s.size, FLAT_THREADS, api.CUDA_MAX_BLOCKS)
        gl_ = io.put(gl) if gl is not None else io.empty((1,), dt)
        _kernel(2, dt)[blocks, threads](io.put(y2), io.put(s), io.put(t), io.put(g), gl_, gy, gs, gt, gl is not None)
    return io.get(gy), io.get(gs), io.get(gt)
