"""Convolutions, pooling and nearest upsampling on (N, C, H, W) tensors, with PyTorch's semantics.

Two linear primitives carry the whole family:

    _unfold_rows(x)     im2col: every window of x as one row
    _fold_rows(rows)    col2im: its adjoint, adding each row back onto the window it came from

Each is the other's vector-Jacobian product, so both are differentiable to any order. Everything
else is composed from them and the engine's ops:

    conv2d              unfold, one matmul with the weight (one per group), the bias
    conv_transpose2d    the matmul with the weight, then fold
    unfold / fold       the primitives, permuted to torch's (N, C*kh*kw, L) column layout
    avg_pool2d          mean over the unfolded windows; max_pool2d: max over them (-inf padding)
    upsample_nearest2d  a broadcast and a reshape

so their gradients are those of unfold/fold/matmul/sum/reshape, exact to every order: WGAN-GP's
double backward through a convolutional critic needs nothing more.

Layout of the primitives ("rows"): one row per window position (n, out_y, out_x), one column per
(tap i, tap j, channel), channels last, and a leading group axis: (G, N*L, kh*kw*C/G), with
L = out_h*out_w. Channels last makes the inner loop of the gather and of the scatter-add a
contiguous run of channels (NCHW order would give runs of out_w, a few elements), and
N*L rows make the product with the weight one large BLAS call instead of N small ones. Tensors
outside these functions stay (N, C, H, W) and contiguous.

A 3-D input (C, H, W) is treated as one unbatched sample, as in PyTorch.
"""
from typing import NamedTuple

import numpy as np

from ..tensor import Tensor, as_tensor, record
from .shape import pad

__all__ = ["unfold", "fold", "conv2d", "conv_transpose2d", "avg_pool2d", "max_pool2d", "upsample_nearest2d"]


