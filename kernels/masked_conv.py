"""PixelCNN masked 2-D convolution (van den Oord et al., 2016): kernels that visit only the unmasked taps.

A k x k kernel (k odd, p = k // 2) is masked so that an output pixel sees only the input pixels
above its window's centre and those to the centre's left in the same row, in raster order:

    tap (a, b) of output pixel (i, j) reads input pixel (i * sh + a - ph, j * sw + b - pw);
    off-centre unmasked taps:  a < p (any b), and a == p with b < p    -> T = p * (k + 1) taps;
    the centre tap (p, p):     by channel groups (below);
    masked:                    everything else (a > p, or a == p and b > p).

Stride (sh, sw) and zero padding (ph, pw) are PyTorch's conv2d's: H_out = (H + 2 ph - k) // sh + 1.
PixelCNN uses stride 1 and padding k // 2 (the output has the input's size), the default here;
`geometry()` accepts ints, pairs, 'same' (stride 1) and 'valid'.

So about half the kernel is used (T = 24 + centre of 49 taps for k = 7), and every kernel here
loops over those taps only: the masked weights are never read (they may hold anything) and
their gradient is exactly zero.

Channel groups. With `data_channels` = d > 1 (RGB: d = 3), the channels of every layer are split
into d contiguous groups of equal size (R, G, B for the inputs; C_out / d channels per colour for
the features). At the centre tap, output group o sees input group c when c < o (type 'A') or
c <= o (type 'B'). With contiguous groups that is a channel *prefix*: output group o sees input
channels [0, (o + B) * C_in / d) at the centre, and, conversely, input group c is seen by output
channels [(c + A) * C_out / d, C_out). With d = 1 the centre is simply excluded ('A') or
included ('B'). Off-centre taps see every channel.

    y[n, o, i, j] = bias[o] + sum over unmasked (a, b, c) of w[o, c, a, b] * x[n, c, i sh + a - ph, j sw + b - pw]

(pixels outside the image read as zero).

Public API (arrays of shape (N, C, H, W); weights (C_out, C_in, k, k); `impl=` picks an implementation):

Public API (arrays of shape (N, C, H, W); weights (C_out, C_in, k, k); `impl=` picks an implementation):

    pixelcnn_mask(out_channels, in_channels, kernel_size, mask_type, data_channels=1)  -> 0/1 mask
    unmasked_taps(kernel_size)                          -> [(a, b), ...] the off-centre unmasked taps
    centre_groups(out_channels, in_channels, mask_type, data_channels)
                                                        -> [(o0, o1, n_in), ...] the centre's blocks
    geometry(h, w, kernel_size, stride=1, padding=None) -> Geometry (sizes, stride, padding)
    masked_conv2d_forward(x, weight, bias=None, mask_type='B', data_channels=1, stride=1, padding=None, impl=None)
    masked_conv2d_input_grad(g, weight, mask_type='B', data_channels=1, stride=1, padding=None,
                             input_size=None, impl=None)                                   -> dL/dx
    masked_conv2d_weight_grad(x, g, kernel_size, mask_type='B', data_channels=1, stride=1, padding=None,
                              impl=None)                                                   -> dL/dw

The gradients are those of L = <g, y>; dL/dw is zero at every masked entry; dL/dbias = g.sum((0, 2, 3)).

Implementations, one module each; the mask and the geometry are masked_geometry.py's, shared by all:
  'reference'  here. NumPy (or CuPy): one tensordot per unmasked tap over strided slices of a padded
               input. The readable spec; any float dtype, any array module.
  'gemm'       masked_conv_gemm.py: im2col restricted to the unmasked taps, then BLAS. The default
               for NumPy float32/float64 arrays (other dtypes: 'reference').
  'numba'      masked_conv_numba.py: Numba CPU loops over the unmasked taps, no BLAS.
  'cuda'       masked_conv_cuda.py: Numba CUDA kernels (tested under NUMBA_ENABLE_CUDASIM=1).
  'cupy'       masked_conv_cupy.py: CuPy RawKernels. The default for CuPy arrays (that module's
               docstring says why it is kept beside 'cuda').
`scratchgen.kernels.force_impl(name)` overrides every call (tests, benchmarks). The implementation
modules are imported on first use, so importing this one compiles nothing and touches no GPU.

Numerics. Every implementation accumulates in the array dtype (float32 stays float32, as in
BLAS and torch); they differ from each other by the order of the sums only, which is bounded by
~(number of terms) * eps * (the same convolution of |w| and |x|).
"""
import functools
import importlib
import sys

