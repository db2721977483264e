"""The rest of NumPy's and PyTorch's element-wise math, each forward beside its backward rule.

Every rule is written with the engine's own ops, so gradients of every order come for free.
Piecewise-constant functions (floor, ceil, round, trunc, floor_divide) have zero gradient, as
in PyTorch; remainder is composed from floor, so its gradient follows.
"""
import math as _m

from ..tensor import record
from .elementwise import broadcast, exp, operands, sigmoid, sqrt, unbroadcast
from .elementwise import div as _div, mul as _mul, sub as _sub

_LN2, _LN10 = _m.log(2.0), _m.log(10.0)


def _special(x):
    from .. import backend
    return backend.special(x.xp)


# -- trigonometric and hyperbolic -------------------------------------------------------------------
def tan(x):
    return record(x.xp.tan(x.data), tan_vjp, (x,))


def tan_vjp(g, out, x):
    return (g * (1 + out * out),)


def sinh(x):
    return record(x.xp.sinh(x.data), sinh_vjp, (x,))


def sinh_vjp(g, out, x):
    return (g * cosh(x),)


def cosh(x):
    return record(x.xp.cosh(x.data), cosh_vjp, (x,))


def cosh_vjp(g, out, x):
    return (g * sinh(x),)


def arcsin(x):
    return record(x.xp.arcsin(x.data), arcsin_vjp, (x,))


def arcsin_vjp(g, out, x):
    return (g / sqrt(1 - x * x),)


def arccos(x):
    return record(x.xp.arccos(x.data), arccos_vjp, (x,))


def arccos_vjp(g, out, x):
    return (-g / sqrt(1 - x * x),)


def arctan(x):
    return record(x.xp.arctan(x.data), arctan_vjp, (x,))


def arctan_vjp(g, out, x):
    return (g / (1 + x * x),)


def arcsinh(x):
    return record(x.xp.arcsinh(x.data), arcsinh_vjp, (x,))


def arcsinh_vjp(g, out, x):
    return (g / sqrt(x * x + 1),)


def arccosh(x):
    return record(x.xp.arccosh(x.data), arccosh_vjp, (x,))


def arccosh_vjp(g, out, x):
    return (g / sqrt(x * x - 1),)


def arctanh(x):
    return record(x.xp.arctanh(x.data), arctanh_vjp, (x,))


def arctanh_vjp(g, out, x):
    return (g / (1 - x * x),)


def arctan2(y, x):
    """The angle of the point (x, y), in (-pi, pi]."""
    y, x = operands(y, x)
    return record(broadcast(lambda a, b: y.xp.arctan2(a, b), "arctan2", y, x), arctan2_vjp, (y, x))


def arctan2_vjp(g, out, y, x):
    r2 = x * x + y * y
    return ((unbroadcast(g * x / r2, y.shape) if y._requires_grad else None),
            (unbroadcast(-g * y / r2, x.shape) if x._requires_grad else None))


def hypot(x, y):
    x, y = operands(x, y)
    return record(broadcast(lambda a, b: x.xp.hypot(a, b), "hypot", x, y), hypot_vjp, (x, y))


def hypot_vjp(g, out, x, y):
    return ((unbroadcast(g * x / out, x.shape) if x._requires_grad else None),
            (unbroadcast(g * y / out, y.shape) if y._requires_grad else None))


# -- powers, logs and exponentials in other bases --------------------------------------------------
def square(x):
    return record(x.data * x.data, square_vjp, (x,))


def square_vjp(g, out, x):
    return (g * x * 2,)


def reciprocal(x):
    return record(1 / x.data, reciprocal_vjp, (x,))


def reciprocal_vjp(g, out, x):
    return (-g * out * out,)


def cbrt(x):
    return record(x.xp.cbrt(x.data), cbrt_vjp, (x,))


def cbrt_vjp(g, out, x):
    return (g / (out * out * 3),)


def log2(x):
    return record(x.xp.log2(x.data), log2_vjp, (x,))


def log2_vjp(g, out, x):
    return (g / (x * _LN2),)


def log10(x):
    return record(x.xp.log10(x.data), log10_vjp, (x,))


def log10_vjp(g, out, x):
    return (g / (x * _LN10),)


def exp2(x):
    return record(x.xp.exp2(x.data), exp2_vjp, (x,))


def exp2_vjp(g, out, x):
    return (g * out * _LN2,)


