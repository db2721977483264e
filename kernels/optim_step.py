"""Fused in-place optimizer updates over flat 1-D buffers (Adam/AdamW/AMSGrad, SGD, RMSProp, Adagrad).

Each rule's per-element update is written once, a plain Python function (`adam_update`,
`_sgd_elem`, `_rmsprop_elem`, `_adagrad_elem`), compiled per target:
  'numba'      Numba loops (`_<rule>_par/_ser`) with the body inlined (dispatch.cpu_inline), one pass
               over memory; the prange variant from PARALLEL_MIN elements on
               (`scratchgen.threads.parallel_pays`). Separate functions, not one compiled twice, so
               that `cache=True` files never collide. The default for NumPy float32/float64
               C-contiguous 1-D buffers of one dtype.
  'reference'  NumPy (or CuPy) in-place ufuncs (`_<rule>_ref`), the same steps in the same order;
               the fallback for everything else. (The bodies are scalar code, `math.sqrt` and
               selects, because NumPy's ufuncs have no CUDA form; so the reference spells them out.)
  'cuda'       Adam only: optim_step_cuda.py, a Numba CUDA kernel with `adam_update` as a device
               function (tested under the CUDA simulator).
  'cupy'       Adam only: a CuPy ElementwiseKernel, the default for CuPy buffers. On a GPU the
               reference's ten array operations are ten kernel launches, and at these sizes the
               launches, not the arithmetic, are the cost (bench/results_gpu.md measured the step
               times before and after it). It repeats `adam_update` in C: it is kept because it is the
               measured GPU default and the Numba CUDA kernel has not been timed against it on a GPU.
`scratchgen.kernels.force_impl(name)` overrides the dispatch (tests, benchmarks; 'numpy' is
accepted for 'reference').

Kernels use error_model="numpy" (x/0 gives inf/nan as in NumPy): Python's error model puts a
zero-division check in every division, which stopped the Adam loop from vectorising. fastmath stays
off, so no reassociation or FMA contraction: results match the reference.

The dispatcher turns the hyperparameters into the same scalar coefficients for both forms (Python floats
for the reference, which NumPy keeps in the array dtype; the array dtype for Numba), so both do the same
float operations in the same order: they agree to rounding, usually bitwise. The operation order follows
PyTorch's single-tensor implementations, except that moving averages are written beta*m + (1-beta)*g
where PyTorch uses lerp (a last-bit difference).
"""
import math

import numpy as np
from numba import njit, prange

from scratchgen.threads import parallel_pays

from .dispatch import cpu_inline, forced, on_host, register, select

FAMILY = register("optim", ("reference", "numba", "cuda", "cupy"), host="numba", device="cupy",
                  host_only=("numba",))
PARALLEL_MIN = 1 << 19  # elements; below this waking the sleeping workers costs more than it saves
                        # (bench/parallel_thresholds.py measures the break-even)
CUDA_THREADS = 256      # threads per block of the Numba CUDA kernel
CUDA_MAX_BLOCKS = 4096  # grid size cap; the kernel grid-strides over the rest
_elem = cpu_inline(error_model="numpy")


def _impl(impl, arrays, gpu=False):
    """The implementation for these buffers: `select`'s, where the rule has it (`gpu`: Adam's
    'cuda' and 'cupy'). The compiled forms need C-contiguous 1-D buffers of one float dtype: the
    automatic choice falls back to the reference otherwise, a requested one is an error."""
    name = select(FAMILY, impl, arrays)
    if name in ("cuda", "cupy") and not gpu:
        return "reference"
    if name == "cupy" and on_host(arrays):
        raise TypeError("impl='cupy' updates CuPy buffers in place; these are NumPy arrays")
    dt = arrays[0].dtype
    if name == "reference" or all(a.ndim == 1 and a.dtype == dt and a.flags.c_contiguous for a in arrays):
        return name
    if (forced(FAMILY) or impl or "auto") == "auto":
        return "reference"
    raise TypeError(f"the {name} kernels need float32/float64 C-contiguous 1-D arrays of one dtype")


