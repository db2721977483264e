"""Reductions over an axis, a tuple of axes, or everything (axis=None), with keepdims."""
import builtins

import numpy as np

from ..tensor import Tensor, record


def normalize_axis(axis, ndim, op="reduce"):
    """A sorted tuple of non-negative axes; a clear error for an axis the shape lacks."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    for a in axes:
        if not -ndim <= a < builtins.max(ndim, 1):
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} dims")
    return tuple(sorted(a % ndim for a in axes)) if ndim else ()


def kept_shape(shape, axes):
    """The shape a keepdims=True reduction over `axes` would give."""
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _expand_back(g, x_shape, axes, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input again."""
    return g if keepdims else g.reshape(kept_shape(x_shape, axes))


def sum(x, axis=None, keepdims=False):
    axes = normalize_axis(axis, x.ndim, "sum")
    return record(x.data.sum(axis=axes, keepdims=keepdims), sum_vjp, (x,), axes=axes, keepdims=keepdims)


def sum_vjp(g, out, x, *, axes, keepdims):
    return (_expand_back(g, x.shape, axes, keepdims).broadcast_to(x.shape),)


def _count(x, axes):
    n = 1
    for a in axes:
        n *= x.shape[a]
    return n


def mean(x, axis=None, keepdims=False):
    axes = normalize_axis(axis, x.ndim, "mean")
    return sum(x, axes, keepdims) / _count(x, axes)


def var(x, axis=None, keepdims=False, correction=0):
    """Variance; correction=1 gives the unbiased estimate (torch.var's default is 1)."""
    axes = normalize_axis(axis, x.ndim, "var")
    centred = x - mean(x, axes, keepdims=True)
    return sum(centred * centred, axes, keepdims) / (_count(x, axes) - correction)


def std(x, axis=None, keepdims=False, correction=0):
    """sqrt(var). Where the variance is zero (a single element, a constant slice) the gradient is
    0, as in PyTorch: sqrt's rule would give 0 * inf there."""
    v = var(x, axis, keepdims, correction)
    return record(x.xp.sqrt(v.data), std_from_var_vjp, (v,))


def std_from_var_vjp(g, out, v):
    from .elementwise import where
    flat = out.data == 0
    safe = where(flat, 1.0, out)  # a stand-in where masked: no inf for where to hide
    return (where(flat, 0.0, g / (safe * 2)),)


def max(x, axis=None, keepdims=False):
    """Like torch.amax: tied maxima share the gradient equally."""
    axes = normalize_axis(axis, x.ndim, "max")
    return record(x.data.max(axis=axes, keepdims=keepdims), extreme_vjp, (x,), axes=axes, keepdims=keepdims)


def min(x, axis=None, keepdims=False):
    axes = normalize_axis(axis, x.ndim, "min")
    return record(x.data.min(axis=axes, keepdims=keepdims), extreme_vjp, (x,), axes=axes, keepdims=keepdims)


def extreme_vjp(g, out, x, *, axes, keepdims):
    hit = (x.data == _expand_back(out, x.shape, axes, keepdims).data).astype(x.data.dtype)
    share = Tensor(hit / hit.sum(axis=axes, keepdims=True))
    return (_expand_back(g, x.shape, axes, keepdims) * share,)


def _shift(x, axes):
    """The max over `axes` (kept), or 0 where it is not finite or the axes are empty (log of an
    empty sum is -inf, as in PyTorch)."""
    xp = x.xp
    if x.data.size == 0:
        return xp.zeros(kept_shape(x.shape, axes), dtype=x.dtype)
    m = x.data.max(axis=axes, keepdims=True)
    return xp.where(xp.isfinite(m), m, 0)  # all -inf (or an inf) would give nan after shifting


def logsumexp(x, axis=None, keepdims=False, b=None):
    """log(sum(exp(x))), shifted by the max so it neither overflows nor underflows.
    b: non-negative weights, log(sum(b * exp(x))) (scipy's b=), as logsumexp(x + log b)."""
    if b is not None:
        from .elementwise import log
        from ..tensor import as_tensor
        b = as_tensor(b, like=x)
        if bool((b.data < 0).any()):
            raise ValueError("logsumexp: weights b must be >= 0 (a signed sum has no real log)")
        with np.errstate(divide="ignore"):
            return logsumexp(x + log(b), axis, keepdims)
    xp = x.xp
    axes = normalize_axis(axis, x.ndim, "logsumexp")
    m = _shift(x, axes)
    with np.errstate(divide="ignore"):  # a row of all -inf has logsumexp -inf, as it should
        s = xp.log(xp.exp(x.data - m).sum(axis=axes, keepdims=True)) + m
    out = s if keepdims else s.reshape([n for i, n in enumerate(x.shape) if i not in axes])
    return record(out, logsumexp_vjp, (x,), axes=axes, keepdims=keepdims)


def logsumexp_vjp(g, out, x, *, axes, keepdims):
    # d/dx logsumexp = softmax(x). Shifting by the (constant) max rather than by `out`
    # keeps float32 precise when |x| is large; the result is differentiable again.
    shift = Tensor(_shift(x, axes))
    e = (x - shift).exp()
    return (_expand_back(g, x.shape, axes, keepdims) * e / e.sum(axis=axes, keepdims=True),)


def argmax(x, axis=None):
    return Tensor(x.data.argmax(axis=axis))


def argmin(x, axis=None):
    return Tensor(x.data.argmin(axis=axis))
