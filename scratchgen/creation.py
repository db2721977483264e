"""Tensor constructors, in PyTorch's style. Floating results default to float32."""
import numpy as np

from . import backend
from .random import rng
from .tensor import Tensor, float32


def _make(data, requires_grad, device):
    if device is not None and device != "cpu":
        data = backend.to_device(data, device)
    return Tensor(data, requires_grad=requires_grad)


def _shape(shape):
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape


def zeros(*shape, dtype=float32, requires_grad=False, device=None):
    return _make(np.zeros(_shape(shape), dtype=dtype), requires_grad, device)


def ones(*shape, dtype=float32, requires_grad=False, device=None):
    return _make(np.ones(_shape(shape), dtype=dtype), requires_grad, device)


def full(shape, fill_value, dtype=float32, requires_grad=False, device=None):
    return _make(np.full(shape, fill_value, dtype=dtype), requires_grad, device)


def zeros_like(x, dtype=None, requires_grad=False):
    return Tensor(x.xp.zeros_like(x.data, dtype=dtype), requires_grad=requires_grad)


def ones_like(x, dtype=None, requires_grad=False):
    return Tensor(x.xp.ones_like(x.data, dtype=dtype), requires_grad=requires_grad)


def arange(start, stop=None, step=1, dtype=None, requires_grad=False, device=None):
    data = np.arange(start, stop, step) if stop is not None else np.arange(start)
    if dtype is not None:
        data = data.astype(dtype)
    elif data.dtype == np.float64:
        data = data.astype(float32)
    return _make(data, requires_grad, device)


def eye(n, m=None, dtype=float32, requires_grad=False, device=None):
    return _make(np.eye(n, m, dtype=dtype), requires_grad, device)


def rand(*shape, dtype=float32, generator=None, requires_grad=False, device=None):
    """Uniform on [0, 1)."""
    return _make(rng(generator).random(_shape(shape), dtype=dtype), requires_grad, device)


def randn(*shape, dtype=float32, generator=None, requires_grad=False, device=None):
    """Standard normal."""
    return _make(rng(generator).standard_normal(_shape(shape), dtype=dtype), requires_grad, device)


def randint(low, high, shape, generator=None, device=None):
    return _make(rng(generator).integers(low, high, size=shape), False, device)


def full_like(x, fill_value, dtype=None, requires_grad=False):
    return Tensor(x.xp.full_like(x.data, fill_value, dtype=dtype), requires_grad=requires_grad)


def rand_like(x, dtype=None, generator=None, requires_grad=False):
    """Uniform on [0, 1), shaped like x (on x's device)."""
    return _make(rng(generator).random(x.shape, dtype=dtype or x.dtype), requires_grad, x.device)


def randn_like(x, dtype=None, generator=None, requires_grad=False):
    """Standard normal, shaped like x (on x's device)."""
    return _make(rng(generator).standard_normal(x.shape, dtype=dtype or x.dtype), requires_grad, x.device)


def from_numpy(array):
    """A tensor sharing `array`'s memory (torch.from_numpy): writes to one show in the other."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a NumPy array, got {type(array).__name__}")
    return Tensor(array)