from .dispatch import register, select, xp
from .masked_geometry import (MASK_TYPES, Geometry, centre_groups, centre_groups_t, check_config,  # noqa: F401
                              crop, geometry, pad, pixelcnn_mask, tap, unmasked_taps)

FAMILY = register("masked_conv", ("reference", "gemm", "numba", "cuda", "cupy"), host="gemm", device="cupy")
CUDA_THREADS = 128           # threads per block of the GPU kernels (a power of two)
CUDA_MAX_BLOCKS = 65535      # grid size cap; the GPU kernels grid-stride over the rest


# ------------------------------------------------------------------------------------------------
# 'reference': one contraction per unmasked tap over its view of the padded input. Array-module generic.
# ------------------------------------------------------------------------------------------------
def _contract(w2, a):
    """(O, C) weights times (N, C, H, W) images -> (N, O, H, W)."""
    return xp(a).moveaxis(xp(a).tensordot(w2, a, axes=(1, 1)), 0, 1)


def forward(x, w, bias, mask_type, d, geo):
    xp_ = xp(x)
    c_out, c_in, k, _ = w.shape
    p = k // 2
    xpad = pad(x, geo)
    y = xp_.zeros((x.shape[0], c_out, geo.ho, geo.wo), x.dtype)
    for a, b in unmasked_taps(k):                    # y += w[:, :, a, b] @ (what tap (a, b) reads)
        y += _contract(w[:, :, a, b], tap(xpad, a, b, geo))
    centre = tap(xpad, p, p, geo)
    for o0, o1, n_in in centre_groups(c_out, c_in, mask_type, d):
        y[:, o0:o1] += _contract(w[o0:o1, :n_in, p, p], centre[:, :n_in])
    if bias is not None:
        y += bias[:, None, None]
    return y


def input_grad(g, w, mask_type, d, geo):
    """The adjoint of the forward: each tap's view of the padded input receives w^T g."""
    xp_ = xp(g)
    c_out, c_in, k, _ = w.shape
    p = k // 2
    gpad = xp_.zeros((g.shape[0], c_in, geo.hp, geo.wp), g.dtype)
    for a, b in unmasked_taps(k):
        view = tap(gpad, a, b, geo)
        view += _contract(w[:, :, a, b].T, g)
    centre = tap(gpad, p, p, geo)
    for o0, o1, n_in in centre_groups(c_out, c_in, mask_type, d):
        centre[:, :n_in] += _contract(w[o0:o1, :n_in, p, p].T, g[:, o0:o1])
    return xp_.ascontiguousarray(crop(gpad, geo))


def weight_grad(x, g, k, mask_type, d, geo):
    xp_ = xp(x)
    c_in, c_out = x.shape[1], g.shape[1]
    p = k // 2
    xpad = pad(x, geo)
    gw = xp_.zeros((c_out, c_in, k, k), x.dtype)
    over = ([0, 2, 3], [0, 2, 3])                    # sum over images and pixels
    for a, b in unmasked_taps(k):
        gw[:, :, a, b] = xp_.tensordot(g, tap(xpad, a, b, geo), axes=over)
    centre = tap(xpad, p, p, geo)
    for o0, o1, n_in in centre_groups(c_out, c_in, mask_type, d):
        gw[o0:o1, :n_in, p, p] = xp_.tensordot(g[:, o0:o1], centre[:, :n_in], axes=over)
    return gw


@functools.lru_cache(maxsize=None)
def _impl(name):
    """The module with forward / input_grad / weight_grad for implementation `name` (this one for
    the reference), imported on first use."""
    if name == "reference":
        return sys.modules[__name__]
    return importlib.import_module(f".masked_conv_{name}", __package__)


# ------------------------------------------------------------------------------------------------
# Checks and the public functions
# ------------------------------------------------------------------------------------------------
def _check_images(name, a):
    if getattr(a, "ndim", None) != 4:
        raise ValueError(f"{name} must be a 4-D (N, C, H, W) array, got shape {getattr(a, 'shape', None)}")


def _check_same_dtype(pairs):
    (name0, a0), rest = pairs[0], pairs[1:]
    for name, a in rest:
        if a is not None and a.dtype != a0.dtype:
            raise TypeError(f"{name} has dtype {a.dtype}, expected {a0.dtype} like {name0}")


def _check_weight(weight, mask_type, data_channels):
    if getattr(weight, "ndim", None) != 4 or weight.shape[2] != weight.shape[3]:
        raise ValueError(f"weight must be (C_out, C_in, k, k) with a square kernel, got shape "
                         f"{getattr(weight, 'shape', None)}")
    c_out, c_in, k, _ = weight.shape
    check_config(c_out, c_in, k, mask_type, data_channels)