def _run(par, ser, arrays, coefs, *flags):
    dt = arrays[0].dtype.type
    kernel = par if parallel_pays(arrays[0].size, PARALLEL_MIN) else ser
    kernel(*arrays, tuple(dt(c) for c in coefs), *flags)


# ------------------------------------------------------------------------------------------------
# Adam (Kingma & Ba, 2015, Alg. 1), AMSGrad (Reddi et al., 2018), AdamW (Loshchilov & Hutter, 2019).
# With learning rate eta, weight decay lambda, step t = 1, 2, ...:
#   g_t     = grad f(theta_{t-1})                         (+ lambda * theta_{t-1}  for Adam's L2 decay)
#   theta_{t-1} <- (1 - eta * lambda) * theta_{t-1}       (AdamW: decoupled decay, applied first)
#   m_t     = beta1 * m_{t-1} + (1 - beta1) * g_t
#   v_t     = beta2 * v_{t-1} + (1 - beta2) * g_t^2
#   vmax_t  = max(vmax_{t-1}, v_t)                        (AMSGrad: used in place of v_t below)
#   theta_t = theta_{t-1} - eta / (1 - beta1^t) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)
# i.e. eta * mhat_t / (sqrt(vhat_t) + eps') with eps placed as in PyTorch. Without bias correction:
#   theta_t = theta_{t-1} - eta * m_t / (sqrt(v_t) + eps).
# Then m_t, v_t and theta_t below the dtype's smallest normal number (`tiny`, 1.2e-38 in float32) are
# set to 0. Subnormal floats take a microcode assist on x86, tens of times slower per operation, and
# training puts many there: the first moments of dead ReLU units decay by beta1 every step, and MADE's
# masked-out weights decay under L2 towards 0 (over half of a MAF's moments by epoch 20). Flushing
# them, as torch.set_flush_denormal(True) does for a whole process, moves nothing by more than `tiny`.
# coefs c = (lambda, 1 - eta*lambda, beta1, 1 - beta1, beta2, 1 - beta2, step_size, sqrt(1 - beta2^t), eps, tiny)
# ------------------------------------------------------------------------------------------------
def adam_update(p, g, m, v, vmax, c, decoupled, amsgrad):
    """One element's Adam step, compiled for the CPU loops and as a CUDA device function: returns
    (p, m, v, vmax). Written with `math.sqrt` and a select, which both targets compile (NumPy's
    ufuncs have no CUDA form), so the reference below spells the same steps with ufuncs."""
    wd, decay, b1, omb1, b2, omb2, step_size, bc2_sqrt, eps, tiny = c
    zero = tiny - tiny   # 0 in the array dtype
    if wd != 0:
        if decoupled:
            p = p * decay
        else:
            g = g + wd * p
    m = b1 * m + omb1 * g
    v = b2 * v + omb2 * g * g
    m = zero if abs(m) < tiny else m   # subnormals to 0 (see above); a nan stays a nan
    v = zero if v < tiny else v
    vh = v
    if amsgrad:
        vmax = v if (v > vmax or v != v) else vmax     # np.maximum's: a nan propagates
        vh = vmax
    p = p - step_size * (m / (math.sqrt(vh) / bc2_sqrt + eps))
    p = zero if abs(p) < tiny else p
    return p, m, v, vmax


_adam_elem = _elem(adam_update)


@njit(parallel=True, cache=True, error_model="numpy")
def _adam_par(p, g, m, v, vmax, c, decoupled, amsgrad):
    for i in prange(p.size):
        vm = vmax[i] if amsgrad else v[i]  # vmax is an empty placeholder unless amsgrad
        p[i], m[i], v[i], vm = _adam_elem(p[i], g[i], m[i], v[i], vm, c, decoupled, amsgrad)
        if amsgrad:
            vmax[i] = vm


@njit(cache=True, error_model="numpy")
def _adam_ser(p, g, m, v, vmax, c, decoupled, amsgrad):
    for i in range(p.size):
        vm = vmax[i] if amsgrad else v[i]
        p[i], m[i], v[i], vm = _adam_elem(p[i], g[i], m[i], v[i], vm, c, decoupled, amsgrad)
        if amsgrad:
            vmax[i] = vm


