"""Stateless layer functions, as torch.nn.functional (`import scratchgen.nn.functional as F`).

Activations, losses, convolutions and pooling are the engine's own; `linear`, `dropout`,
`batch_norm`, `layer_norm` and `interpolate` are built here from engine ops, so their
gradients (of any order) come from the engine's rules.
"""
import numpy as np

from .. import backend
from ..losses import (  # noqa: F401
    binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy, gaussian_nll, hinge_embedding_loss,
    margin_ranking_loss, mse_loss, nll_loss,
)
from ..ops import elu, leaky_relu, log_softmax, logsigmoid, relu, sigmoid, softmax, softplus, tanh  # noqa: F401
from ..ops.conv import (  # noqa: F401
    avg_pool2d, conv2d, conv_transpose2d, fold, max_pool2d, unfold, upsample_nearest2d,
)
from ..ops.masked_conv import masked_conv2d  # noqa: F401
from ..random import rng
from ..tensor import Tensor, as_tensor, record


def linear(x, weight, bias=None):
    """x @ weight.T + bias, weight of shape (out_features, in_features), x of shape (..., in_features).

    One graph node rather than transpose + matmul + add: the forward is one matmul on a
    transposed view, and the weight's gradient is computed as g.T @ x, which comes out
    C-contiguous (the composed version leaves a transposed view, which makes every
    optimizer update on it several times slower).
    """
    x = as_tensor(x)
    if x.dtype.kind != "f":
        x = Tensor(x.data.astype(weight.dtype))
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {x.shape} does not end in in_features={weight.shape[1]} "
                         f"(weight shape {weight.shape})")
    d = x.data
    if d.ndim > 2:   # one 2-D product over all leading axes: matmul would run one small product per row block
        out = (d.reshape(-1, d.shape[-1]) @ weight.data.T).reshape(d.shape[:-1] + (weight.shape[0],))
    else:
        out = d @ weight.data.T
    if bias is not None:
        out += bias.data  # `out` is a fresh array: adding in place saves a copy
        return record(out, _linear_vjp, (x, weight, bias))
    return record(out, _linear_vjp, (x, weight))


def _linear_vjp(g, out, x, weight, bias=None):
    g2 = g.reshape(-1, weight.shape[0])  # batch axes folded into one
    gx = g @ weight if x._requires_grad else None
    gw = g2.T @ x.reshape(-1, weight.shape[1]) if weight._requires_grad else None
    if bias is None:
        return gx, gw
    return gx, gw, (g2.sum(axis=0) if bias._requires_grad else None)


def dropout(x, p=0.5, training=True, generator=None):
    """Inverted dropout: zero each element with probability p and scale the rest by 1/(1-p),
    so nothing changes at evaluation time (training=False returns x itself)."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0
    keep = rng(generator).random(x.shape, dtype=np.float32) >= p
    scale = np.where(keep, 1.0 / (1 - p), 0.0).astype(x.dtype)
    return x * Tensor(backend.to_device(scale, x.device))


def _normalize(x, axes, eps):
    """((x - mean) / sqrt(var + eps), mean, biased var) over `axes`, keeping dims."""
    mean = x.mean(axis=axes, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=axes, keepdims=True)
    return centred / (var + eps).sqrt(), mean, var


def _array(t):
    return t.data if isinstance(t, Tensor) else t


def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalisation over every axis but 1 (input (N, C), (N, C, L) or (N, C, H, W)).

    In training (or without running statistics) it uses the batch's mean and biased
    variance, and updates running_mean/running_var in place if given (the variance with
    the unbiased n/(n-1) factor, as PyTorch); otherwise it uses the running statistics.
    """
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected input of shape (N, C), (N, C, L) or (N, C, H, W), got {x.shape}")
    axes = tuple(a for a in range(x.ndim) if a != 1)
    shape = tuple(x.shape[1] if a == 1 else 1 for a in range(x.ndim))  # broadcasts per channel
    if training or running_mean is None or running_var is None:
        n = x.size // x.shape[1]
        if n <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, "
                             f"got input of shape {x.shape}")
        out, mean, var = _normalize(x, axes, eps)
        if training and running_mean is not None and running_var is not None:
            rm, rv = _array(running_mean), _array(running_var)
            rm[...] = (1 - momentum) * rm + momentum * mean.data.reshape(rm.shape)
            rv[...] = (1 - momentum) * rv + momentum * var.data.reshape(rv.shape) * (n / (n - 1))
    else:
        xp = x.xp
        mean = _array(running_mean).reshape(shape)
        inv_std = 1 / xp.sqrt(_array(running_var).reshape(shape) + eps)
        out = (x - Tensor(mean.astype(x.dtype))) * Tensor(inv_std.astype(x.dtype))
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the trailing `normalized_shape` axes of each sample, then scale and shift."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if x.shape[x.ndim - len(shape):] != shape or len(shape) > x.ndim:
        raise ValueError(f"layer_norm: input of shape {x.shape} does not end in normalized_shape {shape}")
    out, _, _ = _normalize(x, tuple(range(x.ndim - len(shape), x.ndim)), eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def interpolate(x, size=None, scale_factor=None, mode="nearest"):
    """Resize the spatial axes of (N, C, H, W) (or unbatched (C, H, W)); mode 'nearest' with an
    integer scale_factor, or a size that is an integer multiple of (H, W)."""
    if mode != "nearest":
        raise ValueError(f"interpolate: only mode='nearest' is implemented, got {mode!r}")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")
    if size is not None:
        if x.ndim not in (3, 4):
            raise ValueError(f"interpolate: expected input of shape (N, C, H, W) or (C, H, W), got {x.shape}")
        h, w = x.shape[-2:]
        out_h, out_w = (size, size) if isinstance(size, int) else tuple(size)
        if out_h % h or out_w % w:
            raise ValueError(f"interpolate: size {(out_h, out_w)} is not an integer multiple of the input's "
                             f"{(h, w)}; only integer nearest upsampling is implemented")
        scale_factor = (out_h // h, out_w // w)
    elif isinstance(scale_factor, float) and scale_factor.is_integer():
        scale_factor = int(scale_factor)
    elif isinstance(scale_factor, (tuple, list)):
        scale_factor = tuple(int(s) if isinstance(s, float) and s.is_integer() else s for s in scale_factor)
    return upsample_nearest2d(x, scale_factor)


def upsample_nearest(x, size=None, scale_factor=None):
    """interpolate(x, size, scale_factor, mode='nearest') (torch's deprecated alias)."""
    return interpolate(x, size, scale_factor, mode="nearest")


# -- more activations, composed from engine ops --------------------------------------------------
SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805   # Klambauer et al. 2017


def selu(x):
    return elu(x, SELU_ALPHA) * SELU_SCALE


def hardtanh(x, min_val=-1.0, max_val=1.0):
    return x.clip(min_val, max_val)


def softsign(x):
    return x / (x.abs() + 1)


def glu(x, dim=-1):
    """a * sigmoid(b), for the two halves a, b of x along dim (Dauphin et al. 2017)."""
    from ..ops.shape import split
    if x.shape[dim] % 2:
        raise ValueError(f"glu: axis {dim} of shape {x.shape} has odd length; it must split in halves")
    a, b = split(x, 2, axis=dim)
    return a * sigmoid(b)
