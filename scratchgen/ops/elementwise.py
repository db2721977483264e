"""Elementwise ops. Each forward is followed by its vector-Jacobian product (vjp).

A vjp gets the output's gradient `g`, the output `out` and the op's inputs, and returns
one gradient per input (None where the input needs none). It uses Tensor ops only, so
differentiating it again gives second- and higher-order gradients.

Dtype rule for two operands: NumPy promotion (float32 with float64 gives float64);
a Python number takes the tensor's dtype; an integer or bool tensor meeting a float
tensor is cast to that float dtype (as in PyTorch, unlike NumPy's int64+float32=float64).
"""
import operator

from .. import backend
from ..tensor import Tensor, as_tensor, record


def operands(x, y):
    if not isinstance(x, Tensor):
        x = as_tensor(x, like=y if isinstance(y, Tensor) else None)
    if not isinstance(y, Tensor):
        y = as_tensor(y, like=x)
    kx, ky = x.data.dtype.kind, y.data.dtype.kind
    # Integers take the float's dtype (NumPy would promote float32 * int64 to float64). Booleans
    # need no copy: float * bool keeps the float dtype (relu's vjp multiplies by a mask).
    if kx != ky:
        if kx == "f" and ky in "iu":
            y = Tensor(y.data.astype(x.data.dtype))
        elif ky == "f" and kx in "iu":
            x = Tensor(x.data.astype(y.data.dtype))
    return x, y


def broadcast(fn, name, x, y):
    try:
        return fn(x.data, y.data)
    except ValueError:
        raise ValueError(f"{name}: shapes {x.shape} and {y.shape} do not broadcast; every axis, "
                         f"aligned from the right, must be equal or 1") from None