def _adam_ref(p, g, m, v, vmax, c, decoupled, amsgrad):
    """adam_update's steps in place with ufuncs (NumPy or CuPy arrays)."""
    wd, decay, b1, omb1, b2, omb2, step_size, bc2_sqrt, eps, tiny = c
    if wd != 0:
        if decoupled:
            p *= decay
        else:
            g = g + wd * p
    m *= b1
    m += omb1 * g
    v *= b2
    v += omb2 * g * g
    m[abs(m) < tiny] = 0
    v[v < tiny] = 0
    vh = v
    if amsgrad:
        np.maximum(vmax, v, out=vmax)
        vh = vmax
    p -= step_size * (m / (np.sqrt(vh) / bc2_sqrt + eps))
    p[abs(p) < tiny] = 0


def _adam_cuda(p, g, m, v, vmax, c, decoupled, amsgrad):
    from .optim_step_cuda import adam
    adam(p, g, m, v, vmax, c, decoupled, amsgrad)


# The same update as adam_update, in CUDA C, one thread per element, coefficients in the array dtype.
_ADAM_CUDA = """
    T gr = g;
    if (wd != 0) { if (decoupled) p = p * decay; else gr = gr + wd * p; }
    m = b1 * m + omb1 * gr;
    v = b2 * v + omb2 * gr * gr;
    if (fabs(m) < tiny) m = 0;
    if (v < tiny) v = 0;
    %s
    p = p - step_size * (m / (sqrt(vh) / bc2_sqrt + eps));
    if (fabs(p) < tiny) p = 0;
"""
_cupy_kernels = {}


def _adam_cupy(p, g, m, v, vmax, c, decoupled, amsgrad):
    import cupy
    key = ("adam", amsgrad)
    if key not in _cupy_kernels:
        params = ("T g, T wd, T decay, T b1, T omb1, T b2, T omb2, T step_size, T bc2_sqrt, T eps, T tiny, "
                  "bool decoupled")
        _cupy_kernels[key] = cupy.ElementwiseKernel(
            params, "T p, T m, T v" + (", T vmax" if amsgrad else ""),
            _ADAM_CUDA % ("vmax = max(vmax, v); T vh = vmax;" if amsgrad else "T vh = v;"),
            "scratchgen_amsgrad" if amsgrad else "scratchgen_adam")
    dt = p.dtype.type
    _cupy_kernels[key](g, *(dt(x) for x in c), decoupled, p, m, v, *((vmax,) if amsgrad else ()))


def adam(p, g, m, v, vmax=None, *, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, step=1,
         amsgrad=False, decoupled=False, bias_correction=True, impl=None):
    """One Adam/AdamW step, in place on p, m, v (and vmax with amsgrad). `step` is t (1-based)."""
    if bias_correction:
        step_size, bc2_sqrt = lr / (1 - beta1 ** step), math.sqrt(1 - beta2 ** step)
    else:
        step_size, bc2_sqrt = lr, 1.0
    tiny = float(np.finfo(p.dtype).tiny) if p.dtype.kind == "f" else 0.0
    c = (weight_decay, 1 - lr * weight_decay, beta1, 1 - beta1, beta2, 1 - beta2, step_size, bc2_sqrt, eps, tiny)
    arrays = (p, g, m, v, vmax if amsgrad else p[:0])
    name = _impl(impl, arrays, gpu=True)
    if name == "numba":
        _run(_adam_par, _adam_ser, arrays, c, bool(decoupled), bool(amsgrad))
    elif name == "reference":
        _adam_ref(*arrays, tuple(float(x) for x in c), decoupled, amsgrad)
    else:
        dt = p.dtype.type
        (_adam_cuda if name == "cuda" else _adam_cupy)(*arrays, tuple(dt(x) for x in c), bool(decoupled),
                                                       bool(amsgrad))


