"""Softmax and log-softmax over one axis, built on the stable logsumexp."""
from ..tensor import Tensor
from .reduce import logsumexp


def log_softmax(x, axis=-1):
    # log_softmax ignores shifts, so subtracting the row max (as a constant) changes no
    # gradient but keeps float32 exact when |x| is large (1e4 - (1e4 + 2.4) rounds).
    m = x.data.max(axis=axis, keepdims=True)
    shifted = x - Tensor(x.xp.where(x.xp.isfinite(m), m, 0))
    return shifted - logsumexp(shifted, axis=axis, keepdims=True)


def softmax(x, axis=-1):
    return log_softmax(x, axis).exp()
