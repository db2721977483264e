"""Differentiable fused affine coupling (RealNVP): one kernel pass instead of five engine ops.

    y2, logdet = affine_coupling(x2, s, t)            # y2 = x2 * exp(s) + t,  logdet = s.sum(1)
    x2, neg_ld = affine_coupling_inverse(y2, s, t)    # x2 = (y2 - t) * exp(-s), neg_ld = -s.sum(1)

Inputs are (N, D) tensors of one shape (or (N, ...): logdet sums over every non-batch axis),
typically s, t = net(x1). Values and first-order gradients agree, to rounding, with the unfused
`x2 * s.exp() + t` and `s.sum(1)` (same operation order; only exp's last bit may differ);
gradcheck and gradgradcheck pass for both ops. Mixed float dtypes are promoted (NumPy rules,
through differentiable casts); an integer operand takes the floating dtype of the others.

Two outputs from one op. The engine's `record` makes one output per op. Here that is no
obstacle: logdet depends on s alone, so the op records two nodes, y2 (inputs x2, s, t) and
logdet (input s), and the engine adds their gradients for s as it does for any tensor used
twice. Each output is a plain contiguous tensor that can be used alone (sampling needs only
y2), and nothing is packed or scattered. The price is one add pass over s's gradient, which
the unfused composition pays too; the standalone kernel `affine_forward_backward(..., gl=...)`
can fold that add in for callers that hold both gradients at once.

Backward rules. With create_graph=False the engine runs the vjps under no_grad; the vjp then
calls the fused backward kernel (one pass: gx2 = g e^s, gs = (g x2) e^s, and gt = g itself).
With create_graph=True grad mode is on inside the vjp, and it composes the same formulas from
engine ops (`g * s.exp()`, ...), so the result is differentiable again (gradient penalties,
second order). On NumPy arrays the forward also keeps exp(s) for the backward when a graph is
recorded (exp dominates the CPU cost; the unfused graph keeps the same array); on a GPU the
backward recomputes it, which reads the same number of bytes.

Kernels: scratchgen.kernels.coupling (Numba CPU for NumPy arrays, a CuPy kernel for CuPy
arrays), imported on first use so `import scratchgen` does not load Numba. `impl=` forces an
implementation ('reference', 'numba', 'cuda', 'cupy'), for tests and benchmarks.
"""
import numpy as np

from ..grad_mode import _GradMode
from ..tensor import Tensor, as_tensor, record

_K = None


def _kernels():
    global _K
    if _K is None:
        from ..kernels import coupling
        _K = coupling
    return _K


def _operands(name, *xs):
    xs = [x if isinstance(x, Tensor) else as_tensor(x) for x in xs]
    shape = xs[0].shape
    for x in xs:
        if x.shape != shape:
            raise ValueError(f"{name}: x2, s and t need one shape, got {[x.shape for x in xs]}")
    if len(shape) < 2:
        raise ValueError(f"{name}: inputs need a batch axis and at least one feature axis, got shape {shape}")
    floats = [x.data.dtype for x in xs if x.data.dtype.kind == "f"]
    dtype = np.result_type(*floats) if floats else np.dtype(np.float32)
    return [x.astype(dtype) for x in xs]


def _rows(a):
    """(N, ...) array as (N, D): a view when a is contiguous."""
    return a.reshape(a.shape[0], -1)


def _will_record(*xs):
    return _GradMode.enabled and any(x._requires_grad for x in xs)


def _grad_array(g, like):
    d = g.data
    return _rows(d if d.dtype == like.dtype else d.astype(like.dtype))


# -- forward -------------------------------------------------------------------------
def affine_coupling(x2, s, t, impl=None):
    """(y2, logdet): y2 = x2 * exp(s) + t and logdet = log|det dy2/dx2| = s summed over features."""
    x2, s, t = _operands("affine_coupling", x2, s, t)
    save = _will_record(x2, s, t) and isinstance(s.data, np.ndarray)
    res = _kernels().affine_forward(_rows(x2.data), _rows(s.data), _rows(t.data), save_exp=save, impl=impl)
    y2 = record(res[0].reshape(s.shape), affine_coupling_vjp, (x2, s, t),
                exp_s=res[2] if save else None, impl=impl)
    return y2, record(res[1], logdet_vjp, (s,), sign=1)


def affine_coupling_vjp(g, out, x2, s, t, *, exp_s, impl):
    need_x, need_s = x2._requires_grad, s._requires_grad
    gt = g if t._requires_grad else None
    if _GradMode.enabled:  # create_graph: differentiable composition, same formulas
        e = s.exp()
        return (g * e if need_x else None), (g * x2 * e if need_s else None), gt
    if not (need_x or need_s):
        return None, None, gt
    gx, gs, _ = _kernels().affine_forward_backward(
        _rows(x2.data), _rows(s.data), _grad_array(g, s.data), exp_s=exp_s, need_gx2=need_x, impl=impl)
    return ((Tensor(gx.reshape(s.shape)) if need_x else None),
            (Tensor(gs.reshape(s.shape)) if need_s else None), gt)


def logdet_vjp(g, out, s, *, sign):
    g = g if sign > 0 else -g
    return (g.reshape((s.shape[0],) + (1,) * (s.ndim - 1)).broadcast_to(s.shape),)


# -- inverse -------------------------------------------------------------------------
def affine_coupling_inverse(y2, s, t, impl=None):
    """(x2, -logdet): x2 = (y2 - t) * exp(-s), the inverse of affine_coupling for the same s, t."""
    y2, s, t = _operands("affine_coupling_inverse", y2, s, t)
    save = _will_record(y2, s, t) and isinstance(s.data, np.ndarray)
    res = _kernels().affine_inverse(_rows(y2.data), _rows(s.data), _rows(t.data), save_exp=save, impl=impl)
    x2 = record(res[0].reshape(s.shape), affine_coupling_inverse_vjp, (y2, s, t),
                exp_neg_s=res[2] if save else None, impl=impl)
    return x2, record(res[1], logdet_vjp, (s,), sign=-1)


def affine_coupling_inverse_vjp(g, out, y2, s, t, *, exp_neg_s, impl):
    need_y, need_s, need_t = y2._requires_grad, s._requires_grad, t._requires_grad
    if _GradMode.enabled:
        e = (-s).exp()
        gy = g * e
        return ((gy if need_y else None), (-(g * (y2 - t) * e) if need_s else None),
                (-gy if need_t else None))
    gy, gs, gt = _kernels().affine_inverse_backward(
        _rows(y2.data), _rows(s.data), _rows(t.data), _grad_array(g, s.data), exp_neg_s=exp_neg_s, impl=impl)
    return tuple(Tensor(a.reshape(s.shape)) if need else None
                 for a, need in ((gy, need_y), (gs, need_s), (gt, need_t)))