def unbroadcast(g, shape):
    """Sum a gradient back down to `shape`, undoing NumPy broadcasting."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape)


# -- arithmetic ----------------------------------------------------------------------
def add(x, y):
    x, y = operands(x, y)
    return record(broadcast(operator.add, "add", x, y), add_vjp, (x, y))


def add_vjp(g, out, x, y):
    return (unbroadcast(g, x.shape) if x._requires_grad else None,
            unbroadcast(g, y.shape) if y._requires_grad else None)


def sub(x, y):
    x, y = operands(x, y)
    return record(broadcast(operator.sub, "sub", x, y), sub_vjp, (x, y))


def sub_vjp(g, out, x, y):
    return (unbroadcast(g, x.shape) if x._requires_grad else None,
            unbroadcast(-g, y.shape) if y._requires_grad else None)


def mul(x, y):
    x, y = operands(x, y)
    return record(broadcast(operator.mul, "mul", x, y), mul_vjp, (x, y))


def mul_vjp(g, out, x, y):
    return (unbroadcast(g * y, x.shape) if x._requires_grad else None,
            unbroadcast(g * x, y.shape) if y._requires_grad else None)


def div(x, y):
    x, y = operands(x, y)
    return record(broadcast(operator.truediv, "div", x, y), div_vjp, (x, y))


def div_vjp(g, out, x, y):
    return ((unbroadcast(g / y, x.shape) if x._requires_grad else None),
            (unbroadcast(-g * out / y, y.shape) if y._requires_grad else None))


def neg(x):
    return record(-x.data, neg_vjp, (x,))


def neg_vjp(g, out, x):
    return (-g,)


def pow(x, y):
    """x ** y for a tensor or a number y."""
    if isinstance(y, (int, float)) and isinstance(x, Tensor):
        return record(x.data ** y, pow_scalar_vjp, (x,), p=y)
    x, y = operands(x, y)
    return record(broadcast(operator.pow, "pow", x, y), pow_vjp, (x, y))


def pow_scalar_vjp(g, out, x, *, p):
    return (g * p * x ** (p - 1) if p != 0 else g * 0,)


def pow_vjp(g, out, x, y):
    # Where the formulas meet 0 * inf, the limits PyTorch uses: d/dx is 0 at x == 0, y == 0
    # (0 * 0 ** -1), and d/dy is 0 where x == 0 and y >= 0 (0 ** y is constant there). The masked
    # entries get a harmless stand-in (x = 1) rather than a NaN that `where` would hide only at
    # first order.
    gx = gy = None
    if x._requires_grad:
        flat = broadcast(lambda a, b: (a == 0) & (b == 0), "pow", x, y)
        ys = where(flat, 1.0, y)
        gx = unbroadcast(where(flat, 0.0, g * ys * x ** (ys - 1)), x.shape)
    if y._requires_grad:
        flat = broadcast(lambda a, b: (a == 0) & (b >= 0), "pow", x, y)
        gy = unbroadcast(where(flat, 0.0, g * out * log(where(flat, 1.0, x))), y.shape)
    return gx, gy


# -- unary functions -----------------------------------------------------------------
def exp(x):
    return record(x.xp.exp(x.data), exp_vjp, (x,))


def exp_vjp(g, out, x):
    return (g * out,)


def log(x):
    return record(x.xp.log(x.data), log_vjp, (x,))


def log_vjp(g, out, x):
    return (g / x,)


def log1p(x):
    return record(x.xp.log1p(x.data), log1p_vjp, (x,))


def log1p_vjp(g, out, x):
    return (g / (x + 1),)


def expm1(x):
    return record(x.xp.expm1(x.data), expm1_vjp, (x,))


def expm1_vjp(g, out, x):
    return (g * (out + 1),)


def sqrt(x):
    return record(x.xp.sqrt(x.data), sqrt_vjp, (x,))


def sqrt_vjp(g, out, x):
    return (g / (out * 2),)


def abs(x):
    return record(x.xp.abs(x.data), abs_vjp, (x,))


def abs_vjp(g, out, x):
    return (g * sign(x),)


def sign(x):
    """Its derivative is zero wherever it exists, and zero is what flows back (as in PyTorch)."""
    return record(x.xp.sign(x.data), sign_vjp, (x,))


def sign_vjp(g, out, x):
    return (g * 0,)


def sin(x):
    return record(x.xp.sin(x.data), sin_vjp, (x,))


def sin_vjp(g, out, x):
    return (g * cos(x),)


def cos(x):
    return record(x.xp.cos(x.data), cos_vjp, (x,))


def cos_vjp(g, out, x):
    return (-g * sin(x),)


def tanh(x):
    return record(x.xp.tanh(x.data), tanh_vjp, (x,))


def tanh_vjp(g, out, x):
    return (g * (1 - out * out),)


def sigmoid(x):
    # expit is one ufunc, exact in both tails (no overflow for large |x|).
    return record(backend.special(x.xp).expit(x.data), sigmoid_vjp, (x,))


def sigmoid_vjp(g, out, x):
    # sigmoid(x) * sigmoid(-x), not out * (1 - out), which cancels to 0 for large x.
    return (g * out * sigmoid(-x),)


def softplus(x):
    """log(1 + e^x), computed as max(x, 0) + log1p(e^-|x|) so it is finite for any x."""
    xp, d = x.xp, x.data
    return record(xp.maximum(d, 0) + log1p_small(xp, xp.exp(-xp.abs(d))), softplus_vjp, (x,))


def log1p_small(xp, e):
    """log1p(e) for e in [0, 1] (the tail of softplus and of the logits' BCE). NumPy's log1p is
    vectorised (SIMD) and needs no temporaries, so one call beats log(1 + e) with a correction."""
    return xp.log1p(e)


def softplus_vjp(g, out, x):
    return (g * sigmoid(x),)


def logsigmoid(x):
    """log sigmoid(x) = -softplus(-x), never log of a sigmoid that underflowed to 0."""
    return -softplus(-x)


def relu(x):
    return record(x.xp.maximum(x.data, 0), relu_vjp, (x,))


def relu_vjp(g, out, x):
    return (g * (x > 0),)


def leaky_relu(x, negative_slope=0.01):
    d, xp = x.data, x.xp
    a = d.dtype.type(negative_slope)
    if 0 <= negative_slope <= 1:   # then x > 0 exactly where x >= a*x: two fast ufuncs, not a select
        out = xp.maximum(d, d * a)
    else:
        out = xp.where(d > 0, d, d * a)
    return record(out, leaky_relu_vjp, (x,), negative_slope=negative_slope)


def leaky_relu_vjp(g, out, x, *, negative_slope):
    # The slope map is constant (zero derivative off the kink), so g * slope is exact to any order.
    # slope = a + (1 - a) * [x > 0], in arithmetic rather than a select, which is slower.
    a = x.dtype.type(negative_slope)
    slope = (x.data > 0).astype(x.dtype)
    slope *= 1 - a
    slope += a
    return (g * Tensor(slope),)


def elu(x, alpha=1.0):
    # expm1 of min(x, 0) keeps the unused branch from overflowing for large x.
    return where(x > 0, x, expm1(minimum(x, 0)) * alpha)


# -- selection -----------------------------------------------------------------------
def where(condition, x, y):
    """x where condition is true, else y; gradients flow to the chosen side only."""
    condition = condition.data if isinstance(condition, Tensor) else condition
    x, y = operands(x, y)
    return record(x.xp.where(condition, x.data, y.data), where_vjp, (x, y), condition=condition)


def where_vjp(g, out, x, y, *, condition):
    zero = g * 0
    return ((unbroadcast(where(condition, g, zero), x.shape) if x._requires_grad else None),
            (unbroadcast(where(condition, zero, g), y.shape) if y._requires_grad else None))


def _pick_x(compare, name, x, y):
    """Where x wins: compare(x, y), or x is NaN (a NaN on either side wins, as in NumPy and PyTorch:
    a NaN y loses every comparison, so y is picked)."""
    return broadcast(compare, name, x, y) | (x.data != x.data)


def maximum(x, y):
    """Ties send the gradient to x; NaN propagates."""
    x, y = operands(x, y)
    return where(_pick_x(operator.ge, "maximum", x, y), x, y)


def minimum(x, y):
    """Ties send the gradient to x; NaN propagates."""
    x, y = operands(x, y)
    return where(_pick_x(operator.le, "minimum", x, y), x, y)


def clip(x, min=None, max=None):
    """Clamp to [min, max]; the gradient is zero where a bound is active."""
    return record(x.xp.clip(x.data, min, max), clip_vjp, (x,), lo=min, hi=max)


def clip_vjp(g, out, x, *, lo, hi):
    inside = True
    if lo is not None:
        inside = inside & (x.data >= lo)
    if hi is not None:
        inside = inside & (x.data <= hi)
    return (g * Tensor(x.xp.asarray(inside, dtype=x.data.dtype)),)


def astype(x, dtype):
    if x.data.dtype == dtype:
        return x
    return record(x.data.astype(dtype), astype_vjp, (x,))


def astype_vjp(g, out, x):
    return (astype(g, x.data.dtype),)


# -- comparisons: boolean tensors, outside the graph ---------------------------------
def _compare(fn, name):
    def compare(x, y):
        x, y = operands(x, y)
        return Tensor(broadcast(fn, name, x, y))
    compare.__name__ = name
    return compare


lt, le, gt, ge = (_compare(operator.lt, "lt"), _compare(operator.le, "le"),
                  _compare(operator.gt, "gt"), _compare(operator.ge, "ge"))
eq, ne = _compare(operator.eq, "eq"), _compare(operator.ne, "ne")
