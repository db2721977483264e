"""col2im: the adjoint of im2col, for conv2d's input gradient and conv_transpose2d's forward.

rows (G, N*L, kh*kw*C/G) holds, for each of the L = oh*ow window positions of each image, one
value per tap (i, j) and channel c; col2im adds each onto the input pixel the tap covers,
    out[n, g*C/G + c, oy*sh + i*dh - pt, ox*sw + j*dw - pl] += rows[g, n*L + oy*ow + ox, (i*kw + j)*C/G + c]
skipping taps that fall in the zero padding. Overlapping windows sum.

The NumPy reference (`scratchgen.ops.conv._row2im`) does one strided add per tap over the whole
batch; with a stride, each of those adds walks memory with a gap, and the result is transposed to
NCHW at the end. The Numba loop below sums one image at a time in a cache-sized channels-last
buffer and writes its NCHW output from there, one image per thread (images never share output),
so the batch splits over cores without locks.
"""
import numpy as np
from numba import njit, prange

from scratchgen.threads import parallel_pays

from .dispatch import register, select

FAMILY = register("col2im", ("reference", "numba"), host="numba", device="reference", host_only=("numba",))
PARALLEL_MIN = 1 << 18  # values of `rows`; below this one thread is faster than waking the others


def _body(rows, out, n, kernel, dilation, padding, stride, blocks):
    kh, kw = kernel
    dh, dw = dilation
    pt, pl = padding
    sh, sw = stride
    oh, ow = blocks
    groups = rows.shape[0]
    _, channels, height, width = out.shape
    cg = channels // groups
    # Sum into a channels-last copy of one image first: rows are channels last, so the inner loop
    # then reads and writes contiguous runs, and the image (small enough to stay in cache) is
    # transposed to NCHW once at the end instead of every add striding across channel planes.
    image = np.zeros((height, width, channels), out.dtype)
    for g in range(groups):
        for oy in range(oh):
            for i in range(kh):
                y = oy * sh + i * dh - pt
                if y < 0 or y >= height:
                    continue
                for ox in range(ow):
                    r = (n * oh + oy) * ow + ox
                    for j in range(kw):
                        x = ox * sw + j * dw - pl
                        if x < 0 or x >= width:
                            continue
                        base = (i * kw + j) * cg
                        for c in range(cg):
                            image[y, x, g * cg + c] += rows[g, r, base + c]
    for c in range(channels):
        for y in range(height):
            for x in range(width):
                out[n, c, y, x] += image[y, x, c]


_body_inline = njit(inline="always")(_body)


@njit(parallel=True, cache=True)
def _col2im_par(rows, out, kernel, dilation, padding, stride, blocks):
    for n in prange(out.shape[0]):
        _body_inline(rows, out, n, kernel, dilation, padding, stride, blocks)


@njit(cache=True)
def _col2im_ser(rows, out, kernel, dilation, padding, stride, blocks):
    for n in range(out.shape[0]):
        _body_inline(rows, out, n, kernel, dilation, padding, stride, blocks)


def available(rows):
    """Whether the compiled loop takes these rows (NumPy float32/float64 and not forced off)."""
    return select(FAMILY, None, [rows]) == "numba"


def col2im(rows, out, kernel, dilation, padding, stride, blocks):
    """Add `rows` into `out` (N, C, H, W), zeroed by the caller; padding is (top, left): the
    bottom and right padding only shorten what is in range."""
    rows = rows if rows.flags.c_contiguous else rows.copy()
    kernel_fn = _col2im_par if parallel_pays(rows.size, PARALLEL_MIN) else _col2im_ser
    kernel_fn(rows, out, tuple(kernel), tuple(dilation), tuple(padding), tuple(stride), tuple(blocks))
    return out