# ------------------------------------------------------------------------------------------------
# SGD with momentum mu, dampening tau, Nesterov (Sutskever et al., 2013, as formulated in PyTorch):
#   g_t     = grad f(theta_{t-1}) + lambda * theta_{t-1}
#   b_t     = g_t                                   if t == 1  (first step: buffer starts at the gradient)
#           = mu * b_{t-1} + (1 - tau) * g_t        otherwise
#   d_t     = g_t + mu * b_t  (Nesterov)  |  b_t  (momentum)  |  g_t  (mu == 0)
#   theta_t = theta_{t-1} - gamma * d_t
# coefs c = (gamma, mu, 1 - tau, lambda)
# ------------------------------------------------------------------------------------------------
@_elem
def _sgd_elem(p, g, b, c, nesterov, first):
    lr, mu, omd, wd = c
    if wd != 0:
        g = g + wd * p
    if mu != 0:
        b = g if first else mu * b + omd * g
        g = g + mu * b if nesterov else b
    return p - lr * g, b


@njit(parallel=True, cache=True, error_model="numpy")
def _sgd_par(p, g, buf, c, nesterov, first):
    has_buf = buf.size > 0
    for i in prange(p.size):
        b = buf[i] if has_buf else p[i]
        p[i], b = _sgd_elem(p[i], g[i], b, c, nesterov, first)
        if has_buf:
            buf[i] = b


@njit(cache=True, error_model="numpy")
def _sgd_ser(p, g, buf, c, nesterov, first):
    has_buf = buf.size > 0
    for i in range(p.size):
        b = buf[i] if has_buf else p[i]
        p[i], b = _sgd_elem(p[i], g[i], b, c, nesterov, first)
        if has_buf:
            buf[i] = b


def _sgd_ref(p, g, buf, c, nesterov, first):
    lr, mu, omd, wd = c
    if wd != 0:
        g = g + wd * p
    if mu != 0:
        if first:
            buf[...] = g
        else:
            buf *= mu
            buf += omd * g
        g = g + mu * buf if nesterov else buf
    p -= lr * g


def sgd(p, g, buf=None, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, first=False,
        impl=None):
    """One SGD step in place on p (and the momentum buffer `buf`, needed when momentum != 0)."""
    c = (lr, momentum, 1 - dampening, weight_decay)
    arrays = (p, g, buf if momentum != 0 else p[:0])
    if _impl(impl, arrays) == "numba":
        _run(_sgd_par, _sgd_ser, arrays, c, bool(nesterov), bool(first))
    else:
        _sgd_ref(*arrays, tuple(float(x) for x in c), nesterov, first)


# ------------------------------------------------------------------------------------------------
# RMSProp (Hinton, Coursera lecture 6e), centered variant (Graves, 2013), as in PyTorch:
#   g_t     = grad f(theta_{t-1}) + lambda * theta_{t-1}
#   v_t     = alpha * v_{t-1} + (1 - alpha) * g_t^2
#   centered: gbar_t = alpha * gbar_{t-1} + (1 - alpha) * g_t;  vtilde_t = v_t - gbar_t^2
#   else:     vtilde_t = v_t
#   mu > 0:   b_t = mu * b_{t-1} + g_t / (sqrt(vtilde_t) + eps);  theta_t = theta_{t-1} - gamma * b_t
#   else:     theta_t = theta_{t-1} - gamma * g_t / (sqrt(vtilde_t) + eps)
# coefs c = (gamma, alpha, 1 - alpha, eps, lambda, mu)
# ------------------------------------------------------------------------------------------------
@_elem
def _rmsprop_elem(p, g, v, gbar, b, c, centered):
    lr, alpha, oma, eps, wd, mu = c
    if wd != 0:
        g = g + wd * p
    v = alpha * v + oma * g * g
    if centered:
        gbar = alpha * gbar + oma * g
        avg = math.sqrt(v - gbar * gbar) + eps
    else:
        avg = math.sqrt(v) + eps
    if mu > 0:
        b = mu * b + g / avg
        p = p - lr * b
    else:
        p = p - lr * (g / avg)
    return p, v, gbar, b


