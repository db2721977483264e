"""'cuda', the masked convolution as Numba CUDA kernels (run on the CPU under NUMBA_ENABLE_CUDASIM=1).

Direct kernels with bounds checks instead of padding (no padded copies on the device). Forward and
input grad: one thread per output element, grid-stride. Weight grad: one block per weight entry,
its threads stride over the images' pixels, then a shared-memory tree sum (deterministic); masked
entries are skipped (the output starts at zero). The channel rules at the centre are
masked_geometry's functions, compiled as device functions. NumPy inputs are copied to the device
and back; CuPy inputs stay on the device (dispatch.CudaIO).

This module imports numba.cuda: masked_conv.py imports it on the first call with impl='cuda'.
`cuda` is a module global on purpose: the simulator swaps the module globals that refer to
numba.cuda for its fake module while a kernel runs.
"""
import functools

import numba
import numpy as np

from . import masked_conv as api
from .dispatch import CudaIO, device, launch
from .dispatch import cuda as _import_cuda
from .masked_geometry import centre_first_output, centre_inputs

cuda = _import_cuda()

_centre_inputs = device(centre_inputs)
_centre_first_output = device(centre_first_output)


@functools.lru_cache(maxsize=None)
def _kernels(dtype, nmax):
    """(forward, input_grad, weight_grad) for arrays of `dtype`; weight_grad blocks have <= nmax threads."""
    acc_t = numba.from_dtype(np.dtype(dtype))

    @cuda.jit
    def forward(x, w, bias, y, has_bias, type_b, d, sh, sw, ph, pw, zero):
        n, c_in, h, wd = x.shape
        _, c_out, ho, wo = y.shape
        k = w.shape[2]
        p = k // 2
        for q in range(cuda.grid(1), n * c_out * ho * wo, cuda.gridsize(1)):
            j = q % wo
            r = q // wo
            i = r % ho
            r //= ho
            o = r % c_out
            nn = r // c_out
            acc = bias[o] if has_bias else zero
            for a in range(p + 1):
                ii = i * sh + a - ph
                if 0 <= ii < h:
                    for b in range(k if a < p else p):
                        jj = j * sw + b - pw
                        if 0 <= jj < wd:
                            for c in range(c_in):
                                acc += w[o, c, a, b] * x[nn, c, ii, jj]
            ii, jj = i * sh - ph + p, j * sw - pw + p
            if 0 <= ii < h and 0 <= jj < wd:
                for c in range(_centre_inputs(o, c_out // d, c_in // d, type_b)):
                    acc += w[o, c, p, p] * x[nn, c, ii, jj]
            y[nn, o, i, j] = acc

    @cuda.jit
    def input_grad(g, w, gx, type_a, d, sh, sw, ph, pw, zero):
        # gx[c, u, v] gathers g[o, i, j] over the taps with u = i * sh + a - ph, v = j * sw + b - pw.
        n, c_out, ho, wo = g.shape
        _, c_in, h, wd = gx.shape
        k = w.shape[2]
        p = k // 2
        for q in range(cuda.grid(1), n * c_in * h * wd, cuda.gridsize(1)):
            v = q % wd
            r = q // wd
            u = r % h
            r //= h
            c = r % c_in
            nn = r // c_in
            acc = zero
            for a in range(p + 1):
                ti = u + ph - a
                if ti >= 0 and ti % sh == 0 and ti // sh < ho:
                    i = ti // sh
                    last = a == p
                    for b in range(k if a < p else p + 1):
                        tj = v + pw - b
                        if tj >= 0 and tj % sw == 0 and tj // sw < wo:
                            j = tj // sw
                            o0 = 0
                            if last and b == p:
                                o0 = _centre_first_output(c, c_out // d, c_in // d, type_a, c_out)
                            for o in range(o0, c_out):
                                acc += w[o, c, a, b] * g[nn, o, i, j]
            gx[nn, c, u, v] = acc

    @cuda.jit
    def weight_grad(x, g, gw, type_b, d, sh, sw, ph, pw, zero):
        buf = cuda.shared.array(nmax, acc_t)
        tid, nt = cuda.threadIdx.x, cuda.blockDim.x
        n, c_in, h, wd = x.shape
        _, c_out, ho, wo = g.shape
        k = gw.shape[2]
        p = k // 2
        for e in range(cuda.blockIdx.x, c_out * c_in * k * k, cuda.gridDim.x):
            b = e % k
            r = e // k
            a = r % k
            r //= k
            c = r % c_in
            o = r // c_in
            used = a < p or (a == p and b < p) or (
                a == p and b == p and c < _centre_inputs(o, c_out // d, c_in // d, type_b))
            if used:                                   # the same for the whole block
                part = zero
                for m in range(tid, n * ho * wo, nt):
                    j = m % wo
                    r2 = m // wo
                    i = r2 % ho
                    nn = r2 // ho
                    ii, jj = i * sh + a - ph, j * sw + b - pw
                    if 0 <= ii < h and 0 <= jj < wd:
                        part += g[nn, o, i, j] * x[nn, c, ii, jj]
                buf[tid] = part
                cuda.syncthreads()
                step = nt // 2
                while step > 0:
                    if tid < step:
                        buf[tid] += buf[tid + step]
                    cuda.syncthreads()
                    step //= 2
                if tid == 0:
                    gw[o, c, a, b] = buf[0]
                cuda.syncthreads()                     # buf is reused by the next entry

    return forward, input_grad, weight_grad


def _run(which, out, work, args, per_block=False):
    """Launch kernel `which` of out's dtype over `work` items (none: nothing to do)."""
    if work:
        blocks, threads = launch(work, api.CUDA_THREADS, api.CUDA_MAX_BLOCKS, per_block,
                                 sim_threads=4 if per_block else 32)
        _kernels(np.dtype(out.dtype).str, api.CUDA_THREADS)[which][blocks, threads](*args)


def forward(x, w, bias, mask_type, d, geo):
    io = CudaIO((x, w, bias))
    y = io.zeros((x.shape[0], w.shape[0], geo.ho, geo.wo), x.dtype)
    b = io.put(bias) if bias is not None else io.zeros((1,), x.dtype)
    _run(0, y, y.size, (io.put(x), io.put(w), b, y, bias is not None, int(mask_type == "B"), d,
                        geo.sh, geo.sw, geo.ph, geo.pw, x.dtype.type(0)))
    return io.get(y)


def input_grad(g, w, mask_type, d, geo):
    io = CudaIO((g, w))
    gx = io.zeros((g.shape[0], w.shape[1], geo.h, geo.w), g.dtype)
    _run(1, gx, gx.size if g.size else 0, (io.put(g), io.put(w), gx, int(mask_type == "A"), d,
                                          geo.sh, geo.sw, geo.ph, geo.pw, g.dtype.type(0)))
    return io.get(gx)


def weight_grad(x, g, k, mask_type, d, geo):
    io = CudaIO((x, g))
    gw = io.zeros((g.shape[1], x.shape[1], k, k), x.dtype)
    _run(2, gw, gw.size if x.size and g.size else 0, (io.put(x), io.put(g), gw, int(mask_type == "B"), d,
                                                     geo.sh, geo.sw, geo.ph, geo.pw, x.dtype.type(0)),
         per_block=True)
    return io.get(gw)
