"""Softmax and log-softmax over one axis, built on the stable logsumexp."""
from ..tensor import Tensor
from .reduce import logsumexp


def _as_float(x):
    """Integer and bool inputs are promoted to the default float, as PyTorch's softmax does with
    dtype=; softmax on integers would otherwise wrap around or truncate."""
    if x.data.dtype.kind in "iub":
        from ..tensor import float32
        return Tensor(x.data.astype(float32))
    return x


def log_softmax(x, axis=-1):
    # log_softmax ignores shifts, so subtracting the row max (as a constant) changes no
    # gradient but keeps float32 exact when |x| is large (1e4 - (1e4 + 2.4) rounds).
    x = _as_float(x)
    if x.ndim == 0:  # one element: a distribution over one outcome
        return log_softmax(x.reshape(1), 0).reshape(())
    if x.data.size == 0:
        return x * 1
    m = x.data.max(axis=axis, keepdims=True)
    shifted = x - Tensor(x.xp.where(x.xp.isfinite(m), m, 0))
    return shifted - logsumexp(shifted, axis=axis, keepdims=True)


def softmax(x, axis=-1):
    return log_softmax(x, axis).exp()
