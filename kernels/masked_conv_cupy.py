"""'cupy', the masked convolution as CuPy RawKernels: the default for CuPy arrays.

The same three kernels as masked_conv_cuda.py, in CUDA C (NCHW, C-contiguous, 64-bit flat
indices). `{T}` is the element type and `{NT}` the weight-grad block size; `cupy_source(dtype)`
fills them in (the tests compile the result with `nvcc --ptx` where nvcc exists, and compare both
GPU paths with the reference on a GPU).

Why CuPy arrays do not simply go through the Numba CUDA kernels (which accept them through
`__cuda_array_interface__`), though that would remove this C copy: measured on an H100
(bench/results_gpu.md, the masked-convolution table), the Numba CUDA build of the same algorithm
runs at about half this kernel's speed at PixelCNN's shapes, and a PixelCNN training step is made
of these kernels. This path is kept where it was measured to pay: the masked convolution's default
on a GPU. The mask logic it repeats is masked_geometry's `centre_inputs` / `centre_first_output`.
"""
import functools

import numpy as np

from . import masked_conv as api
from .dispatch import cupy, launch

SOURCE = r"""
typedef {T} T;
typedef long long i64;

// y[n, o, i, j] = bias[o] + sum over the unmasked taps (a, b) and channels c of
//                 w[o, c, a, b] * x[n, c, i*sh + a - ph, j*sw + b - pw]; one thread per output element.
extern "C" __global__ void masked_conv_forward(
        const T* x, const T* w, const T* bias, T* y, int n, int c_in, int c_out, int h, int wd,
        int ho, int wo, int k, int d, int sh, int sw, int ph, int pw, int type_b, int has_bias) {
    const int p = k / 2, co = c_out / d, ci = c_in / d;
    const i64 total = (i64)n * c_out * ho * wo;
    for (i64 q = (i64)blockIdx.x * blockDim.x + threadIdx.x; q < total; q += (i64)gridDim.x * blockDim.x) {
        const int j = (int)(q % wo);
        i64 r = q / wo;
        const int i = (int)(r % ho);
        r /= ho;
        const int o = (int)(r % c_out);
        const i64 nn = r / c_out;
        const T* xn = x + nn * c_in * h * wd;
        const T* wo_ = w + (i64)o * c_in * k * k;
        T acc = has_bias ? bias[o] : (T)0;
        for (int a = 0; a <= p; ++a) {                 // the rows above, then the centre row
            const int ii = i * sh + a - ph;
            if (ii < 0 || ii >= h) continue;
            const int bmax = a < p ? k : p;            // left of the centre only, in the centre row
            for (int b = 0; b < bmax; ++b) {
                const int jj = j * sw + b - pw;
                if (jj < 0 || jj >= wd) continue;
                for (int c = 0; c < c_in; ++c)
                    acc += wo_[((i64)c * k + a) * k + b] * xn[((i64)c * h + ii) * wd + jj];
            }
        }
        const int ii = i * sh + p - ph, jj = j * sw + p - pw;
        if (ii >= 0 && ii < h && jj >= 0 && jj < wd) {
            const int n_in = (o / co + type_b) * ci;  // the centre: the visible channel prefix
            for (int c = 0; c < n_in; ++c)
                acc += wo_[((i64)c * k + p) * k + p] * xn[((i64)c * h + ii) * wd + jj];
        }
        y[q] = acc;
    }
}

// gx[n, c, u, v] = sum over unmasked (a, b) and o of w[o, c, a, b] * g[n, o, i, j] where
// u = i*sh + a - ph and v = j*sw + b - pw (the taps that read pixel (u, v) in the forward).
extern "C" __global__ void masked_conv_input_grad(
        const T* g, const T* w, T* gx, int n, int c_in, int c_out, int h, int wd, int ho, int wo,
        int k, int d, int sh, int sw, int ph, int pw, int type_a) {
    const int p = k / 2, co = c_out / d, ci = c_in / d;
    const i64 total = (i64)n * c_in * h * wd;
    for (i64 q = (i64)blockIdx.x * blockDim.x + threadIdx.x; q < total; q += (i64)gridDim.x * blockDim.x) {
        const int v = (int)(q % wd);
        i64 r = q / wd;
        const int u = (int)(r % h);
        r /= h;
        const int c = (int)(r % c_in);
        const i64 nn = r / c_in;
        const T* gn = g + nn * c_out * ho * wo;
        int o_centre = (c / ci + type_a) * co;       // the centre: the output channels that see c
        if (o_centre > c_out) o_centre = c_out;
        T acc = 0;
        for (int a = 0; a <= p; ++a) {
            const int ti = u + ph - a;
            if (ti < 0 || ti % sh != 0 || ti / sh >= ho) continue;
            const int i = ti / sh;
            const int bmax = a < p ? k : p + 1;        // the centre row includes the centre
            for (int b = 0; b < bmax; ++b) {
                const int tj = v + pw - b;
                if (tj < 0 || tj % sw != 0 || tj / sw >= wo) continue;
                const int j = tj / sw;
                const int o0 = (a == p && b == p) ? o_centre : 0;
                for (int o = o0; o < c_out; ++o)
                    acc += w[(((i64)o * c_in + c) * k + a) * k + b] * gn[((i64)o * ho + i) * wo + j];
            }
        }
        gx[q] = acc;
    }
}

// gw[o, c, a, b] = sum over n, i, j of g[n, o, i, j] * x[n, c, i*sh + a - ph, j*sw + b - pw] for the
// unmasked entries (gw arrives zero-filled): one block per entry, a tree sum in shared memory.
extern "C" __global__ void masked_conv_weight_grad(
        const T* x, const T* g, T* gw, int n, int c_in, int c_out, int h, int wd, int ho, int wo,
        int k, int d, int sh, int sw, int ph, int pw, int type_b) {
    __shared__ T buf[{NT}];
    const int p = k / 2, co = c_out / d, ci = c_in / d;
    const int tid = threadIdx.x, nt = blockDim.x;
    const i64 n_w = (i64)c_out * c_in * k * k, pixels = (i64)n * ho * wo;
    for (i64 e = blockIdx.x; e < n_w; e += gridDim.x) {
        const int b = (int)(e % k);
        i64 r = e / k;
        const int a = (int)(r % k);
        r /= k;
        const int c = (int)(r % c_in);
        const int o = (int)(r / c_in);
        const bool used = a < p || (a == p && b < p) || (a == p && b == p && c < (o / co + type_b) * ci);
        if (!used) continue;                           // the same for the whole block
        T part = 0;
        for (i64 m = tid; m < pixels; m += nt) {
            const int j = (int)(m % wo);
            const i64 r2 = m / wo;
            const int i = (int)(r2 % ho);
            const i64 nn = r2 / ho;
            const int ii = i * sh + a - ph, jj = j * sw + b - pw;
            if (ii >= 0 && ii < h && jj >= 0 && jj < wd)
                part += g[((nn * c_out + o) * ho + i) * wo + j] * x[((nn * c_in + c) * h + ii) * wd + jj];
        }
        buf[tid] = part;
        __syncthreads();
        for (int step = nt / 2; step > 0; step >>= 1) {
            if (tid < step) buf[tid] += buf[tid + step];
            __syncthreads();
        }
        if (tid == 0) gw[e] = buf[0];
        __syncthreads();                               // buf is reused by the next entry
    }
}
"""