# -- argument handling -----------------------------------------------------------------------
def _pair(value, name, op, minimum=1):
    """An int or a pair of ints as (h, w), each at least `minimum`."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return pair


def _padding(padding, kernel, dilation, stride, op, sides=False):
    """Padding as (top, bottom, left, right). 'same' (stride 1 only) pads d*(k-1) in all, the odd
    element at the bottom/right, as PyTorch; 'valid' is no padding. With `sides`, a 4-tuple is taken
    as it is: a causal convolution pads on one side only, and padding inside the im2col copy saves
    a separate padded copy of the input (and of its gradient)."""
    if sides and isinstance(padding, (tuple, list)) and len(padding) == 4:
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in padding):
            raise ValueError(f"{op}: padding (top, bottom, left, right) must be ints >= 0, got {padding!r}")
        return tuple(int(v) for v in padding)
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"{op}: padding='same' needs stride 1, got stride {stride}; "
                                 f"give the padding as numbers instead")
            (dh, dw), (kh, kw) = dilation, kernel
            th, tw = dh * (kh - 1), dw * (kw - 1)
            return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        raise ValueError(f"{op}: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    ph, pw = _pair(padding, "padding", op, minimum=0)
    return (ph, ph, pw, pw)


def _blocks(size, kernel, dilation, padding, stride):
    """Number of window positions (out_h, out_w) along each axis (floor, as PyTorch)."""
    (h, w), (kh, kw), (dh, dw), (pt, pb, pl, pr), (sh, sw) = size, kernel, dilation, padding, stride
    return ((h + pt + pb - dh * (kh - 1) - 1) // sh + 1, (w + pl + pr - dw * (kw - 1) - 1) // sw + 1)


def _check_fits(op, shape, kernel, dilation, padding):
    (kh, kw), (dh, dw), (pt, pb, pl, pr) = kernel, dilation, padding
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    ph, pw = shape[-2] + pt + pb, shape[-1] + pl + pr
    if eh > ph or ew > pw:
        raise ValueError(f"{op}: the kernel ({kh}x{kw}, dilation {dilation}: spans {eh}x{ew}) is larger than the "
                         f"padded input ({ph}x{pw}; input shape {shape}, padding {padding[::2]}); use a "
                         f"smaller kernel or more padding")


def _float_input(x, like, op):
    """x as a Tensor; an integer or bool input takes the dtype of `like` (the weight)."""
    x = as_tensor(x)
    if x.dtype.kind != "f":
        x = Tensor(x.data.astype(like.dtype if like is not None and like.dtype.kind == "f" else np.float32))
    return x


def _batched(x, op, what="(N, C, H, W)"):
    """(x as 4-D, whether it was unbatched 3-D)."""
    if x.ndim == 4:
        return x, False
    if x.ndim == 3:
        return x.unsqueeze(0), True
    raise ValueError(f"{op}: expected input of shape {what} (or unbatched (C, H, W)), got shape {x.shape}")


# -- the two linear primitives ---------------------------------------------------------------
class Window(NamedTuple):
    """Where the windows of a convolution sit: sizes as (h, w) pairs, padding as (top, bottom, left, right)."""
    kernel: tuple
    dilation: tuple
    padding: tuple
    stride: tuple
    blocks: tuple  # number of window positions (out_h, out_w)


def _window(size, kernel, dilation, padding, stride):
    return Window(kernel, dilation, padding, stride, _blocks(size, kernel, dilation, padding, stride))


def _im2row(xp, a, win, groups):
    """(N, C, H, W) array -> (G, N*L, kh*kw*C/G) array: a strided view of the windows, then one copy."""
    (kh, kw), (dh, dw), (pt, pb, pl, pr), (sh, sw), (oh, ow) = win
    n, c, h, w = a.shape
    cg = c // groups
    # Channels-last copy of the input with the zero border (padding is a copy in any layout).
    buf = (xp.zeros if pt or pb or pl or pr else xp.empty)((n, h + pt + pb, w + pl + pr, c), dtype=a.dtype)
    buf[:, pt:pt + h, pl:pl + w, :] = a.transpose(0, 2, 3, 1)
    s_n, s_h, s_w, s_c = buf.strides
    windows = xp.lib.stride_tricks.as_strided(
        buf, (groups, n, oh, ow, kh, kw, cg), (cg * s_c, s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c))
    return windows.reshape(groups, n * oh * ow, kh * kw * cg)  # the copy


def _col2im():
    """scratchgen.kernels.col2im, imported on first use so `import scratchgen` compiles nothing."""
    from ..kernels import col2im
    return col2im


def _row2im(xp, rows, shape, win, groups):
    """The adjoint of _im2row: (G, N*L, kh*kw*C/G) -> (N, C, H, W), each tap's rows added onto a
    strided slice (overlapping windows sum)."""
    (kh, kw), (dh, dw), (pt, pb, pl, pr), (sh, sw), (oh, ow) = win
    n, c, h, w = shape
    if xp is np and _col2im().available(rows):
        return _col2im().col2im(rows, np.zeros(shape, rows.dtype), win.kernel, win.dilation, (pt, pl), win.stride,
                             win.blocks)
    cg = c // groups
    buf = xp.zeros((n, h + pt + pb, w + pl + pr, c), dtype=rows.dtype)
    by_group = buf.reshape(buf.shape[:3] + (groups, cg)).transpose(3, 0, 1, 2, 4)  # (G, N, Hp, Wp, C/G) view
    taps = rows.reshape(groups, n, oh, ow, kh, kw, cg)
    for i in range(kh):
        for j in range(kw):
            by_group[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw] += \
                taps[:, :, :, :, i, j]
    return xp.ascontiguousarray(buf[:, pt:pt + h, pl:pl + w, :].transpose(0, 3, 1, 2))


def _unfold_rows(x, win, groups=1):
    return record(_im2row(x.xp, x.data, win, groups), unfold_rows_vjp, (x,), win=win, groups=groups)


def unfold_rows_vjp(g, out, x, *, win, groups):
    return (_fold_rows(g, x.shape, win, groups),)


def _fold_rows(rows, shape, win, groups=1):
    return record(_row2im(rows.xp, rows.data, tuple(shape), win, groups), fold_rows_vjp, (rows,),
                  win=win, groups=groups)


def fold_rows_vjp(g, out, rows, *, win, groups):
    return (_unfold_rows(g, win, groups),)


def unfold(x, kernel_size, dilation=1, padding=0, stride=1):
    """Sliding windows as columns (im2col): (N, C, H, W) -> (N, C*kh*kw, L), L = out_h*out_w,
    as torch.nn.functional.unfold. Zero padding; column index c*kh*kw + i*kw + j."""
    x = _float_input(x, None, "unfold")
    if x.ndim != 4:
        raise ValueError(f"unfold: expected input of shape (N, C, H, W), got shape {x.shape}")
    kernel = _pair(kernel_size, "kernel_size", "unfold")
    dilation, stride = _pair(dilation, "dilation", "unfold"), _pair(stride, "stride", "unfold")
    padding = _padding(padding, kernel, dilation, stride, "unfold")
    _check_fits("unfold", x.shape, kernel, dilation, padding)
    win = _window(x.shape[2:], kernel, dilation, padding, stride)
    n, c = x.shape[:2]
    taps, positions = kernel[0] * kernel[1], win.blocks[0] * win.blocks[1]
    rows = _unfold_rows(x, win)  # (1, N*L, taps*C) -> torch's (N, C*taps, L)
    return rows.reshape(n, positions, taps, c).permute(0, 3, 2, 1).reshape(n, c * taps, positions)


def fold(x, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """The adjoint of unfold (col2im): (N, C*kh*kw, L) -> (N, C, H, W), overlapping windows summed,
    as torch.nn.functional.fold. L must be the number of windows that fit in output_size."""
    x = _float_input(x, None, "fold")
    size = _pair(output_size, "output_size", "fold")
    kernel = _pair(kernel_size, "kernel_size", "fold")
    dilation, stride = _pair(dilation, "dilation", "fold"), _pair(stride, "stride", "fold")
    padding = _padding(padding, kernel, dilation, stride, "fold")
    taps = kernel[0] * kernel[1]
    if x.ndim != 3 or x.shape[1] % taps:
        raise ValueError(f"fold: expected input of shape (N, C*{kernel[0]}*{kernel[1]}, L), got shape {x.shape}")
    _check_fits("fold", size, kernel, dilation, padding)
    win = _window(size, kernel, dilation, padding, stride)
    n, c, positions = x.shape[0], x.shape[1] // taps, x.shape[2]
    if positions != win.blocks[0] * win.blocks[1]:
        raise ValueError(f"fold: input has L={positions} columns, but output_size {size} with kernel {kernel}, "
                         f"dilation {dilation}, padding {padding[::2]} and stride {stride} has "
                         f"{win.blocks[0]}x{win.blocks[1]}={win.blocks[0] * win.blocks[1]} windows")
    rows = x.reshape(n, c, taps, positions).permute(0, 3, 2, 1).reshape(1, n * positions, taps * c)
    return _fold_rows(rows, (n, c) + size, win)


# -- convolutions ----------------------------------------------------------------------------
def _conv_operands(op, x, weight, bias, weight_layout):
    weight = as_tensor(weight)
    x = _float_input(x, weight, op)
    x, unbatched = _batched(x, op)
    if weight.ndim != 4:
        raise ValueError(f"{op}: weight must be 4-D {weight_layout}, got shape {weight.shape}")
    if bias is not None:
        bias = as_tensor(bias)
    return x, weight, bias, unbatched


def _groups(groups, op):
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    return int(groups)


def _check_bias(op, bias, channels):
    if bias is not None and bias.shape != (channels,):
        raise ValueError(f"{op}: bias must have shape ({channels},) (one value per output channel), "
                         f"got {bias.shape}")


def _finish(out, bias, unbatched):
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out.reshape(out.shape[1:]) if unbatched else out


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation, as torch.nn.functional.conv2d.

    x (N, C_in, H, W) or (C_in, H, W); weight (C_out, C_in/groups, kh, kw); bias (C_out,) or None.
    stride, dilation: int or (h, w); padding: int, (h, w), 'same' (stride 1), 'valid', or
    (top, bottom, left, right) for uneven zero padding (causal convolutions).
    Output (N, C_out, out_h, out_w), out_h = (H + 2*pad_h - dilation_h*(kh - 1) - 1) // stride_h + 1.
    """
    op = "conv2d"
    x, weight, bias, unbatched = _conv_operands(op, x, weight, bias, "(C_out, C_in/groups, kh, kw)")
    groups = _groups(groups, op)
    n, c_in, h, w = x.shape
    c_out, c_in_g, kh, kw = weight.shape
    if c_in != c_in_g * groups:
        raise ValueError(f"{op}: input has {c_in} channels but weight expects {c_in_g * groups} "
                         f"(C_in/groups={c_in_g}, groups={groups}); weight shape {weight.shape}, input shape {x.shape}")
    if c_out % groups:
        raise ValueError(f"{op}: weight has {c_out} output channels, not divisible by groups={groups}; "
                         f"weight shape {weight.shape}")
    _check_bias(op, bias, c_out)
    kernel = (kh, kw)
    stride, dilation = _pair(stride, "stride", op), _pair(dilation, "dilation", op)
    padding = _padding(padding, kernel, dilation, stride, op, sides=True)
    _check_fits(op, x.shape, kernel, dilation, padding)
    win = _window((h, w), kernel, dilation, padding, stride)
    oh, ow = win.blocks
    g, c_out_g = groups, c_out // groups
    scatter = _scatter_padding(kernel, dilation, padding)
    if groups == 1 and stride == (1, 1) and kh * kw > 1 and c_out < c_in and scatter is not None:
        return _finish(_conv2d_by_scatter(x, weight, dilation, scatter, (oh, ow)), bias, unbatched)

    rows = _unfold_rows(x, win, g)  # (G, N*L, kh*kw*C_in/G)
    # The weight in the rows' column order (i, j, c): (G, kh*kw*C_in/G, C_out/G); a small copy.
    w_rows = weight.reshape(g, c_out_g, c_in_g, kh, kw).permute(0, 3, 4, 2, 1).reshape(g, kh * kw * c_in_g, c_out_g)
    out = rows @ w_rows  # (G, N*L, C_out/G): one GEMM per group
    out = out.reshape(g, n, oh, ow, c_out_g).permute(1, 0, 4, 2, 3).reshape(n, c_out, oh, ow)  # to NCHW: a copy
    return _finish(out, bias, unbatched)


