"""Differentiable PixelCNN masked convolution: `masked_conv2d(x, weight, bias, mask_type, data_channels)`.

    y = conv2d(x, weight * mask, bias, stride, padding)        (k odd; default stride 1, padding k // 2)

where `mask` = scratchgen.kernels.masked_conv.pixelcnn_mask(C_out, C_in, k, mask_type, data_channels):
output pixel (i, j) sees the pixels above it and to its left ('A' also hides the centre pixel's own
channel group and those after it; 'B' shows its own group). The kernels never multiply by the mask:
they visit only the unmasked taps (about half of the k x k kernel), so the masked entries of
`weight` are never read, and their gradient is exactly zero.

Backward rules. With create_graph=False the engine runs the vjp under no_grad; it calls the input-
and weight-gradient kernels. With create_graph=True grad mode is on inside the vjp; it then
differentiates the equivalent composition conv2d(x, where(mask, weight, 0), bias) of engine ops
(scratchgen.ops.conv) with the engine itself, so the gradients it returns are differentiable again
(second order, gradient penalties). Both give the same values, to rounding.

Kernels: scratchgen.kernels.masked_conv, imported on first use so `import scratchgen` does not load
Numba; BLAS-backed im2col over the unmasked taps for NumPy arrays, a CuPy kernel for CuPy arrays.
`impl=` forces an implementation ('reference', 'gemm', 'numba', 'cuda', 'cupy'), for tests and benchmarks.
"""
import numpy as np

from .. import backend
from ..grad_mode import _GradMode
from ..tensor import Tensor, as_tensor, record

_K = None


def _kernels():
    global _K
    if _K is None:
        from ..kernels import masked_conv
        _K = masked_conv
    return _K


def _operands(x, weight, bias):
    """Tensors of one floating dtype (NumPy promotion; integer images take the weight's dtype)."""
    xs = [t if t is None or isinstance(t, Tensor) else as_tensor(t) for t in (x, weight, bias)]
    floats = [t.data.dtype for t in xs if t is not None and t.data.dtype.kind == "f"]
    dtype = np.result_type(*floats) if floats else np.dtype(np.float32)
    return [t if t is None or t.data.dtype == dtype else t.astype(dtype) for t in xs]


def masked_conv2d(x, weight, bias=None, mask_type="B", data_channels=1, stride=1, padding=None, impl=None):
    """PixelCNN's masked 2-D convolution; by default stride 1 and padding k // 2 (output size = input size).

    x: (N, C_in, H, W); weight: (C_out, C_in, k, k) with k odd; bias: (C_out,) or None.
    mask_type: 'A' (first layer: a pixel does not see itself) or 'B' (later layers).
    data_channels: colour groups of the channels (3 for RGB; C_in and C_out must be multiples).
    stride: int or (sh, sw); padding: None (k // 2), int, (ph, pw), 'same' (stride 1) or 'valid',
    placed as in conv2d. Returns (N, C_out, H_out, W_out).
    """
    x, weight, bias = _operands(x, weight, bias)
    if x.ndim != 4:
        raise ValueError(f"masked_conv2d: x must be a batch of images (N, C_in, H, W), got shape {x.shape}"
                         + ("; add the batch axis with x.unsqueeze(0)" if x.ndim == 3 else ""))
    K = _kernels()
    try:
        geo = K.geometry(x.shape[2], x.shape[3], weight.shape[-1], stride, padding)
    except ValueError as err:
        raise ValueError(f"masked_conv2d: {err} (x shape {x.shape}, weight shape {weight.shape})") from None
    stride, padding = (geo.sh, geo.sw), (geo.ph, geo.pw)
    data = K.masked_conv2d_forward(x.data, weight.data, None if bias is None else bias.data,
                                   mask_type, data_channels, stride, padding, impl=impl)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return record(data, masked_conv2d_vjp, inputs, mask_type=mask_type, data_channels=data_channels,
                  stride=stride, padding=padding, impl=impl)


def masked_conv2d_vjp(g, out, x, weight, bias=None, *, mask_type, data_channels, stride, padding, impl):
    if _GradMode.enabled:  # create_graph: differentiable composition, same values
        return _composed_vjp(g, (x, weight) if bias is None else (x, weight, bias), mask_type, data_channels,
                             stride, padding)
    K = _kernels()
    gd = g.data if g.data.dtype == out.data.dtype else g.data.astype(out.data.dtype)
    gx = Tensor(K.masked_conv2d_input_grad(gd, weight.data, mask_type, data_channels, stride, padding,
                                           input_size=x.shape[2:], impl=impl)) if x._requires_grad else None
    gw = Tensor(K.masked_conv2d_weight_grad(x.data, gd, weight.shape[-1], mask_type, data_channels, stride, padding,
                                            impl=impl)) if weight._requires_grad else None
    if bias is None:
        return gx, gw
    return gx, gw, (Tensor(gd.sum(axis=(0, 2, 3))) if bias._requires_grad else None)


def _composed_vjp(g, inputs, mask_type, data_channels, stride, padding):
    """The vjp of conv2d(x, where(mask, weight, 0), bias, stride, padding), taken by the engine with
    create_graph=True, so the result can be differentiated again."""
    from ..autograd import composed_vjp
    from .conv import conv2d
    from .elementwise import where

    weight = inputs[1]
    c_out, c_in, k, _ = weight.shape
    used = _kernels().pixelcnn_mask(c_out, c_in, k, mask_type, data_channels, dtype=bool)
    used = backend.to_device(used, weight.device)

    def masked(x, w, b=None):   # where(), not w * mask: whatever the masked entries hold (inf, nan) must not matter
        return conv2d(x, where(used, w, 0.0), b, stride=stride, padding=padding)
    return composed_vjp(masked, inputs, g)