def _geometry_of(kernel_size, h, w, stride, padding):
    try:
        return geometry(h, w, kernel_size, stride, padding)
    except ValueError as err:
        raise ValueError(f"masked conv2d: {err}") from None


def masked_conv2d_forward(x, weight, bias=None, mask_type="B", data_channels=1, stride=1, padding=None,
                          impl=None):
    """y = conv2d(x, weight * mask, bias, stride, padding), visiting only the unmasked taps.

    x: (N, C_in, H, W); weight: (C_out, C_in, k, k), k odd; bias: (C_out,) or None; stride and padding
    as `geometry` (default: stride 1, padding k // 2, PixelCNN's). The masked entries of weight are
    never read. Returns (N, C_out, H_out, W_out) in x's dtype and array module.
    """
    _check_images("x", x)
    _check_weight(weight, mask_type, data_channels)
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"x has {x.shape[1]} channels (shape {x.shape}) but weight expects "
                         f"C_in = {weight.shape[1]} (weight shape {weight.shape})")
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"bias must have shape ({weight.shape[0]},), one per output channel, got {bias.shape}")
    _check_same_dtype([("x", x), ("weight", weight), ("bias", bias)])
    geo = _geometry_of(weight.shape[-1], *x.shape[2:], stride, padding)
    return _impl(select(FAMILY, impl, (x, weight, bias))).forward(x, weight, bias, mask_type, data_channels, geo)


def masked_conv2d_input_grad(g, weight, mask_type="B", data_channels=1, stride=1, padding=None, input_size=None,
                             impl=None):
    """dL/dx for L = <g, masked_conv2d_forward(x, weight, stride=stride, padding=padding)>:
    g (N, C_out, H_out, W_out) -> (N, C_in, H, W). input_size = (H, W); it may be left out with
    stride 1, where it follows from g's size."""
    _check_images("g", g)
    _check_weight(weight, mask_type, data_channels)
    if g.shape[1] != weight.shape[0]:
        raise ValueError(f"g has {g.shape[1]} channels (shape {g.shape}) but weight has "
                         f"C_out = {weight.shape[0]} (weight shape {weight.shape})")
    _check_same_dtype([("g", g), ("weight", weight)])
    k = weight.shape[-1]
    if input_size is None:
        probe = _geometry_of(k, k, k, stride, padding)          # the stride and padding, normalised
        if (probe.sh, probe.sw) != (1, 1):
            raise ValueError(f"masked conv2d input gradient: with stride {(probe.sh, probe.sw)} the input size "
                             f"does not follow from g's {g.shape[2:]}; pass input_size=(H, W)")
        input_size = (g.shape[2] - 2 * probe.ph + k - 1, g.shape[3] - 2 * probe.pw + k - 1)
    geo = _geometry_of(k, *input_size, stride, padding)
    if g.shape[2:] != (geo.ho, geo.wo):
        raise ValueError(f"g has image size {g.shape[2:]} but a {input_size} input with stride {(geo.sh, geo.sw)} "
                         f"and padding {(geo.ph, geo.pw)} gives outputs of {(geo.ho, geo.wo)}")
    return _impl(select(FAMILY, impl, (g, weight))).input_grad(g, weight, mask_type, data_channels, geo)


def masked_conv2d_weight_grad(x, g, kernel_size, mask_type="B", data_channels=1, stride=1, padding=None,
                              impl=None):
    """dL/dweight for L = <g, masked_conv2d_forward(x, weight, stride=stride, padding=padding)>:
    (C_out, C_in, k, k), exactly zero at the masked entries. x: (N, C_in, H, W); g: (N, C_out, H_out, W_out)."""
    _check_images("x", x)
    _check_images("g", g)
    check_config(g.shape[1], x.shape[1], kernel_size, mask_type, data_channels)
    geo = _geometry_of(kernel_size, *x.shape[2:], stride, padding)
    if g.shape[0] != x.shape[0] or g.shape[2:] != (geo.ho, geo.wo):
        raise ValueError(f"g (shape {g.shape}) must have x's batch size {x.shape[0]} and the output image size "
                         f"{(geo.ho, geo.wo)} of x (shape {x.shape}) with stride {(geo.sh, geo.sw)} and padding "
                         f"{(geo.ph, geo.pw)}")
    _check_same_dtype([("x", x), ("g", g)])
    return _impl(select(FAMILY, impl, (x, g))).weight_grad(x, g, kernel_size, mask_type, data_channels, geo)
