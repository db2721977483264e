"""Loss functions. Each is composed from differentiable ops, or is one op whose rule is
(bce_with_logits), so their gradients are exact to any order.

Every loss takes reduction='mean' (default), 'sum' or 'none', as in PyTorch.
"""
import math

import numpy as np

from .ops.elementwise import clip, log, log1p_small, maximum, sigmoid
from .ops.softmax import log_softmax
from .ops.index import take_along_axis
from .tensor import Tensor, as_tensor, record


def _reduce(loss, reduction):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _same_shape(name, input, target):
    if input.shape != target.shape:
        raise ValueError(f"{name}: input shape {input.shape} and target shape {target.shape} differ")


def binary_cross_entropy_with_logits(logits, target, reduction="mean"):
    """-[y log sigmoid(x) + (1-y) log(1-sigmoid(x))] = softplus(x) - x*y, finite for any x."""
    target = as_tensor(target, like=logits)
    _same_shape("binary_cross_entropy_with_logits", logits, target)
    return _reduce(bce_with_logits(logits, target), reduction)


def bce_with_logits(x, y):
    # One op rather than softplus - mul - sub: it dominates the step of likelihood models.
    # In place where possible: on the IWAE's (k, N, D) logits every pass over memory counts.
    xp, d = x.xp, x.data
    # NumPy gives scalars for 0-d operations, and a target larger than the logits broadcasts them:
    # then there is no array of the result's shape to write into.
    if d.ndim == 0 or np.broadcast_shapes(d.shape, y.shape) != d.shape:
        return record(xp.maximum(d, 0) - d * y.data + log1p_small(xp, xp.exp(-xp.abs(d))),
                      bce_with_logits_vjp, (x, y))
    tail = xp.abs(d)
    xp.negative(tail, out=tail)
    xp.exp(tail, out=tail)
    tail = log1p_small(xp, tail)              # log1p(e^-|x|)
    loss = xp.maximum(d, 0)
    loss -= d * y.data
    loss += tail
    return record(loss, bce_with_logits_vjp, (x, y))


def bce_with_logits_vjp(g, out, x, y):
    return (g * (sigmoid(x) - y) if x._requires_grad else None,
            -g * x if y._requires_grad else None)


def binary_cross_entropy(probs, target, reduction="mean"):
    """BCE on probabilities; logs are clamped at -100 as in PyTorch. Prefer the logits version.
    Probabilities and targets outside [0, 1] are an error (a negative 'loss' otherwise); NaN passes
    through to the result, never clamped away."""
    target = as_tensor(target, like=probs)
    _same_shape("binary_cross_entropy", probs, target)
    for name, t in (("probabilities", probs), ("targets", target)):
        if t.data.size and (bool((t.data < 0).any()) or bool((t.data > 1).any())):
            raise ValueError(f"binary_cross_entropy: {name} must lie in [0, 1], got values in "
                             f"[{float(t.data.min())}, {float(t.data.max())}]; for logits use "
                             f"binary_cross_entropy_with_logits")
    tiny = 1e-44 if probs.dtype.itemsize == 4 else 1e-300
    log_p = maximum(log(clip(probs, tiny, None)), -100.0)
    log_1mp = maximum(log(clip(1 - probs, tiny, None)), -100.0)
    return _reduce(-(target * log_p + (1 - target) * log_1mp), reduction)


def mse_loss(input, target, reduction="mean"):
    target = as_tensor(target, like=input)
    _same_shape("mse_loss", input, target)
    diff = input - target
    return _reduce(diff * diff, reduction)


def cross_entropy(logits, labels, reduction="mean"):
    """Softmax cross-entropy of logits (N, C) against integer class labels (N,)."""
    labels = labels.data if isinstance(labels, Tensor) else labels
    if labels.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: labels must be integers, got dtype {labels.dtype}")
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"cross_entropy: logits must be (N, C) and labels (N,), got {logits.shape} and {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"cross_entropy: labels must lie in [0, {logits.shape[1]}), got range "
                         f"[{labels.min()}, {labels.max()}]")
    picked = take_along_axis(log_softmax(logits, axis=1), labels[:, None], axis=1)
    return _reduce(-picked[:, 0], reduction)


def gaussian_nll(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """0.5 * (log var + (input - target)^2 / var), var clamped below at eps (torch.nn.GaussianNLLLoss)."""
    target = as_tensor(target, like=input)
    var = clip(as_tensor(var, like=input), eps, None)
    diff = input - target
    loss = 0.5 * (log(var) + diff * diff / var)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)


def nll_loss(log_probs, labels, reduction="mean"):
    """The negative log-likelihood of integer labels under log-probabilities (N, C), as
    torch.nn.functional.nll_loss (cross_entropy = nll_loss of log_softmax)."""
    labels = labels.data if isinstance(labels, Tensor) else labels
    if log_probs.ndim != 2 or labels.shape != log_probs.shape[:1]:
        raise ValueError(f"nll_loss: log_probs must be (N, C) and labels (N,), got {log_probs.shape} and {labels.shape}")
    return _reduce(-take_along_axis(log_probs, labels[:, None], axis=1)[:, 0], reduction)


def margin_ranking_loss(x1, x2, target, margin=0.0, reduction="mean"):
    """max(0, -target (x1 - x2) + margin), target in {1, -1}."""
    target = as_tensor(target, like=x1)
    return _reduce(maximum(-target * (x1 - x2) + margin, 0.0), reduction)


def hinge_embedding_loss(input, target, margin=1.0, reduction="mean"):
    """input where target is 1, max(0, margin - input) where it is -1."""
    from .ops.elementwise import where
    target = as_tensor(target, like=input)
    return _reduce(where(target.data == 1, input, maximum(margin - input, 0.0)), reduction)
