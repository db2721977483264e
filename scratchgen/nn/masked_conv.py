"""MaskedConv2d: PixelCNN's masked convolution as a layer (van den Oord et al., 2016).

    layer = nn.MaskedConv2d(1, 64, 7, mask_type="A")       # first layer: a pixel does not see itself
    layer = nn.MaskedConv2d(64, 64, 3, mask_type="B")      # later layers: it sees its own features
    layer = nn.MaskedConv2d(3, 192, 7, "A", data_channels=3)   # RGB: channels in R, G, B groups

By default stride 1 and padding k // 2, so the output has the input's height and width (PixelCNN's
layers); `stride` and `padding` are placed as in nn.Conv2d (padding may also be 'same' or 'valid'). The weight has
the full (C_out, C_in, k, k) shape, as nn.Conv2d's, and is initialised as PyTorch initialises a
Conv2d of that shape (kaiming_uniform with a=sqrt(5): U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
fan_in = C_in * k * k, the bias from the same interval); the masked entries are then set to zero so
that `weight` shows the kernel actually in use. They stay out of the forward whatever an optimizer
writes there: the kernels never read them, and their gradient is exactly zero.
"""
import numpy as np

from . import init
from .module import Module, Parameter
from ..ops.masked_conv import masked_conv2d
from ..tensor import float32


def _positive_int(name, value, layer="MaskedConv2d"):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{layer}: {name} must be a positive int, got {value!r}")
    return int(value)


def _kernel_size(value):
    """An odd int, or a pair of equal odd ints (PyTorch's style); the mask needs a centre tap."""
    if isinstance(value, (tuple, list)) and len(value) == 2 and value[0] == value[1]:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1 or value % 2 == 0:
        raise ValueError(f"MaskedConv2d: kernel_size must be a positive odd int (or a pair of equal ones), "
                         f"so the mask has a centre pixel, got {value!r}")
    return int(value)


class MaskedConv2d(Module):
    """PixelCNN masked convolution over (N, C_in, H, W) inputs: y = conv2d(x, weight * mask, bias,
    stride, padding), computed over the unmasked taps only (default: stride 1, padding k // 2).

    mask_type 'A' hides the centre pixel (with data_channels > 1: its own colour group and the
    later ones; earlier groups stay visible); 'B' shows it (its own group and the earlier ones).
    `mask` is the (C_out, C_in, k, k) 0/1 NumPy array in use.
    """

    def __init__(self, in_channels, out_channels, kernel_size, mask_type="A", data_channels=1, bias=True,
                 stride=1, padding=None, dtype=float32, generator=None):
        super().__init__()
        if mask_type not in ("A", "B"):
            raise ValueError(f"MaskedConv2d: mask_type must be 'A' (first layer: the centre pixel hidden) "
                             f"or 'B' (later layers), got {mask_type!r}")
        in_channels = _positive_int("in_channels", in_channels)
        out_channels = _positive_int("out_channels", out_channels)
        data_channels = _positive_int("data_channels", data_channels)
        kernel_size = _kernel_size(kernel_size)
        from ..kernels.masked_conv import geometry
        try:                                 # normalise (and check) the stride and padding once
            geo = geometry(kernel_size, kernel_size, kernel_size, stride, padding)
        except ValueError as err:
            raise ValueError(f"MaskedConv2d: {err}") from None
        self.stride, self.padding = (geo.sh, geo.sw), (geo.ph, geo.pw)
        for name, c in (("in_channels", in_channels), ("out_channels", out_channels)):
            if c % data_channels:
                raise ValueError(f"MaskedConv2d: {name}={c} must be a multiple of data_channels={data_channels}: "
                                 f"every layer's channels are split into {data_channels} equal colour groups")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.mask_type, self.data_channels = mask_type, data_channels
        self.weight = Parameter(np.empty((out_channels, in_channels, kernel_size, kernel_size), dtype=dtype))
        if bias:
            self.bias = Parameter(np.empty(out_channels, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters(generator)

    @property
    def mask(self):
        from ..kernels.masked_conv import pixelcnn_mask
        return pixelcnn_mask(self.out_channels, self.in_channels, self.kernel_size, self.mask_type,
                             self.data_channels, dtype=self.weight.dtype)

    def reset_parameters(self, generator=None):
        init.default_(self.weight, self.bias, generator)   # PyTorch's Conv2d init for the full kernel
        self.weight.data[...] *= self.weight.xp.asarray(self.mask)   # show the kernel in use

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"MaskedConv2d({self.in_channels}, {self.out_channels}): expected input "
                             f"(N, {self.in_channels}, H, W), got shape {x.shape}")
        return masked_conv2d(x, self.weight, self.bias, self.mask_type, self.data_channels, self.stride, self.padding)

    def extra_repr(self):
        k = self.kernel_size
        s = f"{self.in_channels}, {self.out_channels}, kernel_size=({k}, {k}), mask_type={self.mask_type!r}"
        if self.stride != (1, 1):
            s += f", stride={self.stride}"
        s += f", padding={self.padding}"
        if self.data_channels != 1:
            s += f", data_channels={self.data_channels}"
        return s + ("" if self.bias is not None else ", bias=False")
