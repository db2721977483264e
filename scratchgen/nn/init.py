"""Weight initialisation, as torch.nn.init: each function fills `t` in place and returns it.

Values are drawn on the CPU from a seedable generator (`generator=`, else the global one)
and copied into t's array, wherever it lives, so the same seed gives the same weights
on every device. `t` is a Tensor/Parameter (or a bare array).
"""
import math

import numpy as np

from .. import backend
from ..grad_mode import no_grad
from ..random import rng
from ..tensor import Tensor


def _fill(t, values):
    arr = t.data if isinstance(t, Tensor) else t
    with no_grad():  # an in-place write of values, never part of a graph
        arr[...] = backend.to_device(np.asarray(values, dtype=arr.dtype), backend.device_of(arr))
    return t


def uniform_(t, a=0.0, b=1.0, generator=None):
    return _fill(t, rng(generator).uniform(a, b, t.shape))


def normal_(t, mean=0.0, std=1.0, generator=None):
    return _fill(t, rng(generator).normal(mean, std, t.shape))


def constant_(t, val):
    return _fill(t, np.full(t.shape, val))


def zeros_(t):
    return constant_(t, 0.0)


def ones_(t):
    return constant_(t, 1.0)


def calculate_gain(nonlinearity, param=None):
    """The factor that keeps activations' variance steady through a nonlinearity (PyTorch's values)."""
    if nonlinearity in ("linear", "identity", "sigmoid", "conv1d", "conv2d", "conv3d",
                        "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"negative_slope {slope!r} is not a number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(t):
    """fan_in = shape[1] * receptive field, fan_out = shape[0] * receptive field (weights are (out, in, ...))."""
    if len(t.shape) < 2:
        raise ValueError(f"fan in and fan out need a tensor with at least 2 dims, got shape {tuple(t.shape)}")
    receptive = math.prod(t.shape[2:])
    return t.shape[1] * receptive, t.shape[0] * receptive


def _fan(t, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    return fan_in if mode == "fan_in" else fan_out


def xavier_uniform_(t, gain=1.0, generator=None):
    """U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -a, a, generator)


def xavier_normal_(t, gain=1.0, generator=None):
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def kaiming_uniform_(t, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """U(-b, b), b = gain * sqrt(3 / fan) (He et al., 2015); `a` is the leaky_relu slope."""
    if 0 in t.shape:
        return t
    bound = math.sqrt(3.0) * calculate_gain(nonlinearity, a) / math.sqrt(_fan(t, mode))
    return uniform_(t, -bound, bound, generator)


def kaiming_normal_(t, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    if 0 in t.shape:
        return t
    return normal_(t, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(_fan(t, mode)), generator)


def orthogonal_(t, gain=1.0, generator=None):
    """A (semi-)orthogonal matrix (Saxe et al., 2014), as torch.nn.init.orthogonal_: t viewed as
    (shape[0], rest) gets orthonormal rows (or columns, if it has more rows than columns), times gain.
    The QR factor of a Gaussian matrix, with R's diagonal signs folded in so the draw is uniform
    (Haar) over orthogonal matrices."""
    if len(t.shape) < 2:
        raise ValueError(f"orthogonal_ needs a tensor with at least 2 dims, got shape {tuple(t.shape)}")
    rows, cols = t.shape[0], math.prod(t.shape[1:])
    if rows * cols == 0:
        return t
    a = rng(generator).normal(0.0, 1.0, (rows, cols))
    q, r = np.linalg.qr(a.T if rows < cols else a)
    q = q * np.sign(np.diag(r))
    return _fill(t, gain * (q.T if rows < cols else q).reshape(t.shape))


def default_(weight, bias=None, generator=None):
    """PyTorch's default for Linear and convolutions: weight ~ kaiming_uniform(a=sqrt(5)), i.e.
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the bias from the same interval."""
    kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    if bias is not None:
        fan_in = _fan(weight, "fan_in")
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        uniform_(bias, -bound, bound, generator)