@njit(parallel=True, cache=True, error_model="numpy")
def _rmsprop_par(p, g, v, gbar, buf, c, centered):
    has_buf = buf.size > 0
    for i in prange(p.size):
        gb = gbar[i] if centered else p[i]  # gbar / buf are empty placeholders when unused
        b = buf[i] if has_buf else p[i]
        p[i], v[i], gb, b = _rmsprop_elem(p[i], g[i], v[i], gb, b, c, centered)
        if centered:
            gbar[i] = gb
        if has_buf:
            buf[i] = b


@njit(cache=True, error_model="numpy")
def _rmsprop_ser(p, g, v, gbar, buf, c, centered):
    has_buf = buf.size > 0
    for i in range(p.size):
        gb = gbar[i] if centered else p[i]
        b = buf[i] if has_buf else p[i]
        p[i], v[i], gb, b = _rmsprop_elem(p[i], g[i], v[i], gb, b, c, centered)
        if centered:
            gbar[i] = gb
        if has_buf:
            buf[i] = b


def _rmsprop_ref(p, g, v, gbar, buf, c, centered):
    lr, alpha, oma, eps, wd, mu = c
    if wd != 0:
        g = g + wd * p
    v *= alpha
    v += oma * g * g
    if centered:
        gbar *= alpha
        gbar += oma * g
        avg = np.sqrt(v - gbar * gbar) + eps
    else:
        avg = np.sqrt(v) + eps
    if mu > 0:
        buf *= mu
        buf += g / avg
        p -= lr * buf
    else:
        p -= lr * (g / avg)


def rmsprop(p, g, square_avg, grad_avg=None, buf=None, *, lr, alpha=0.99, eps=1e-8, weight_decay=0.0,
            momentum=0.0, centered=False, impl=None):
    """One RMSProp step in place on p, square_avg (and grad_avg if centered, buf if momentum > 0)."""
    c = (lr, alpha, 1 - alpha, eps, weight_decay, momentum)
    arrays = (p, g, square_avg, grad_avg if centered else p[:0], buf if momentum > 0 else p[:0])
    if _impl(impl, arrays) == "numba":
        _run(_rmsprop_par, _rmsprop_ser, arrays, c, bool(centered))
    else:
        _rmsprop_ref(*arrays, tuple(float(x) for x in c), centered)


# ------------------------------------------------------------------------------------------------
# Adagrad (Duchi et al., 2011), as in PyTorch:
#   g_t     = grad f(theta_{t-1}) + lambda * theta_{t-1}
#   s_t     = s_{t-1} + g_t^2
#   theta_t = theta_{t-1} - gamma_t * g_t / (sqrt(s_t) + eps),   gamma_t = gamma / (1 + (t - 1) * decay)
# coefs c = (gamma_t, eps, lambda)
# ------------------------------------------------------------------------------------------------
@_elem
def _adagrad_elem(p, g, s, c):
    lr, eps, wd = c
    if wd != 0:
        g = g + wd * p
    s = s + g * g
    return p - lr * (g / (math.sqrt(s) + eps)), s


@njit(parallel=True, cache=True, error_model="numpy")
def _adagrad_par(p, g, s, c):
    for i in prange(p.size):
        p[i], s[i] = _adagrad_elem(p[i], g[i], s[i], c)


@njit(cache=True, error_model="numpy")
def _adagrad_ser(p, g, s, c):
    for i in range(p.size):
        p[i], s[i] = _adagrad_elem(p[i], g[i], s[i], c)


def _adagrad_ref(p, g, s, c):
    lr, eps, wd = c
    if wd != 0:
        g = g + wd * p
    s += g * g
    p -= lr * (g / (np.sqrt(s) + eps))


def adagrad(p, g, state_sum, *, lr, lr_decay=0.0, eps=1e-10, weight_decay=0.0, step=1, impl=None):
    """One Adagrad step in place on p and state_sum (the running sum of squared gradients)."""
    c = (lr / (1 + (step - 1) * lr_decay), eps, weight_decay)
    arrays = (p, g, state_sum)
    if _impl(impl, arrays) == "numba":
        _run(_adagrad_par, _adagrad_ser, arrays, c)
    else:
        _adagrad_ref(*arrays, tuple(float(x) for x in c))
