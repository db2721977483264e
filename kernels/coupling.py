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
memory-bound, so the 'cuda' kernels ignore them and recompute, which reads the same bytes).

Implementations, one module each, all built on the element-wise bodies below:
  'reference'  here: NumPy (or CuPy) ufuncs, calling the bodies on whole arrays. The readable
               spec; any array module and dtype. The default for CuPy arrays (below).
  'numba'      coupling_numba.py: Numba CPU loops (bodies inlined, fast_exp.exp). The default
               for NumPy float32/float64 arrays (other dtypes: 'reference').
  'cuda'       coupling_cuda.py: Numba CUDA kernels (bodies as device functions), on NumPy arrays
               (copied to the device and back) or CuPy arrays (in place). Tested under the
               simulator, NUMBA_ENABLE_CUDASIM=1.
`scratchgen.kernels.force_impl(name)` overrides every call (tests, benchmarks).

No CuPy C kernels. CuPy arrays could go through the Numba CUDA kernels (which accept them through
`__cuda_array_interface__`), and a CuPy copy of those kernels in C would only be worth its
duplication if fusing paid on a GPU. It does not: measured on an H100 (bench/results_gpu.md, the
coupling table), the fused CuPy kernels were slower than the unfused ufuncs at NICE's sizes, where
every call is launch-bound (three element-wise kernels and a row sum cost about one launch each
either way). So CuPy arrays run the reference, whose ufuncs are what the unfused ops ran, and
'cuda' stays for a fused GPU pass, written once with the CPU kernels' bodies.

Shared element-wise bodies: `_forward_elem`, `_inverse_elem`, `_forward_grad_elem`,
`_inverse_grad_elem` are plain Python functions, compiled by `dispatch.cpu_inline` for the CPU
loops and `dispatch.device` for the CUDA kernels, and called on whole arrays by the reference.
They take exp(+-s) as an argument rather than calling exp, because exp is the one target-specific
part: the CPU kernels use fast_exp.exp (vectorisable), the GPU kernels the device's exp, the
reference the array module's.

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
import importlib
import sys

from .dispatch import register, select, xp

FAMILY = register("coupling", ("reference", "numba", "cuda"), host="numba", device="reference")
CUDA_MAX_THREADS = 256       # threads per block of the row kernels (a power of two)
CUDA_MAX_BLOCKS = 4096       # grid size cap; the kernels grid-stride over the rest


# ------------------------------------------------------------------------------------------------
# Element-wise bodies, shared by every implementation. e is exp(s) for the forward, exp(-s) for
# the inverse.
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
# 'reference': the spec, the bodies on whole arrays. Array-module generic (NumPy or CuPy).
# ------------------------------------------------------------------------------------------------
def rows(v, s, t, inverse, save_e):
    """(y2, logdet, e) of the forward, or (x2, -logdet, e) of the inverse."""
    if inverse:
        e = xp(s).exp(-s)
        return _inverse_elem(v, e, t), -s.sum(axis=1), e
    e = xp(s).exp(s)
    return _forward_elem(v, e, t), s.sum(axis=1), e


def forward_grad(x2, s, g, gl, e, need_gx):
    gx, gs = _forward_grad_elem(g, x2, xp(s).exp(s) if e is None else e)
    if gl is not None:
        gs = gs + gl[:, None]
    return (gx if need_gx else None), gs, g


def inverse_grad(y2, s, t, g, gl, e):
    gy, gs, gt = _inverse_grad_elem(g, y2, t, xp(s).exp(-s) if e is None else e)
    if gl is not None:
        gs = gs - gl[:, None]
    return gy, gs, gt


@functools.lru_cache(maxsize=None)
def _impl(name):
    """The module with rows / forward_grad / inverse_grad for implementation `name` (this one for
    the reference), imported on first use."""
    if name == "reference":
        return sys.modules[__name__]
    return importlib.import_module(f".coupling_{name}", __package__)


# ------------------------------------------------------------------------------------------------
# Checks and the public functions
# ------------------------------------------------------------------------------------------------
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


def _rows(v, s, t, inverse, save_exp, impl):
    _check((v, s, t), ("y2" if inverse else "x2", "s", "t"))
    out, ld, e = _impl(select(FAMILY, impl, (s, v, t))).rows(v, s, t, inverse, save_exp)
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
    return _impl(select(FAMILY, impl, (s, x2, g, gl))).forward_grad(x2, s, g, gl, exp_s, need_gx2)


def affine_inverse_backward(y2, s, t, g, gl=None, exp_neg_s=None, impl=None):
    """Gradients of <g, x2> + <gl, -logdet> w.r.t. (y2, s, t) for x2 = (y2 - t) exp(-s):
    (g e^-s, -((g (y2 - t)) e^-s) - gl[:, None], -g e^-s)."""
    extra = (exp_neg_s,) if exp_neg_s is not None else ()
    _check((s, y2, t, g) + extra, ("s", "y2", "t", "g", "exp_neg_s"), (gl,))
    return _impl(select(FAMILY, impl, (s, y2, t, g, gl))).inverse_grad(y2, s, t, g, gl, exp_neg_s)
