"""Convolutional layers: Conv2d, ConvTranspose2d, MaxPool2d, AvgPool2d, Upsample, BatchNorm2d,
and residual blocks.

Weights are laid out and initialised as in PyTorch (kaiming_uniform with a=sqrt(5), bias
U(-1/sqrt(fan_in), 1/sqrt(fan_in))), so a state_dict means the same thing in both.
"""

import numpy as np

from . import functional as F
from . import init
from .layers import BatchNorm1d, ReLU
from .module import Module, Parameter, Sequential
from ..ops.conv import _pair
from ..tensor import float32


class _ConvNd(Module):
    """What Conv2d and ConvTranspose2d share: arguments, parameters and their initialisation."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                 transposed, output_padding, dtype, generator):
        super().__init__()
        name = type(self).__name__
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: {arg} must be a positive int, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels={in_channels} and out_channels={out_channels} must both be "
                             f"divisible by groups={groups}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _pair(kernel_size, "kernel_size", name)
        self.stride = _pair(stride, "stride", name)
        self.dilation = _pair(dilation, "dilation", name)
        if isinstance(padding, str) and not transposed:
            if padding not in ("same", "valid"):
                raise ValueError(f"{name}: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"{name}: padding='same' needs stride 1, got stride {self.stride}")
            self.padding = padding
        else:
            self.padding = _pair(padding, "padding", name, minimum=0)
        self.output_padding = _pair(output_padding, "output_padding", name, minimum=0)
        for e, s, d in zip(self.output_padding, self.stride, self.dilation):
            if e >= max(s, d):
                raise ValueError(f"{name}: output_padding {self.output_padding} must be smaller than "
                                 f"stride {self.stride} or dilation {self.dilation}")
        # Conv2d: (C_out, C_in/groups, kh, kw); ConvTranspose2d: (C_in, C_out/groups, kh, kw).
        shape = (in_channels, out_channels // groups) if transposed else (out_channels, in_channels // groups)
        self.weight = Parameter(np.empty(shape + self.kernel_size, dtype=dtype))
        if bias:
            self.bias = Parameter(np.empty(out_channels, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        # PyTorch's choice: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both, fan_in = weight.shape[1] * kh * kw.
        init.default_(self.weight, self.bias, generator)

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding!r}")
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")


class Conv2d(_ConvNd):
    """2-D convolution (cross-correlation) over (N, C_in, H, W) inputs; weight (C_out, C_in/groups, kh, kw).
    padding: int, pair, 'same' (stride 1) or 'valid'."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, dtype=float32, generator=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         False, 0, dtype, generator)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class ConvTranspose2d(_ConvNd):
    """2-D transposed convolution; weight (C_in, C_out/groups, kh, kw). Per spatial axis,
    out = (in - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1;
    forward(x, output_size=(h, w)) picks the output_padding that gives that size, as in PyTorch."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, dtype=float32, generator=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         True, output_padding, dtype, generator)

    def _output_padding(self, x, output_size):
        if output_size is None:
            return self.output_padding
        size = tuple(output_size)[-2:]
        extra = []
        for i, (want, n, s, p, d, k) in enumerate(zip(size, x.shape[-2:], self.stride, self.padding,
                                                       self.dilation, self.kernel_size)):
            smallest = (n - 1) * s - 2 * p + d * (k - 1) + 1
            if not smallest <= want < smallest + max(s, d):
                raise ValueError(f"ConvTranspose2d: output_size {size} cannot be reached from input {x.shape}: "
                                 f"axis {i} can be {smallest} to {smallest + max(s, d) - 1}")
            extra.append(want - smallest)
        return tuple(extra)

    def forward(self, x, output_size=None):
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self._output_padding(x, output_size), self.groups, self.dilation)


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, padding={self.padding}, "
                f"dilation={self.dilation}")


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, padding={self.padding}"


class Upsample(Module):
    """Nearest-neighbour upsampling by an integer factor (or to an integer multiple `size`)."""

    def __init__(self, size=None, scale_factor=None, mode="nearest"):
        super().__init__()
        if mode != "nearest":
            raise ValueError(f"Upsample: only mode='nearest' is implemented, got {mode!r}")
        if (size is None) == (scale_factor is None):
            raise ValueError("Upsample: give exactly one of size and scale_factor")
        self.size, self.scale_factor, self.mode = size, scale_factor, mode

    def forward(self, x):
        return F.interpolate(x, self.size, self.scale_factor, self.mode)

    def extra_repr(self):
        what = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        return f"{what}, mode={self.mode!r}"


class BatchNorm2d(BatchNorm1d):
    """Batch normalisation of (N, C, H, W) inputs over N, H and W, per channel C: BatchNorm1d on the
    (N, C, H*W) view (same statistics, same running buffers and state_dict keys)."""

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm2d({self.num_features}): expected input (N, {self.num_features}, H, W), "
                             f"got {x.shape}")
        n, c, h, w = x.shape
        return super().forward(x.reshape(n, c, h * w)).reshape(n, c, h, w)


class Residual(Module):
    """x + module(x); the module must keep x's shape."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        y = self.module(x)
        if y.shape != x.shape:
            raise ValueError(f"Residual: the wrapped {type(self.module).__name__} changed the shape {x.shape} to "
                             f"{y.shape}; a residual connection needs the same shape")
        return x + y


class ResidualBlock(Module):
    """relu(x + body(x)), body = conv-BN-ReLU-conv-BN with 'same' padding (He et al., 2016).
    Without batch_norm the convolutions get biases instead."""

    def __init__(self, channels, kernel_size=3, batch_norm=True, dtype=float32, generator=None):
        super().__init__()
        self.channels = channels

        def conv():
            return Conv2d(channels, channels, kernel_size, padding="same", bias=not batch_norm, dtype=dtype,
                          generator=generator)

        def norm():
            return [BatchNorm2d(channels, dtype=dtype)] if batch_norm else []

        self.body = Sequential(conv(), *norm(), ReLU(), conv(), *norm())

    def forward(self, x):
        return F.relu(x + self.body(x))