def logaddexp(x, y):
    """log(e^x + e^y) without overflow."""
    x, y = operands(x, y)
    return record(broadcast(lambda a, b: x.xp.logaddexp(a, b), "logaddexp", x, y), logaddexp_vjp, (x, y))


def logaddexp_vjp(g, out, x, y):
    return ((unbroadcast(g * sigmoid(x - y), x.shape) if x._requires_grad else None),
            (unbroadcast(g * sigmoid(y - x), y.shape) if y._requires_grad else None))


def logaddexp2(x, y):
    """log2(2^x + 2^y) without overflow."""
    x, y = operands(x, y)
    return record(broadcast(lambda a, b: x.xp.logaddexp2(a, b), "logaddexp2", x, y), logaddexp2_vjp, (x, y))


def logaddexp2_vjp(g, out, x, y):
    return ((unbroadcast(g * sigmoid((x - y) * _LN2), x.shape) if x._requires_grad else None),
            (unbroadcast(g * sigmoid((y - x) * _LN2), y.shape) if y._requires_grad else None))


def logit(x, eps=None):
    """log(p / (1 - p)), the inverse of sigmoid; with eps, p is first clamped to [eps, 1 - eps]."""
    if eps is not None:
        from .elementwise import clip
        x = clip(x, eps, 1 - eps)
    return record(_special(x).logit(x.data), logit_vjp, (x,))


def logit_vjp(g, out, x):
    return (g / (x * (1 - x)),)


# -- special functions ------------------------------------------------------------------------------
def erf(x):
    return record(_special(x).erf(x.data), erf_vjp, (x,))


def erf_vjp(g, out, x):
    return (g * exp(-x * x) * (2 / _m.sqrt(_m.pi)),)


def erfc(x):
    return record(_special(x).erfc(x.data), erfc_vjp, (x,))


def erfc_vjp(g, out, x):
    return (-g * exp(-x * x) * (2 / _m.sqrt(_m.pi)),)


def erfinv(x):
    return record(_special(x).erfinv(x.data), erfinv_vjp, (x,))


def erfinv_vjp(g, out, x):
    return (g * exp(out * out) * (_m.sqrt(_m.pi) / 2),)


def lgamma(x):
    """log |Gamma(x)|."""
    return record(_special(x).gammaln(x.data), lgamma_vjp, (x,))


def lgamma_vjp(g, out, x):
    return (g * digamma(x),)


def polygamma(n, x):
    """The n-th derivative of digamma (n = 0: digamma itself)."""
    data = _special(x).digamma(x.data) if n == 0 else _special(x).polygamma(n, x.data)
    return record(data.astype(x.dtype, copy=False), polygamma_vjp, (x,), n=n)


def polygamma_vjp(g, out, x, *, n):
    return (g * polygamma(n + 1, x),)


def digamma(x):
    return polygamma(0, x)


# -- piecewise constant: zero gradient --------------------------------------------------------------
def _constant_vjp(g, out, x):
    return (g * 0,)


def floor(x):
    return record(x.xp.floor(x.data), _constant_vjp, (x,))


def ceil(x):
    return record(x.xp.ceil(x.data), _constant_vjp, (x,))


def round(x, decimals=0):
    """Round half to even, as NumPy and PyTorch do."""
    return record(x.xp.round(x.data, decimals), _constant_vjp, (x,))


def trunc(x):
    return record(x.xp.trunc(x.data), _constant_vjp, (x,))


def floor_divide(x, y):
    """floor(x / y): zero gradient almost everywhere."""
    return floor(_div(x, y))


def remainder(x, y):
    """x - floor(x / y) * y: the sign of y, as Python's % and torch.remainder."""
    return _sub(x, _mul(floor_divide(x, y), y))


# PyTorch's spellings
asin, acos, atan, asinh, acosh, atanh, atan2 = arcsin, arccos, arctan, arcsinh, arccosh, arctanh, arctan2

__all__ = [
    "tan", "sinh", "cosh", "arcsin", "arccos", "arctan", "arcsinh", "arccosh", "arctanh", "arctan2", "hypot",
    "square", "reciprocal", "cbrt", "log2", "log10", "exp2", "logaddexp", "logaddexp2", "logit",
    "erf", "erfc", "erfinv", "lgamma", "digamma", "polygamma",
    "floor", "ceil", "round", "trunc", "floor_divide", "remainder",
    "asin", "acos", "atan", "asinh", "acosh", "atanh", "atan2",
]