_CTYPES = {"float32": "float", "float64": "double"}


def cupy_source(dtype, threads=None):
    """SOURCE for float32 or float64 with a weight-grad block of `threads` (a power of two;
    default masked_conv.CUDA_THREADS)."""
    threads = api.CUDA_THREADS if threads is None else threads
    return SOURCE.replace("{T}", _CTYPES[np.dtype(dtype).name]).replace("{NT}", str(threads))


@functools.lru_cache(maxsize=None)
def _module(dtype, threads):
    return cupy().RawModule(code=cupy_source(dtype, threads))


def _launch(name, dtype, work, args, per_block=False):
    kernel = _module(np.dtype(dtype).name, api.CUDA_THREADS).get_function(name)
    blocks, threads = launch(work, api.CUDA_THREADS, api.CUDA_MAX_BLOCKS, per_block)
    kernel((blocks,), (threads,), args)


def _ints(*values):
    return tuple(np.int32(v) for v in values)


def _geo_ints(geo):
    return _ints(geo.h, geo.w, geo.ho, geo.wo, geo.k)


def forward(x, w, bias, mask_type, d, geo):
    cp = cupy()
    x, w = cp.ascontiguousarray(x), cp.ascontiguousarray(w)
    n, c_in = x.shape[:2]
    c_out = w.shape[0]
    y = cp.empty((n, c_out, geo.ho, geo.wo), x.dtype)
    if y.size:
        b = cp.ascontiguousarray(bias) if bias is not None else y
        _launch("masked_conv_forward", x.dtype, y.size,
                (x, w, b, y) + _ints(n, c_in, c_out) + _geo_ints(geo)
                + _ints(d, geo.sh, geo.sw, geo.ph, geo.pw, mask_type == "B", bias is not None))
    return y


def input_grad(g, w, mask_type, d, geo):
    cp = cupy()
    g, w = cp.ascontiguousarray(g), cp.ascontiguousarray(w)
    n, c_out = g.shape[:2]
    c_in = w.shape[1]
    gx = cp.zeros((n, c_in, geo.h, geo.w), g.dtype)
    if gx.size and g.size:
        _launch("masked_conv_input_grad", g.dtype, gx.size,
                (g, w, gx) + _ints(n, c_in, c_out) + _geo_ints(geo)
                + _ints(d, geo.sh, geo.sw, geo.ph, geo.pw, mask_type == "A"))
    return gx


def weight_grad(x, g, k, mask_type, d, geo):
    cp = cupy()
    x, g = cp.ascontiguousarray(x), cp.ascontiguousarray(g)
    n, c_in = x.shape[:2]
    c_out = g.shape[1]
    gw = cp.zeros((c_out, c_in, k, k), x.dtype)
    if x.size and g.size:
        _launch("masked_conv_weight_grad", x.dtype, gw.size,
                (x, g, gw) + _ints(n, c_in, c_out) + _geo_ints(geo)
                + _ints(d, geo.sh, geo.sw, geo.ph, geo.pw, mask_type == "B"), per_block=True)
    return gw
