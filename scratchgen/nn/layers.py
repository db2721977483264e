"""Layers: Linear, MaskedLinear, activations, Dropout, BatchNorm1d, LayerNorm, Flatten, Identity.

Parameters are created on the CPU (NumPy) and initialised as PyTorch does; move a model
with `model.to('cuda')`.
"""

import numpy as np

from . import functional as F
from . import init
from .. import backend
from .module import Module, Parameter
from ..tensor import Tensor, float32


class Identity(Module):
    def forward(self, x):
        return x


class Linear(Module):
    """y = x @ weight.T + bias, weight stored as (out_features, in_features) like PyTorch.

    Default init (PyTorch's): weight = kaiming_uniform(a=sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)),
    and bias U(-1/sqrt(in), 1/sqrt(in)).
    """

    def __init__(self, in_features, out_features, bias=True, dtype=float32, generator=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(np.empty((out_features, in_features), dtype=dtype))
        if bias:
            self.bias = Parameter(np.empty(out_features, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        init.default_(self.weight, self.bias, generator)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class MaskedLinear(Linear):
    """Linear with a fixed 0/1 mask of shape (out, in) on the weight: y = x @ (W * mask).T + b.

    Masked weights get an exactly zero gradient. The mask is a buffer (saved in
    state_dict); `set_mask` replaces it in place (MADE's mask resampling).
    """

    def __init__(self, in_features, out_features, mask, bias=True, dtype=float32, generator=None):
        super().__init__(in_features, out_features, bias, dtype, generator)
        self.register_buffer("mask", np.ones((out_features, in_features), dtype=dtype))
        self.set_mask(mask)

    def set_mask(self, mask):
        mask = mask.data if isinstance(mask, Tensor) else mask
        mask = backend.to_device(np.asarray(mask) if isinstance(mask, (list, tuple)) else mask, "cpu")
        if mask.shape != self.mask.shape:
            raise ValueError(f"mask has shape {mask.shape}, expected (out_features, in_features) = {self.mask.shape}")
        if not np.isin(mask, (0, 1)).all():
            raise ValueError("mask must contain only 0s and 1s")
        self.mask.data[...] = backend.to_device(mask.astype(self.mask.dtype), self.mask.device)
        return self

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


# -- activations ---------------------------------------------------------------------------
class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class ELU(Module):
    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        return F.elu(x, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}"


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Softplus(Module):
    """log(1 + exp(beta * x)) / beta; the engine's softplus is already stable for any x,
    so PyTorch's `threshold` is not needed."""

    def __init__(self, beta=1.0):
        super().__init__()
        self.beta = beta

    def forward(self, x):
        return F.softplus(x) if self.beta == 1 else F.softplus(x * self.beta) / self.beta

    def extra_repr(self):
        return f"beta={self.beta}"


class Flatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return x.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Dropout(Module):
    """Inverted dropout in training mode, the identity in eval mode."""

    def __init__(self, p=0.5, generator=None):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p, self.generator = p, generator

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.generator)

    def extra_repr(self):
        return f"p={self.p}"


# -- normalisation -------------------------------------------------------------------------
class BatchNorm1d(Module):
    """Batch normalisation of (N, C) or (N, C, L) inputs over N (and L), per channel C.

    Training mode normalises with the batch statistics and updates the running mean and
    (unbiased) variance buffers; eval mode uses the running ones. momentum=None keeps a
    cumulative average instead of an exponential one.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=float32):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype=dtype))
            self.bias = Parameter(np.zeros(num_features, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def reset_running_stats(self):
        if self.track_running_stats:
            init.zeros_(self.running_mean)
            init.ones_(self.running_var)
            self.num_batches_tracked.data[...] = 0

    def forward(self, x):
        if x.ndim not in (2, 3) or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm1d({self.num_features}): expected input (N, {self.num_features}) or "
                             f"(N, {self.num_features}, L), got {x.shape}")
        momentum = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data[...] += 1
            if momentum is None:  # cumulative moving average
                momentum = 1.0 / int(self.num_batches_tracked.data)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=self.training or not self.track_running_stats,
                            momentum=momentum, eps=self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class LayerNorm(Module):
    """Normalise each sample over its trailing `normalized_shape` axes; per-element scale and shift."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, dtype=float32):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps, self.elementwise_affine = shape, eps, elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(np.ones(shape, dtype=dtype))
            self.bias = Parameter(np.zeros(shape, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class SELU(Module):
    def forward(self, x):
        return F.selu(x)


class Hardtanh(Module):
    def __init__(self, min_val=-1.0, max_val=1.0):
        super().__init__()
        self.min_val, self.max_val = min_val, max_val

    def forward(self, x):
        return F.hardtanh(x, self.min_val, self.max_val)


class Softsign(Module):
    def forward(self, x):
        return F.softsign(x)


class GLU(Module):
    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.glu(x, self.dim)
