"""The PixelCNN mask and the convolution's geometry, parsed once for every implementation.

The mask (kernels/masked_conv.py's docstring has the picture): tap (a, b) of a k x k kernel,
p = k // 2, is used through every channel when a < p, or a == p and b < p (`unmasked_taps`); the
centre tap (p, p) by channel groups (`centre_groups`); nothing else. The per-channel rules,
`centre_inputs` and `centre_first_output`, are plain functions that every target compiles: the
Python mask builders call them, the Numba CPU loops inline them, the CUDA kernels call them as
device functions, so the one statement of which channels see the centre lives here.

`geometry()` turns (input size, kernel, stride, padding) into a `Geometry`, the one description of
where windows sit that every implementation reads.
"""
from typing import NamedTuple

import numpy as np

from .dispatch import xp

MASK_TYPES = ("A", "B")


def centre_inputs(o, co, ci, own):
    """How many input channels output channel o sees at the centre: the colour groups before its
    own, and its own when `own` (type 'B'). co, ci: output and input channels per group."""
    return (o // co + own) * ci


def centre_first_output(c, co, ci, later, c_out):
    """The first output channel that sees input channel c at the centre (c_out: none does): the
    next group's when `later` (type 'A'), else its own group's."""
    first = (c // ci + later) * co
    return first if first < c_out else c_out      # (a select: every target compiles it)


# ------------------------------------------------------------------------------------------------
# The mask, as taps and channel blocks
# ------------------------------------------------------------------------------------------------
def unmasked_taps(kernel_size):
    """The off-centre taps (a, b) a pixel sees through every channel, in raster order: the p rows
    above the centre, then the p taps left of it (p = kernel_size // 2). The centre is separate."""
    p = kernel_size // 2
    return [(a, b) for a in range(p) for b in range(kernel_size)] + [(p, b) for b in range(p)]


def centre_groups(out_channels, in_channels, mask_type, data_channels=1):
    """The centre tap's blocks: [(o0, o1, n_in), ...], one per output channel group: output channels
    [o0, o1) see input channels [0, n_in) at the centre (the groups before theirs, and, for type 'B',
    their own)."""
    co, ci = out_channels // data_channels, in_channels // data_channels
    own = int(mask_type == "B")
    return [(o0, o0 + co, centre_inputs(o0, co, ci, own)) for o0 in range(0, out_channels, co)]


def centre_groups_t(out_channels, in_channels, mask_type, data_channels=1):
    """The same blocks seen from the inputs: [(c0, c1, o_start), ...]: input channels [c0, c1) are
    seen at the centre by output channels [o_start, out_channels)."""
    co, ci = out_channels // data_channels, in_channels // data_channels
    later = int(mask_type == "A")
    return [(c0, c0 + ci, centre_first_output(c0, co, ci, later, out_channels)) for c0 in range(0, in_channels, ci)]


def pixelcnn_mask(out_channels, in_channels, kernel_size, mask_type, data_channels=1, dtype=np.float32):
    """The (out_channels, in_channels, k, k) 0/1 mask: 1 where a weight is used (NumPy array)."""
    check_config(out_channels, in_channels, kernel_size, mask_type, data_channels)
    p = kernel_size // 2
    mask = np.zeros((out_channels, in_channels, kernel_size, kernel_size), dtype)
    for a, b in unmasked_taps(kernel_size):
        mask[:, :, a, b] = 1
    for o0, o1, n_in in centre_groups(out_channels, in_channels, mask_type, data_channels):
        mask[o0:o1, :n_in, p, p] = 1
    return mask


def check_config(out_channels, in_channels, kernel_size, mask_type, data_channels):
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be 'A' (first layer: the centre pixel's own channel group "
                         f"excluded) or 'B' (later layers: included), got {mask_type!r}")
    if not isinstance(kernel_size, (int, np.integer)) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer (the mask is centred on the "
                         f"output pixel), got {kernel_size!r}")
    if not isinstance(data_channels, (int, np.integer)) or data_channels < 1:
        raise ValueError(f"data_channels must be a positive integer, got {data_channels!r}")
    for name, c in (("in_channels", in_channels), ("out_channels", out_channels)):
        if c < 1 or c % data_channels:
            raise ValueError(f"{name} = {c} must be a positive multiple of data_channels = {data_channels}: "
                             f"the channels are split into {data_channels} equal colour groups")


class Geometry(NamedTuple):
    """Where the windows sit: input (h, w), output (ho, wo), stride (sh, sw), padding (ph, pw), and the
    padded extent (hp, wp) the unmasked taps and the image cover (pixel (r, c) of the padded
    input is pixel (r - ph, c - pw) of the image; the masked rows below the centre are never read)."""
    h: int
    w: int
    ho: int
    wo: int
    sh: int
    sw: int
    ph: int
    pw: int
    hp: int
    wp: int
    k: int

    @property
    def p(self):
        return self.k // 2

    @property
    def pixelcnn(self):
        """Stride 1 with padding k // 2: PixelCNN's layers, where the output has the input's size."""
        return (self.sh, self.sw, self.ph, self.pw) == (1, 1, self.p, self.p)


def int_pair(value, name, minimum):
    if isinstance(value, (tuple, list)) and len(value) == 2:
        pair = tuple(value)
    else:
        pair = (value, value)
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= minimum for v in pair):
        raise ValueError(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def geometry(h, w, kernel_size, stride=1, padding=None):
    """The Geometry of a masked convolution of an h x w input, as PyTorch's conv2d places windows.

    stride: int or (sh, sw). padding: None (k // 2, PixelCNN's), int, (ph, pw), 'same' (k // 2,
    stride 1 only) or 'valid' (0)."""
    k = int(kernel_size)
    sh, sw = int_pair(stride, "stride", 1)
    if padding is None or padding == "same":
        if padding == "same" and (sh, sw) != (1, 1):
            raise ValueError(f"padding='same' needs stride 1, got stride {(sh, sw)}; give the padding as numbers")
        ph = pw = k // 2
    elif padding == "valid":
        ph = pw = 0
    elif isinstance(padding, str):
        raise ValueError(f"padding must be None, an int, a pair, 'same' or 'valid', got {padding!r}")
    else:
        ph, pw = int_pair(padding, "padding", 0)
    ho, wo = (h + 2 * ph - k) // sh + 1, (w + 2 * pw - k) // sw + 1
    if h + 2 * ph < k or w + 2 * pw < k:
        raise ValueError(f"the {k}x{k} kernel does not fit in the padded {h + 2 * ph}x{w + 2 * pw} input "
                         f"(input {h}x{w}, padding {(ph, pw)}); use more padding or a smaller kernel")
    p = k // 2
    hp = max(ph + h, (ho - 1) * sh + p + 1)        # the centre row of the last window
    wp = max(pw + w, (wo - 1) * sw + k)            # the last window's right edge
    return Geometry(h, w, ho, wo, sh, sw, ph, pw, hp, wp, k)


def pad(x, geo):
    """x inside zeros of the padded extent (hp, wp): what the unmasked taps can reach."""
    n, c = x.shape[:2]
    out = xp(x).zeros((n, c, geo.hp, geo.wp), x.dtype)  # zeros + one copy: faster than xp.pad
    out[:, :, geo.ph:geo.ph + geo.h, geo.pw:geo.pw + geo.w] = x
    return out


def crop(apad, geo):
    """The image part of a padded array (the adjoint of pad)."""
    return apad[:, :, geo.ph:geo.ph + geo.h, geo.pw:geo.pw + geo.w]


def tap(apad, a, b, geo):
    """The (ho, wo) view of a padded array that tap (a, b) reads: rows a, a + sh, ..., columns b, b + sw, ..."""
    return apad[:, :, a:a + (geo.ho - 1) * geo.sh + 1:geo.sh, b:b + (geo.wo - 1) * geo.sw + 1:geo.sw]



def macs(n, c_out, c_in, pixels, k):
    """Multiply-adds of one kernel call (the unmasked taps, the centre counted whole): its work."""
    return n * c_out * c_in * pixels * ((k // 2) * (k + 1) + 1)