def _scatter_padding(kernel, dilation, padding):
    """The fold padding that makes a stride-1 conv2d a scatter of each input pixel onto the outputs
    it feeds (None where the conv's own padding exceeds the kernel's span)."""
    (kh, kw), (dh, dw), (pt, pb, pl, pr) = kernel, dilation, padding
    span_h, span_w = dh * (kh - 1), dw * (kw - 1)
    scatter = (span_h - pt, span_h - pb, span_w - pl, span_w - pr)
    return scatter if min(scatter) >= 0 else None


def _conv2d_by_scatter(x, weight, dilation, scatter, blocks):
    """A stride-1 conv2d computed the way conv_transpose2d is: one product per input pixel with
    the flipped kernel, each of its kh*kw*C_out values then folded onto the output it feeds.

    im2col copies kh*kw*C_in values per output pixel; this copies kh*kw*C_out per input pixel, so
    it moves less memory when C_out < C_in (the narrow output convs of coupling networks), and its
    input gradient is an im2col of the narrow gradient instead of a col2im of a wide one."""
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    x_rows = x.permute(0, 2, 3, 1).reshape(1, n * h * w, c_in)  # channels last: a copy
    w_rows = weight[:, :, ::-1, ::-1].permute(1, 2, 3, 0).reshape(1, c_in, kh * kw * c_out)
    win = Window((kh, kw), dilation, scatter, (1, 1), (h, w))  # one window per input pixel
    return _fold_rows(x_rows @ w_rows, (n, c_out) + tuple(blocks), win)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """2-D transposed convolution (the adjoint of conv2d w.r.t. its input), as
    torch.nn.functional.conv_transpose2d.

    x (N, C_in, H, W) or (C_in, H, W); weight (C_in, C_out/groups, kh, kw); bias (C_out,) or None.
    Output (N, C_out, out_h, out_w) with
    out_h = (H - 1)*stride_h - 2*pad_h + dilation_h*(kh - 1) + output_padding_h + 1.
    output_padding (smaller than stride or dilation) adds rows/columns at the bottom/right only.
    """
    op = "conv_transpose2d"
    x, weight, bias, unbatched = _conv_operands(op, x, weight, bias, "(C_in, C_out/groups, kh, kw)")
    groups = _groups(groups, op)
    n, c_in, h, w = x.shape
    c_in_w, c_out_g, kh, kw = weight.shape
    if c_in != c_in_w:
        raise ValueError(f"{op}: input has {c_in} channels but weight expects {c_in_w} "
                         f"(weight shape {weight.shape} is (C_in, C_out/groups, kh, kw)); input shape {x.shape}")
    if c_in % groups:
        raise ValueError(f"{op}: {c_in} input channels are not divisible by groups={groups}")
    c_out = c_out_g * groups
    _check_bias(op, bias, c_out)
    kernel = (kh, kw)
    stride, dilation = _pair(stride, "stride", op), _pair(dilation, "dilation", op)
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a pair, got {padding!r}")
    padding = _padding(padding, kernel, dilation, stride, op)
    extra = _pair(output_padding, "output_padding", op, minimum=0)
    for e, s, d, axis in zip(extra, stride, dilation, "hw"):
        if e >= max(s, d):
            raise ValueError(f"{op}: output_padding {extra} must be smaller than stride {stride} or dilation "
                             f"{dilation} along {axis}")
    size = tuple((i - 1) * s - (p0 + p1) + d * (k - 1) + e + 1 for i, s, (p0, p1), d, k, e in
                 zip((h, w), stride, (padding[:2], padding[2:]), dilation, kernel, extra))
    if min(size) < 1:
        raise ValueError(f"{op}: output size {size} is empty: padding {padding[::2]} is too large for input "
                         f"{x.shape} with kernel {kernel}, stride {stride}")
    # The windows of the output: one per input pixel (output_padding rows lie outside them all).
    win = Window(kernel, dilation, padding, stride, (h, w))
    g, c_in_g = groups, c_in // groups

    x_rows = x.reshape(n, g, c_in_g, h, w).permute(1, 0, 3, 4, 2).reshape(g, n * h * w, c_in_g)  # a copy
    w_rows = weight.reshape(g, c_in_g, c_out_g, kh, kw).permute(0, 1, 3, 4, 2).reshape(g, c_in_g, kh * kw * c_out_g)
    rows = x_rows @ w_rows  # (G, N*H*W, kh*kw*C_out/G): each input pixel's contribution to its window
    out = _fold_rows(rows, (n, c_out) + size, win, g)
    return _finish(out, bias, unbatched)


# -- pooling and upsampling -------------------------------------------------------------------
def _pool_window(op, x, kernel_size, stride, padding, dilation=1):
    kernel = _pair(kernel_size, "kernel_size", op)
    stride = kernel if stride is None else _pair(stride, "stride", op)
    dilation = _pair(dilation, "dilation", op)
    ph, pw = _pair(padding, "padding", op, minimum=0)
    span = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel))  # PyTorch's rule: the dilated kernel
    if ph > span[0] // 2 or pw > span[1] // 2:
        raise ValueError(f"{op}: padding {(ph, pw)} must be at most half the kernel size {kernel} "
                         f"(dilated: {span})")
    padding = (ph, ph, pw, pw)
    _check_fits(op, x.shape, kernel, dilation, padding)
    return _window(x.shape[2:], kernel, dilation, padding, stride)


def _pool(x, win, reduce):
    """reduce(windows, axis=1) for windows (N*L, kh*kw, C), back to (N, C, out_h, out_w)."""
    n, c = x.shape[:2]
    (oh, ow), taps = win.blocks, win.kernel[0] * win.kernel[1]
    pooled = reduce(_unfold_rows(x, win).reshape(n * oh * ow, taps, c), axis=1)
    return pooled.reshape(n, oh, ow, c).permute(0, 3, 1, 2)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Mean over each window, as torch.nn.functional.avg_pool2d (stride defaults to kernel_size;
    zero padding counts in the mean: count_include_pad=True)."""
    op = "avg_pool2d"
    x, unbatched = _batched(_float_input(x, None, op), op)
    out = _pool(x, _pool_window(op, x, kernel_size, stride, padding), Tensor.mean)
    return out.reshape(out.shape[1:]) if unbatched else out


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1):
    """Max over each window, as torch.nn.functional.max_pool2d (stride defaults to kernel_size;
    padding is -inf, so it is never the max unless a dilated window holds padding only, where
    PyTorch also gives -inf). Tied maxima share the gradient equally (PyTorch sends it all to one)."""
    op = "max_pool2d"
    x, unbatched = _batched(_float_input(x, None, op), op)
    win = _pool_window(op, x, kernel_size, stride, padding, dilation)
    pt, pb, pl, pr = win.padding
    if pt or pl:  # pad with -inf first; the windows then need no (zero) padding
        x = pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), value=-np.inf)
        win = win._replace(padding=(0, 0, 0, 0))
    out = _pool(x, win, Tensor.max)
    return out.reshape(out.shape[1:]) if unbatched else out


def upsample_nearest2d(x, scale_factor):
    """Repeat each pixel scale_factor times along H and W (an int or a pair of ints), as
    F.interpolate(x, scale_factor=s, mode='nearest') for integer s."""
    op = "upsample_nearest2d"
    x, unbatched = _batched(_float_input(x, None, op), op)
    sh, sw = _pair(scale_factor, "scale_factor", op)
    n, c, h, w = x.shape
    out = x.reshape(n, c, h, 1, w, 1).broadcast_to((n, c, h, sh, w, sw)).reshape(n, c, h * sh, w * sw)
    return out.reshape(out.shape[1:]) if unbatched else out
