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

Implementations:
  'reference'  NumPy (or CuPy): one tensordot per unmasked tap over strided slices of a padded
               input. The readable spec; any float dtype, any array module.
  'gemm'       NumPy + BLAS: im2col restricted to the unmasked taps, then one matrix product
               per image (per channel group at the centre). The default for NumPy arrays.
  'numba'      Numba CPU direct loops over the unmasked taps (prange over planes), no BLAS.
  'cuda'       Numba CUDA kernels (run on the CPU under NUMBA_ENABLE_CUDASIM=1 in the tests).
               NumPy inputs are copied to the device and back; CuPy inputs stay on the device.
  'cupy'       CuPy RawKernels compiled from `CUPY_SOURCE` (CUDA C). The default for CuPy arrays.
  None/'auto'  NumPy float32/float64 -> 'gemm' (other dtypes -> 'reference'); CuPy -> 'cupy'.
`FORCE_IMPL` overrides every call (tests, benchmarks).

Why 'gemm' is the CPU default (bench/results_masked_conv.md). At PixelCNN's MNIST shapes the work
is a few GFLOP, and only BLAS gets near the core's peak: the im2col matrix of the unmasked taps
(T * C_in + C_in rows, H * W columns per image: 5 MB for 7x7, 64 channels) costs ~20% of the
matrix product, and the product itself runs at ~75-85 GFLOP/s on one AVX2 core, so doing half
the taps beats torch's dense convolution, which runs near peak. The Numba kernels cannot block
for registers the way BLAS does (each multiply-add pass loads and stores its accumulator): they
are ~2x slower at these shapes. They win only on tiny problems (a few channels of 8x8 images:
~0.1 ms calls, mostly overhead for both), so they are not the default; they stay as an
independent, BLAS-free implementation (and the model for the GPU kernels).

Threads. 'gemm' makes one small BLAS product per image (or few images); left to BLAS's own
threads, each would be a parallel region, and on a busy machine a region waits for a descheduled
thread (measured: up to 20x slower than one thread, at load 6 on 2 cores). So when BLAS has several
threads, the 'gemm' kernels make it single-threaded for the call and, from THREADS_MIN multiply-
adds on, split the images over that many threads of their own: one fork-join per call, and the
im2col copies run in parallel too (NumPy releases the GIL in copies and products). The Numba
kernels run a prange over the (image, channel) planes from PARALLEL_MIN multiply-adds on (a few
ms of serial work: a parallel region costs ~10 us normally, but can stall for ~10 ms on an
oversubscribed machine, see kernels/coupling.py), the serial kernels below. Separate functions,
so that the `cache=True` files never collide.

Numerics. Every implementation accumulates in the array dtype (float32 stays float32, as in
BLAS and torch); they differ from each other by the order of the sums only, which is bounded by
~(number of terms) * eps * (the same convolution of |w| and |x|).
"""
import functools
from typing import NamedTuple

import numpy as np
from numba import njit, prange

cuda = None                  # numba.cuda, imported on first use of impl='cuda'
IMPLS = ("reference", "gemm", "numba", "cuda", "cupy")
FORCE_IMPL = None            # one of IMPLS: override every call's dispatch (tests, benchmarks)
PARALLEL_MIN = 1 << 23       # multiply-adds; smaller Numba calls run the serial kernels
GEMM_CHUNK = 1 << 20         # elements of the im2col buffer per chunk of images ('gemm'; 4 MB in float32)
THREADS_MIN = 1 << 24        # multiply-adds; smaller 'gemm' calls stay on the calling thread
CUDA_THREADS = 128           # threads per block of the GPU kernels (a power of two)
CUDA_MAX_BLOCKS = 65535      # grid size cap; the kernels grid-stride over the rest
MASK_TYPES = ("A", "B")


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
    d = data_channels
    co, ci = out_channels // d, in_channels // d
    own = 1 if mask_type == "B" else 0
    return [(o * co, (o + 1) * co, (o + own) * ci) for o in range(d)]


def centre_groups_t(out_channels, in_channels, mask_type, data_channels=1):
    """The same blocks seen from the inputs: [(c0, c1, o_start), ...]: input channels [c0, c1) are
    seen at the centre by output channels [o_start, out_channels)."""
    d = data_channels
    co, ci = out_channels // d, in_channels // d
    later = 1 if mask_type == "A" else 0
    return [(c * ci, (c + 1) * ci, min((c + later) * co, out_channels)) for c in range(d)]


def pixelcnn_mask(out_channels, in_channels, kernel_size, mask_type, data_channels=1, dtype=np.float32):
    """The (out_channels, in_channels, k, k) 0/1 mask: 1 where a weight is used (NumPy array)."""
    _check_config(out_channels, in_channels, kernel_size, mask_type, data_channels)
    p = kernel_size // 2
    mask = np.zeros((out_channels, in_channels, kernel_size, kernel_size), dtype)
    for a, b in unmasked_taps(kernel_size):
        mask[:, :, a, b] = 1
    for o0, o1, n_in in centre_groups(out_channels, in_channels, mask_type, data_channels):
        mask[o0:o1, :n_in, p, p] = 1
    return mask


def _check_config(out_channels, in_channels, kernel_size, mask_type, data_channels):
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


def _int_pair(value, name, minimum):
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
    sh, sw = _int_pair(stride, "stride", 1)
    if padding is None or padding == "same":
        if padding == "same" and (sh, sw) != (1, 1):
            raise ValueError(f"padding='same' needs stride 1, got stride {(sh, sw)}; give the padding as numbers")
        ph = pw = k // 2
    elif padding == "valid":
        ph = pw = 0
    elif isinstance(padding, str):
        raise ValueError(f"padding must be None, an int, a pair, 'same' or 'valid', got {padding!r}")
    else:
        ph, pw = _int_pair(padding, "padding", 0)
    ho, wo = (h + 2 * ph - k) // sh + 1, (w + 2 * pw - k) // sw + 1
    if h + 2 * ph < k or w + 2 * pw < k:
        raise ValueError(f"the {k}x{k} kernel does not fit in the padded {h + 2 * ph}x{w + 2 * pw} input "
                         f"(input {h}x{w}, padding {(ph, pw)}); use more padding or a smaller kernel")
    p = k // 2
    hp = max(ph + h, (ho - 1) * sh + p + 1)        # the centre row of the last window
    wp = max(pw + w, (wo - 1) * sw + k)            # the last window's right edge
    return Geometry(h, w, ho, wo, sh, sw, ph, pw, hp, wp, k)


def _pad(x, geo):
    """x inside zeros of the padded extent (hp, wp): what the unmasked taps can reach."""
    n, c = x.shape[:2]
    out = _xp(x).zeros((n, c, geo.hp, geo.wp), x.dtype)  # zeros + one copy: ~2x faster than xp.pad
    out[:, :, geo.ph:geo.ph + geo.h, geo.pw:geo.pw + geo.w] = x
    return out


def _crop(apad, geo):
    """The image part of a padded array (the adjoint of _pad)."""
    return apad[:, :, geo.ph:geo.ph + geo.h, geo.pw:geo.pw + geo.w]


def _tap(apad, a, b, geo):
    """The (ho, wo) view of a padded array that tap (a, b) reads: rows a, a + sh, ..., columns b, b + sw, ..."""
    return apad[:, :, a:a + (geo.ho - 1) * geo.sh + 1:geo.sh, b:b + (geo.wo - 1) * geo.sw + 1:geo.sw]


# ------------------------------------------------------------------------------------------------
# (a) Reference: one contraction per unmasked tap over its view of the padded input. Array-module generic.
# ------------------------------------------------------------------------------------------------
def _contract(w2, a):
    """(O, C) weights times (N, C, H, W) images -> (N, O, H, W)."""
    return _xp(a).moveaxis(_xp(a).tensordot(w2, a, axes=(1, 1)), 0, 1)


def _forward_ref(x, w, bias, mask_type, d, geo):
    xp = _xp(x)
    c_out, c_in, k, _ = w.shape
    p = k // 2
    xpad = _pad(x, geo)
    y = xp.zeros((x.shape[0], c_out, geo.ho, geo.wo), x.dtype)
    for a, b in unmasked_taps(k):                    # y += w[:, :, a, b] @ (what tap (a, b) reads)
        y += _contract(w[:, :, a, b], _tap(xpad, a, b, geo))
    centre = _tap(xpad, p, p, geo)
    for o0, o1, n_in in centre_groups(c_out, c_in, mask_type, d):
        y[:, o0:o1] += _contract(w[o0:o1, :n_in, p, p], centre[:, :n_in])
    if bias is not None:
        y += bias[:, None, None]
    return y


def _input_grad_ref(g, w, mask_type, d, geo):
    """The adjoint of the forward: each tap's view of the padded input receives w^T g."""
    xp = _xp(g)
    c_out, c_in, k, _ = w.shape
    p = k // 2
    gpad = xp.zeros((g.shape[0], c_in, geo.hp, geo.wp), g.dtype)
    for a, b in unmasked_taps(k):
        view = _tap(gpad, a, b, geo)
        view += _contract(w[:, :, a, b].T, g)
    centre = _tap(gpad, p, p, geo)
    for o0, o1, n_in in centre_groups(c_out, c_in, mask_type, d):
        centre[:, :n_in] += _contract(w[o0:o1, :n_in, p, p].T, g[:, o0:o1])
    return xp.ascontiguousarray(_crop(gpad, geo))


def _weight_grad_ref(x, g, k, mask_type, d, geo):
    xp = _xp(x)
    c_in, c_out = x.shape[1], g.shape[1]
    p = k // 2
    xpad = _pad(x, geo)
    gw = xp.zeros((c_out, c_in, k, k), x.dtype)
    over = ([0, 2, 3], [0, 2, 3])                    # sum over images and pixels
    for a, b in unmasked_taps(k):
        gw[:, :, a, b] = xp.tensordot(g, _tap(xpad, a, b, geo), axes=over)
    centre = _tap(xpad, p, p, geo)
    for o0, o1, n_in in centre_groups(c_out, c_in, mask_type, d):
        gw[o0:o1, :n_in, p, p] = xp.tensordot(g[:, o0:o1], centre[:, :n_in], axes=over)
    return gw


# ------------------------------------------------------------------------------------------------
# (b) 'gemm': im2col over the unmasked taps only, then BLAS. For an image, the column matrix has
# one row per (tap, channel) and one column per pixel:
#   forward:      cols = [what tap 0 reads, ..., tap T-1, the centre tap]            (T*C_in + C_in rows)
#                 y[o-group] = W[o-group, :T*C_in + n_in] @ cols[:T*C_in + n_in]    (the centre's prefix)
#   weight grad:  dW[o-group, :T*C_in + n_in] = sum over images of g[o-group] @ cols[:T*C_in + n_in]^T
#   input grad:   for PixelCNN's geometry with C_in >= C_out, a convolution of g with the mirrored
#                 taps, the same way (im2col of g, the centre FIRST so that input group c uses the
#                 rows from o_start(c) on); otherwise cols = W^T g then col2im (adding each tap's rows
#                 into the view of the padded gradient it read: any stride and padding).
# Each channel group's part is one contiguous block of rows: one product per group, never
# touching a masked weight.
# ------------------------------------------------------------------------------------------------
def _weight_matrix(w, mask_type, d):
    """(C_out, T*C_in + C_in): the unmasked taps' weights, tap-major, then the centre (its masked
    blocks are zero-filled here, not read from w, and never used)."""
    c_out, c_in, k, _ = w.shape
    p = k // 2
    taps = unmasked_taps(k)
    rows, cols = [a for a, _ in taps], [b for _, b in taps]
    wm = np.zeros((c_out, (len(taps) + 1) * c_in), w.dtype)
    wm[:, :len(taps) * c_in] = w[:, :, rows, cols].transpose(0, 2, 1).reshape(c_out, len(taps) * c_in)
    for o0, o1, n_in in centre_groups(c_out, c_in, mask_type, d):
        wm[o0:o1, len(taps) * c_in:len(taps) * c_in + n_in] = w[o0:o1, :n_in, p, p]
    return wm


def _chunk(n, rows, pixels):
    return max(1, min(n, GEMM_CHUNK // max(1, rows * pixels)))


def _im2col(cols, src, corners, geo):
    """cols[:, t] = what a tap at corner (r, c) of the padded src reads, for each corner
    (cols: (m, T, C, ho, wo))."""
    for t, (r, c) in enumerate(corners):
        cols[:, t] = _tap(src, r, c, geo)


_BLAS = []       # [threadpoolctl controller, or None without threadpoolctl], made on first use
_POOLS = {}      # worker count -> ThreadPoolExecutor


def _blas_controller():
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController
            _BLAS.append(ThreadpoolController().select(user_api="blas"))
        except ImportError:
            _BLAS.append(None)
    return _BLAS[0]


def _blas_threads():
    ctl = _blas_controller()
    if ctl is None or not ctl.lib_controllers:
        return 1
    return max(info["num_threads"] for info in ctl.info())


def _over_images(n, macs, run):
    """run(start, stop) for the images [start, stop), returning the list of results. With one BLAS
    thread, simply run(0, n). With more (`--threads`, OPENBLAS_NUM_THREADS), BLAS is made single-
    threaded for the call, and from THREADS_MIN multiply-adds on the images are split into that many
    contiguous parts, one per thread of our own (see 'Threads' at the top)."""
    threads = _blas_threads()
    if threads == 1:
        return [run(0, n)]
    workers = min(threads, n) if macs >= THREADS_MIN else 1
    with _blas_controller().limit(limits=1):
        if workers == 1:
            return [run(0, n)]
        if workers not in _POOLS:
            from concurrent.futures import ThreadPoolExecutor
            _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="masked_conv")
        bounds = [n * i // workers for i in range(workers + 1)]
        return list(_POOLS[workers].map(run, bounds[:-1], bounds[1:]))


def _forward_gemm(x, w, bias, mask_type, d, geo):
    n, c_in = x.shape[:2]
    c_out, _, k, _ = w.shape
    p = k // 2
    taps = unmasked_taps(k)
    t_in = len(taps) * c_in
    groups = centre_groups(c_out, c_in, mask_type, d)
    corners = taps + [(p, p)] if max(n_in for _, _, n_in in groups) > 0 else taps
    wm = _weight_matrix(w, mask_type, d)
    xpad = _pad(x, geo)
    pixels = geo.ho * geo.wo
    y = np.empty((n, c_out, pixels), x.dtype)
    m = _chunk(n, t_in + c_in, pixels)

    def images(start, stop):
        cols = np.empty((min(m, stop - start), len(taps) + 1, c_in, geo.ho, geo.wo), x.dtype)
        for s in range(start, stop, m):
            e = min(stop, s + m)
            _im2col(cols[:e - s], xpad[s:e], corners, geo)
            flat = cols[:e - s].reshape(e - s, -1, pixels)
            for o0, o1, n_in in groups:
                np.matmul(wm[o0:o1, :t_in + n_in], flat[:, :t_in + n_in], out=y[s:e, o0:o1])
            if bias is not None:
                y[s:e] += bias[:, None]

    _over_images(n, _macs(n, c_out, c_in, pixels, k), images)
    return y.reshape(n, c_out, geo.ho, geo.wo)


def _weight_grad_gemm(x, g, k, mask_type, d, geo):
    n, c_in = x.shape[:2]
    c_out = g.shape[1]
    p = k // 2
    taps = unmasked_taps(k)
    t_in = len(taps) * c_in
    groups = centre_groups(c_out, c_in, mask_type, d)
    corners = taps + [(p, p)] if max(n_in for _, _, n_in in groups) > 0 else taps
    xpad = _pad(x, geo)
    pixels = geo.ho * geo.wo
    m = _chunk(n, t_in + c_in, pixels)

    def images(start, stop):
        gm = np.zeros((c_out, t_in + c_in), x.dtype)
        # Channel-major columns (taps, C_in, images, pixels), so that a chunk is ONE product summing
        # over its images and pixels together.
        cols = np.empty((len(taps) + 1, c_in, min(m, stop - start), geo.ho, geo.wo), x.dtype)
        for s in range(start, stop, m):
            e = min(stop, s + m)
            part = cols[:, :, :e - s]
            _im2col(part.transpose(2, 0, 1, 3, 4), xpad[s:e], corners, geo)
            flat = part.reshape((len(taps) + 1) * c_in, (e - s) * pixels)
            g2 = g[s:e].transpose(1, 0, 2, 3).reshape(c_out, (e - s) * pixels)  # a copy unless one image
            for o0, o1, n_in in groups:
                gm[o0:o1, :t_in + n_in] += g2[o0:o1] @ flat[:t_in + n_in].T
        return gm

    gm = sum(_over_images(n, _macs(n, c_out, c_in, pixels, k), images))
    gw = np.zeros((c_out, c_in, k, k), x.dtype)
    per_tap = gm[:, :t_in].reshape(c_out, len(taps), c_in).transpose(0, 2, 1)      # (C_out, C_in, T)
    gw[:, :, [a for a, _ in taps], [b for _, b in taps]] = per_tap
    for o0, o1, n_in in groups:
        gw[o0:o1, :n_in, p, p] = gm[o0:o1, t_in:t_in + n_in]
    return gw


def _input_grad_gemm(g, w, mask_type, d, geo):
    """The adjoint of the forward, in whichever form moves less memory: for PixelCNN's geometry with
    C_in >= C_out, im2col of g (a copy of g's columns); else col2im (an add of C_in-channel columns:
    the first layer, C_in = 1; and every stride and padding)."""
    if geo.pixelcnn and w.shape[1] >= w.shape[0]:
        return _input_grad_im2col(g, w, mask_type, d)
    return _input_grad_col2im(g, w, mask_type, d, geo)


def _input_grad_im2col(g, w, mask_type, d):
    """Stride 1, padding p: dx is a convolution of g with the mirrored taps: dx[i, j] = sum over taps
    of w[a, b]^T g[i + p - a, j + p - b]. Columns: [g itself (the centre), g shifted by each mirrored
    tap]; input group c then takes the contiguous rows [o_start(c), end): the output channels that
    see it at the centre, then every tap."""
    n, c_out, h, wd = g.shape
    _, c_in, k, _ = w.shape
    p = k // 2
    taps = unmasked_taps(k)
    wm = _weight_matrix(w, mask_type, d).reshape(c_out, len(taps) + 1, c_in)
    wt = np.concatenate([wm[:, -1:], wm[:, :-1]], axis=1).transpose(2, 1, 0).reshape(c_in, -1)  # centre first
    gpad = np.zeros((n, c_out, h + p, wd + 2 * p), g.dtype)   # g padded below and either side
    gpad[:, :, :h, p:p + wd] = g
    mirrored = Geometry(h, wd, h, wd, 1, 1, 0, 0, h + p, wd + 2 * p, k)   # windows over gpad
    corners = [(p - a, 2 * p - b) for a, b in taps]
    gx = np.empty((n, c_in, h * wd), g.dtype)
    m = _chunk(n, (len(taps) + 1) * c_out, h * wd)

    def images(start, stop):
        cols = np.empty((min(m, stop - start), len(taps) + 1, c_out, h, wd), g.dtype)
        for s in range(start, stop, m):
            e = min(stop, s + m)
            cols[:e - s, 0] = g[s:e]
            _im2col(cols[:e - s, 1:], gpad[s:e], corners, mirrored)
            flat = cols[:e - s].reshape(e - s, -1, h * wd)
            for c0, c1, o_start in centre_groups_t(c_out, c_in, mask_type, d):
                np.matmul(wt[c0:c1, o_start:], flat[:, o_start:], out=gx[s:e, c0:c1])

    _over_images(n, _macs(n, c_out, c_in, h * wd, k), images)
    return gx.reshape(n, c_in, h, wd)


def _input_grad_col2im(g, w, mask_type, d, geo):
    """Columns = W^T g (one product per image), then col2im: each tap's rows are added into the view
    of the padded gradient the tap read in the forward, as in the reference."""
    n, c_out = g.shape[:2]
    _, c_in, k, _ = w.shape
    p = k // 2
    taps = unmasked_taps(k)
    t_in = len(taps) * c_in
    wm = _weight_matrix(w, mask_type, d)
    pixels = geo.ho * geo.wo
    gpad = np.zeros((n, c_in, geo.hp, geo.wp), g.dtype)
    g3 = g.reshape(n, c_out, pixels)
    m = _chunk(n, t_in + c_in, pixels)

    def images(start, stop):
        cols = np.empty((min(m, stop - start), len(taps) + 1, c_in, pixels), g.dtype)
        for s in range(start, stop, m):
            e = min(stop, s + m)
            part = cols[:e - s]
            np.matmul(wm[:, :t_in].T, g3[s:e], out=part[:, :-1].reshape(e - s, t_in, pixels))
            for t, (a, b) in enumerate(taps):
                view = _tap(gpad[s:e], a, b, geo)
                view += part[:, t].reshape(e - s, c_in, geo.ho, geo.wo)
            for c0, c1, o_start in centre_groups_t(c_out, c_in, mask_type, d):
                if o_start < c_out:                        # the output channels that see [c0, c1)
                    np.matmul(wm[o_start:, t_in + c0:t_in + c1].T, g3[s:e, o_start:], out=part[:, -1, c0:c1])
                    view = _tap(gpad[s:e, c0:c1], p, p, geo)
                    view += part[:, -1, c0:c1].reshape(e - s, c1 - c0, geo.ho, geo.wo)

    _over_images(n, _macs(n, c_out, c_in, pixels, k), images)
    return np.ascontiguousarray(_crop(gpad, geo))


# ------------------------------------------------------------------------------------------------
# (c) Numba CPU: direct loops over the unmasked taps, one (image, channel) plane per task (prange).
# Planes are zero-padded and flattened, so that a tap is a constant offset and the inner loop is one
# long contiguous multiply-add over the plane (vectorised, no bounds checks). With stride 1 and rows
# of width wq = Wp (the padded width), output pixel (i, j) is q = i * wq + j and tap (a, b) reads the
# padded input at q + a * wq + b. The plane is computed on this wide grid (its extra columns per row
# are discarded), L = (H_out - 1) * wq + W_out positions.
# Strides keep that form through a polyphase layout: the padded plane is split into its sh * sw
# phases (rows r with r % sh fixed, columns likewise), each (hq, wq) = (Hp / sh, Wp / sw) and stored
# one after the other. Tap (a, b) reads only phase (a % sh, b % sw), in which it is a stride-1 tap at
# (a // sh, b // sw): again a constant offset, offs[a, b]. With stride 1 the layout is the padded plane.
# The shifted source is passed as a slice, src[off:off + L], never indexed as src[q + off]: Numba
# must assume q + off may be negative and wrap it around, which stops LLVM vectorising (10x slower).
# ------------------------------------------------------------------------------------------------
@njit(cache=True)
def _axpy(acc, alpha, src):
    """acc += alpha * src (1-D, same length)."""
    for q in range(acc.shape[0]):
        acc[q] += alpha * src[q]


@njit(cache=True)
def _axpy4(acc, a0, s0, a1, s1, a2, s2, a3, s3):
    """acc += a0 * s0 + ... + a3 * s3: one load and store of acc per four multiply-adds."""
    for q in range(acc.shape[0]):
        acc[q] += a0 * s0[q] + a1 * s1[q] + a2 * s2[q] + a3 * s3[q]


@njit(cache=True)
def _axpy_channels(acc, w, row, a, b, src, n, off, start, stop):
    """acc += sum over c in [start, stop) of w[row, c, a, b] * src[n, c, off:off + len(acc)]."""
    e = off + acc.shape[0]
    c = start
    while c + 4 <= stop:                            # four channels a pass
        _axpy4(acc, w[row, c, a, b], src[n, c, off:e], w[row, c + 1, a, b], src[n, c + 1, off:e],
               w[row, c + 2, a, b], src[n, c + 2, off:e], w[row, c + 3, a, b], src[n, c + 3, off:e])
        c += 4
    for c in range(c, stop):
        _axpy(acc, w[row, c, a, b], src[n, c, off:e])


@njit(cache=True)
def _fwd_plane(task, xph, w, bias, n_in, offs, wq, y, has_bias):
    c_out, c_in, k, _ = w.shape
    p = k // 2
    ho, wo = y.shape[2], y.shape[3]
    n, o = task // c_out, task % c_out
    acc = np.empty((ho - 1) * wq + wo, y.dtype)
    acc[:] = bias[o] if has_bias else 0
    for a in range(p + 1):
        for b in range(k if a < p else p):          # the rows above; the centre row up to the centre
            _axpy_channels(acc, w, o, a, b, xph, n, offs[a, b], 0, c_in)
    _axpy_channels(acc, w, o, p, p, xph, n, offs[p, p], 0, n_in[o])   # the centre: the visible prefix
    for i in range(ho):
        for j in range(wo):
            y[n, o, i, j] = acc[i * wq + j]


@njit(parallel=True, cache=True)
def _fwd_par(xph, w, bias, n_in, offs, wq, y, has_bias):
    for task in prange(y.shape[0] * y.shape[1]):
        _fwd_plane(task, xph, w, bias, n_in, offs, wq, y, has_bias)


@njit(cache=True)
def _fwd_ser(xph, w, bias, n_in, offs, wq, y, has_bias):
    for task in range(y.shape[0] * y.shape[1]):
        _fwd_plane(task, xph, w, bias, n_in, offs, wq, y, has_bias)


@njit(cache=True)
def _input_grad_plane(task, gwide, size, wt, o_start, offs, gph):
    """The forward's reads, transposed: gph[n, c][offs[a, b] + q] += w[o, c, a, b] g[n, o][q] for every
    tap and output channel. gph (zero on entry) is the padded input's gradient in the phase layout;
    gwide holds g on the wide grid, zero in the extra columns, so those add nothing;
    wt = w transposed to (C_in, C_out, k, k)."""
    c_in, c_out, k, _ = wt.shape
    p = k // 2
    n, c = task // c_in, task % c_in
    plane = gph[n, c]
    for a in range(p + 1):
        for b in range(k if a < p else p):
            _axpy_channels(plane[offs[a, b]:offs[a, b] + size], wt, c, a, b, gwide, n, 0, 0, c_out)
    _axpy_channels(plane[offs[p, p]:offs[p, p] + size], wt, c, p, p, gwide, n, 0, o_start[c], c_out)


@njit(parallel=True, cache=True)
def _input_grad_par(gwide, size, wt, o_start, offs, gph):
    for task in prange(gph.shape[0] * gph.shape[1]):
        _input_grad_plane(task, gwide, size, wt, o_start, offs, gph)


@njit(cache=True)
def _input_grad_ser(gwide, size, wt, o_start, offs, gph):
    for task in range(gph.shape[0] * gph.shape[1]):
        _input_grad_plane(task, gwide, size, wt, o_start, offs, gph)


# 'reassoc' lets LLVM keep vector partial sums in the dot product (a sequential float sum cannot
# be vectorised): a different summation order, same accuracy.
@njit(cache=True, fastmath={"reassoc"})
def _dot(u, v, zero):
    """sum of u * v (1-D, same length)."""
    s = zero
    for q in range(u.shape[0]):
        s += u[q] * v[q]
    return s


@njit(cache=True, fastmath={"reassoc"})
def _dot4(u, v, o0, o1, o2, o3, zero):
    """sum of u * v[o:o + len(u)] for the four offsets o: four taps share each load of u."""
    s0, s1, s2, s3 = zero, zero, zero, zero
    v0, v1, v2, v3 = v[o0:], v[o1:], v[o2:], v[o3:]
    for q in range(u.shape[0]):
        uq = u[q]
        s0 += uq * v0[q]
        s1 += uq * v1[q]
        s2 += uq * v2[q]
        s3 += uq * v3[q]
    return s0, s1, s2, s3


@njit(cache=True)
def _weight_grad_pair(task, xph, gwide, size, n_in, offs, gw, zero):
    """gw[o, c, taps], summed over the images; gwide holds g on the wide grid (zero in the extra
    columns, so the discarded positions add nothing)."""
    c_out, c_in, k, _ = gw.shape
    p = k // 2
    o, c = task // c_in, task % c_in
    centre = c < n_in[o]
    for n in range(gwide.shape[0]):
        gs, xs = gwide[n, o, :size], xph[n, c]
        for a in range(p + 1):
            stop = k if a < p else p
            b = 0
            while b + 4 <= stop:
                s0, s1, s2, s3 = _dot4(gs, xs, offs[a, b], offs[a, b + 1], offs[a, b + 2], offs[a, b + 3], zero)
                gw[o, c, a, b] += s0
                gw[o, c, a, b + 1] += s1
                gw[o, c, a, b + 2] += s2
                gw[o, c, a, b + 3] += s3
                b += 4
            for b in range(b, stop):
                gw[o, c, a, b] += _dot(gs, xs[offs[a, b]:offs[a, b] + size], zero)
        if centre:
            gw[o, c, p, p] += _dot(gs, xs[offs[p, p]:offs[p, p] + size], zero)


@njit(parallel=True, cache=True)
def _weight_grad_par(xph, gwide, size, n_in, offs, gw, zero):
    for task in prange(gw.shape[0] * gw.shape[1]):
        _weight_grad_pair(task, xph, gwide, size, n_in, offs, gw, zero)


@njit(cache=True)
def _weight_grad_ser(xph, gwide, size, n_in, offs, gw, zero):
    for task in range(gw.shape[0] * gw.shape[1]):
        _weight_grad_pair(task, xph, gwide, size, n_in, offs, gw, zero)


def _n_in(c_out, c_in, mask_type, d):
    """Per output channel, how many input channels it sees at the centre."""
    out = np.empty(c_out, np.int64)
    for o0, o1, n_in in centre_groups(c_out, c_in, mask_type, d):
        out[o0:o1] = n_in
    return out


def _o_start(c_out, c_in, mask_type, d):
    """Per input channel, the first output channel that sees it at the centre."""
    out = np.empty(c_in, np.int64)
    for c0, c1, o_start in centre_groups_t(c_out, c_in, mask_type, d):
        out[c0:c1] = o_start
    return out


def _macs(n, c_out, c_in, pixels, k):
    return n * c_out * c_in * pixels * ((k // 2) * (k + 1) + 1)


def _pick(par, ser, macs):
    return par if macs >= PARALLEL_MIN else ser


def _flat(a):
    n, c = a.shape[:2]
    return a.reshape(n, c, -1)


class _Phases(NamedTuple):
    """The polyphase layout of a geometry: phases of (hq, wq), each tap's offset offs[a, b], and the
    wide grid's length L."""
    hq: int
    wq: int
    offs: np.ndarray
    size: int


def _phases(geo):
    sh, sw = geo.sh, geo.sw
    hq, wq = -(-geo.hp // sh), -(-geo.wp // sw)
    a, b = np.arange(geo.k)[:, None], np.arange(geo.k)[None, :]
    offs = ((a % sh) * sw + b % sw) * hq * wq + (a // sh) * wq + b // sw
    return _Phases(hq, wq, offs.astype(np.int64), (geo.ho - 1) * wq + geo.wo)


def _to_phases(x, geo, ph):
    """x (N, C, H, W) zero-padded and split into phases: (N, C, sh * sw * hq * wq)."""
    n, c = x.shape[:2]
    sh, sw = geo.sh, geo.sw
    xpad = _pad(x, geo._replace(hp=ph.hq * sh, wp=ph.wq * sw))
    if (sh, sw) == (1, 1):
        return _flat(xpad)
    return np.ascontiguousarray(xpad.reshape(n, c, ph.hq, sh, ph.wq, sw).transpose(0, 1, 3, 5, 2, 4)).reshape(n, c, -1)


def _from_phases(aph, geo, ph):
    """The inverse of _to_phases: (N, C, sh * sw * hq * wq) -> the (N, C, H, W) image part."""
    n, c = aph.shape[:2]
    sh, sw = geo.sh, geo.sw
    full = aph.reshape(n, c, sh, sw, ph.hq, ph.wq).transpose(0, 1, 4, 2, 5, 3).reshape(n, c, ph.hq * sh, ph.wq * sw)
    return np.ascontiguousarray(_crop(full, geo))


def _wide(g, ph):
    """g (N, C, H_out, W_out) on the wide grid (N, C, H_out * wq), zero in the extra columns."""
    n, c, ho, wo = g.shape
    gwide = np.zeros((n, c, ho, ph.wq), g.dtype)
    gwide[:, :, :, :wo] = g
    return _flat(gwide)


def _forward_numba(x, w, bias, mask_type, d, geo):
    n, c_in = x.shape[:2]
    c_out, _, k, _ = w.shape
    y = np.empty((n, c_out, geo.ho, geo.wo), x.dtype)
    if y.size:
        ph = _phases(geo)
        b = np.ascontiguousarray(bias) if bias is not None else np.empty(0, x.dtype)
        _pick(_fwd_par, _fwd_ser, _macs(n, c_out, c_in, geo.ho * geo.wo, k))(
            _to_phases(x, geo, ph), np.ascontiguousarray(w), b, _n_in(c_out, c_in, mask_type, d), ph.offs, ph.wq,
            y, bias is not None)
    return y


def _input_grad_numba(g, w, mask_type, d, geo):
    n, c_out = g.shape[:2]
    _, c_in, k, _ = w.shape
    if not (g.size and n * c_in):
        return np.zeros((n, c_in, geo.h, geo.w), g.dtype)
    ph = _phases(geo)
    gph = np.zeros((n, c_in, geo.sh * geo.sw * ph.hq * ph.wq), g.dtype)
    _pick(_input_grad_par, _input_grad_ser, _macs(n, c_out, c_in, geo.ho * geo.wo, k))(
        _wide(g, ph), ph.size, np.ascontiguousarray(w.transpose(1, 0, 2, 3)), _o_start(c_out, c_in, mask_type, d),
        ph.offs, gph)
    return _from_phases(gph, geo, ph)


def _weight_grad_numba(x, g, k, mask_type, d, geo):
    n, c_in = x.shape[:2]
    c_out = g.shape[1]
    gw = np.zeros((c_out, c_in, k, k), x.dtype)
    if x.size and g.size:
        ph = _phases(geo)
        _pick(_weight_grad_par, _weight_grad_ser, _macs(n, c_out, c_in, geo.ho * geo.wo, k))(
            _to_phases(x, geo, ph), _wide(g, ph), ph.size, _n_in(c_out, c_in, mask_type, d), ph.offs, gw,
            x.dtype.type(0))
    return gw


# ------------------------------------------------------------------------------------------------
# (d) Numba CUDA: direct kernels with bounds checks instead of padding (no padded copies on the
# device). Forward and input grad: one thread per output element, grid-stride. Weight grad: one
# block per weight entry, its threads stride over the images' pixels, then a shared-memory tree
# sum (deterministic); masked entries are skipped (the output starts at zero). Built per dtype on
# first use, so importing this module never touches numba.cuda.
# ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _cuda_kernels(dtype, nmax):
    """(forward, input_grad, weight_grad) for arrays of `dtype`; weight_grad blocks have <= nmax threads."""
    # `cuda` must be a module global, not a local captured by the kernels: the simulator swaps
    # the module globals that refer to numba.cuda for its fake module while a kernel runs.
    global cuda
    import numba
    from numba import cuda

    acc_t = numba.from_dtype(np.dtype(dtype))

    @cuda.jit
    def forward(x, w, bias, y, has_bias, type_b, d, sh, sw, ph, pw, zero):
        n, c_in, h, wd = x.shape
        _, c_out, ho, wo = y.shape
        k = w.shape[2]
        p = k // 2
        co, ci = c_out // d, c_in // d
        for q in range(cuda.grid(1), n * c_out * ho * wo, cuda.gridsize(1)):
            j = q % wo
            r = q // wo
            i = r % ho
            r //= ho
            o = r % c_out
            nn = r // c_out
            acc = bias[o] if has_bias else zero
            for a in range(p + 1):
                ii = i * sh + a - ph
                if 0 <= ii < h:
                    for b in range(k if a < p else p):
                        jj = j * sw + b - pw
                        if 0 <= jj < wd:
                            for c in range(c_in):
                                acc += w[o, c, a, b] * x[nn, c, ii, jj]
            ii, jj = i * sh - ph + p, j * sw - pw + p
            if 0 <= ii < h and 0 <= jj < wd:
                for c in range((o // co + type_b) * ci):
                    acc += w[o, c, p, p] * x[nn, c, ii, jj]
            y[nn, o, i, j] = acc

    @cuda.jit
    def input_grad(g, w, gx, type_a, d, sh, sw, ph, pw, zero):
        # gx[c, u, v] gathers g[o, i, j] over the taps with u = i * sh + a - ph, v = j * sw + b - pw.
        n, c_out, ho, wo = g.shape
        _, c_in, h, wd = gx.shape
        k = w.shape[2]
        p = k // 2
        co, ci = c_out // d, c_in // d
        for q in range(cuda.grid(1), n * c_in * h * wd, cuda.gridsize(1)):
            v = q % wd
            r = q // wd
            u = r % h
            r //= h
            c = r % c_in
            nn = r // c_in
            acc = zero
            for a in range(p + 1):
                ti = u + ph - a
                if ti >= 0 and ti % sh == 0 and ti // sh < ho:
                    i = ti // sh
                    last = a == p
                    for b in range(k if a < p else p + 1):
                        tj = v + pw - b
                        if tj >= 0 and tj % sw == 0 and tj // sw < wo:
                            j = tj // sw
                            o0 = min((c // ci + type_a) * co, c_out) if last and b == p else 0
                            for o in range(o0, c_out):
                                acc += w[o, c, a, b] * g[nn, o, i, j]
            gx[nn, c, u, v] = acc

    @cuda.jit
    def weight_grad(x, g, gw, type_b, d, sh, sw, ph, pw, zero):
        buf = cuda.shared.array(nmax, acc_t)
        tid, nt = cuda.threadIdx.x, cuda.blockDim.x
        n, c_in, h, wd = x.shape
        _, c_out, ho, wo = g.shape
        k = gw.shape[2]
        p = k // 2
        co, ci = c_out // d, c_in // d
        for e in range(cuda.blockIdx.x, c_out * c_in * k * k, cuda.gridDim.x):
            b = e % k
            r = e // k
            a = r % k
            r //= k
            c = r % c_in
            o = r // c_in
            used = a < p or (a == p and b < p) or (a == p and b == p and c < (o // co + type_b) * ci)
            if used:                                   # the same for the whole block
                part = zero
                for m in range(tid, n * ho * wo, nt):
                    j = m % wo
                    r2 = m // wo
                    i = r2 % ho
                    nn = r2 // ho
                    ii, jj = i * sh + a - ph, j * sw + b - pw
                    if 0 <= ii < h and 0 <= jj < wd:
                        part += g[nn, o, i, j] * x[nn, c, ii, jj]
                buf[tid] = part
                cuda.syncthreads()
                step = nt // 2
                while step > 0:
                    if tid < step:
                        buf[tid] += buf[tid + step]
                    cuda.syncthreads()
                    step //= 2
                if tid == 0:
                    gw[o, c, a, b] = buf[0]
                cuda.syncthreads()                     # buf is reused by the next entry

    return forward, input_grad, weight_grad


class _CudaIO:
    """Host NumPy arrays go to the device and back; device arrays (CuPy) stay where they are."""

    def __init__(self, arrays):
        from numba import cuda
        self.cuda = cuda
        self.host = all(isinstance(a, np.ndarray) for a in arrays if a is not None)

    def put(self, a):
        return self.cuda.to_device(np.ascontiguousarray(a)) if self.host else _xp(a).ascontiguousarray(a)

    def zeros(self, shape, dtype):
        if self.host:
            return self.cuda.to_device(np.zeros(shape, dtype))
        return _cupy().zeros(shape, dtype)

    def get(self, a):
        return a.copy_to_host() if self.host else a


def _cuda_config(work, weight_grad=False):
    """(blocks, threads): the simulator runs one Python thread per CUDA thread, so fewer there."""
    from numba import config
    if weight_grad:
        threads = 4 if config.ENABLE_CUDASIM else CUDA_THREADS
        return max(1, min(work, CUDA_MAX_BLOCKS)), threads
    threads = 32 if config.ENABLE_CUDASIM else CUDA_THREADS
    return max(1, min(-(-work // threads), CUDA_MAX_BLOCKS)), threads


def _geo_args(geo):
    return geo.sh, geo.sw, geo.ph, geo.pw


def _forward_cuda(x, w, bias, mask_type, d, geo):
    io = _CudaIO((x, w, bias))
    y = io.zeros((x.shape[0], w.shape[0], geo.ho, geo.wo), x.dtype)
    if y.size:
        blocks, threads = _cuda_config(y.size)
        b = io.put(bias) if bias is not None else io.zeros((1,), x.dtype)
        _cuda_kernels(x.dtype.str, CUDA_THREADS)[0][blocks, threads](
            io.put(x), io.put(w), b, y, bias is not None, int(mask_type == "B"), d, *_geo_args(geo), x.dtype.type(0))
    return io.get(y)


def _input_grad_cuda(g, w, mask_type, d, geo):
    io = _CudaIO((g, w))
    gx = io.zeros((g.shape[0], w.shape[1], geo.h, geo.w), g.dtype)
    if gx.size and g.size:
        blocks, threads = _cuda_config(gx.size)
        _cuda_kernels(g.dtype.str, CUDA_THREADS)[1][blocks, threads](
            io.put(g), io.put(w), gx, int(mask_type == "A"), d, *_geo_args(geo), g.dtype.type(0))
    return io.get(gx)


def _weight_grad_cuda(x, g, k, mask_type, d, geo):
    io = _CudaIO((x, g))
    gw = io.zeros((g.shape[1], x.shape[1], k, k), x.dtype)
    if x.size and g.size:
        blocks, threads = _cuda_config(gw.size, weight_grad=True)
        _cuda_kernels(x.dtype.str, CUDA_THREADS)[2][blocks, threads](
            io.put(x), io.put(g), gw, int(mask_type == "B"), d, *_geo_args(geo), x.dtype.type(0))
    return io.get(gw)


# ------------------------------------------------------------------------------------------------
# (e) CuPy RawKernels: the same three kernels in CUDA C (NCHW, C-contiguous, 64-bit flat indices).
# `{T}` is the element type and `{NT}` the weight-grad block size; `cupy_source(dtype)` fills them
# in (the tests compile the result with `nvcc --ptx` where nvcc exists).
# ------------------------------------------------------------------------------------------------
CUPY_SOURCE = r"""
typedef {T} T;
typedef long long i64;

// y[n, o, i, j] = bias[o] + sum over the unmasked taps (a, b) and channels c of
//                 w[o, c, a, b] * x[n, c, i*sh + a - ph, j*sw + b - pw]; one thread per output element.
extern "C" __global__ void masked_conv_forward(
        const T* x, const T* w, const T* bias, T* y, int n, int c_in, int c_out, int h, int wd,
        int ho, int wo, int k, int d, int sh, int sw, int ph, int pw, int type_b, int has_bias) {
    const int p = k / 2, co = c_out / d, ci = c_in / d;
    const i64 total = (i64)n * c_out * ho * wo;
    for (i64 q = (i64)blockIdx.x * blockDim.x + threadIdx.x; q < total; q += (i64)gridDim.x * blockDim.x) {
        const int j = (int)(q % wo);
        i64 r = q / wo;
        const int i = (int)(r % ho);
        r /= ho;
        const int o = (int)(r % c_out);
        const i64 nn = r / c_out;
        const T* xn = x + nn * c_in * h * wd;
        const T* wo_ = w + (i64)o * c_in * k * k;
        T acc = has_bias ? bias[o] : (T)0;
        for (int a = 0; a <= p; ++a) {                 // the rows above, then the centre row
            const int ii = i * sh + a - ph;
            if (ii < 0 || ii >= h) continue;
            const int bmax = a < p ? k : p;            // left of the centre only, in the centre row
            for (int b = 0; b < bmax; ++b) {
                const int jj = j * sw + b - pw;
                if (jj < 0 || jj >= wd) continue;
                for (int c = 0; c < c_in; ++c)
                    acc += wo_[((i64)c * k + a) * k + b] * xn[((i64)c * h + ii) * wd + jj];
            }
        }
        const int ii = i * sh + p - ph, jj = j * sw + p - pw;
        if (ii >= 0 && ii < h && jj >= 0 && jj < wd) {
            const int n_in = (o / co + type_b) * ci;  // the centre: the visible channel prefix
            for (int c = 0; c < n_in; ++c)
                acc += wo_[((i64)c * k + p) * k + p] * xn[((i64)c * h + ii) * wd + jj];
        }
        y[q] = acc;
    }
}

// gx[n, c, u, v] = sum over unmasked (a, b) and o of w[o, c, a, b] * g[n, o, i, j] where
// u = i*sh + a - ph and v = j*sw + b - pw (the taps that read pixel (u, v) in the forward).
extern "C" __global__ void masked_conv_input_grad(
        const T* g, const T* w, T* gx, int n, int c_in, int c_out, int h, int wd, int ho, int wo,
        int k, int d, int sh, int sw, int ph, int pw, int type_a) {
    const int p = k / 2, co = c_out / d, ci = c_in / d;
    const i64 total = (i64)n * c_in * h * wd;
    for (i64 q = (i64)blockIdx.x * blockDim.x + threadIdx.x; q < total; q += (i64)gridDim.x * blockDim.x) {
        const int v = (int)(q % wd);
        i64 r = q / wd;
        const int u = (int)(r % h);
        r /= h;
        const int c = (int)(r % c_in);
        const i64 nn = r / c_in;
        const T* gn = g + nn * c_out * ho * wo;
        int o_centre = (c / ci + type_a) * co;       // the centre: the output channels that see c
        if (o_centre > c_out) o_centre = c_out;
        T acc = 0;
        for (int a = 0; a <= p; ++a) {
            const int ti = u + ph - a;
            if (ti < 0 || ti % sh != 0 || ti / sh >= ho) continue;
            const int i = ti / sh;
            const int bmax = a < p ? k : p + 1;        // the centre row includes the centre
            for (int b = 0; b < bmax; ++b) {
                const int tj = v + pw - b;
                if (tj < 0 || tj % sw != 0 || tj / sw >= wo) continue;
                const int j = tj / sw;
                const int o0 = (a == p && b == p) ? o_centre : 0;
                for (int o = o0; o < c_out; ++o)
                    acc += w[(((i64)o * c_in + c) * k + a) * k + b] * gn[((i64)o * ho + i) * wo + j];
            }
        }
        gx[q] = acc;
    }
}

// gw[o, c, a, b] = sum over n, i, j of g[n, o, i, j] * x[n, c, i*sh + a - ph, j*sw + b - pw] for the
// unmasked entries (gw arrives zero-filled): one block per entry, a tree sum in shared memory.
extern "C" __global__ void masked_conv_weight_grad(
        const T* x, const T* g, T* gw, int n, int c_in, int c_out, int h, int wd, int ho, int wo,
        int k, int d, int sh, int sw, int ph, int pw, int type_b) {
    __shared__ T buf[{NT}];
    const int p = k / 2, co = c_out / d, ci = c_in / d;
    const int tid = threadIdx.x, nt = blockDim.x;
    const i64 n_w = (i64)c_out * c_in * k * k, pixels = (i64)n * ho * wo;
    for (i64 e = blockIdx.x; e < n_w; e += gridDim.x) {
        const int b = (int)(e % k);
        i64 r = e / k;
        const int a = (int)(r % k);
        r /= k;
        const int c = (int)(r % c_in);
        const int o = (int)(r / c_in);
        const bool used = a < p || (a == p && b < p) || (a == p && b == p && c < (o / co + type_b) * ci);
        if (!used) continue;                           // the same for the whole block
        T part = 0;
        for (i64 m = tid; m < pixels; m += nt) {
            const int j = (int)(m % wo);
            const i64 r2 = m / wo;
            const int i = (int)(r2 % ho);
            const i64 nn = r2 / ho;
            const int ii = i * sh + a - ph, jj = j * sw + b - pw;
            if (ii >= 0 && ii < h && jj >= 0 && jj < wd)
                part += g[((nn * c_out + o) * ho + i) * wo + j] * x[((nn * c_in + c) * h + ii) * wd + jj];
        }
        buf[tid] = part;
        __syncthreads();
        for (int step = nt / 2; step > 0; step >>= 1) {
            if (tid < step) buf[tid] += buf[tid + step];
            __syncthreads();
        }
        if (tid == 0) gw[e] = buf[0];
        __syncthreads();                               // buf is reused by the next entry
    }
}
"""

_CTYPES = {"float32": "float", "float64": "double"}


def cupy_source(dtype, threads=CUDA_THREADS):
    """CUPY_SOURCE for float32 or float64 with a weight-grad block of `threads` (a power of two)."""
    return CUPY_SOURCE.replace("{T}", _CTYPES[np.dtype(dtype).name]).replace("{NT}", str(threads))


@functools.lru_cache(maxsize=None)
def _cupy_module(dtype, threads):
    return _cupy().RawModule(code=cupy_source(dtype, threads))


def _cupy_launch(name, dtype, work, args, weight_grad=False):
    kernel = _cupy_module(np.dtype(dtype).name, CUDA_THREADS).get_function(name)
    blocks = min(work, CUDA_MAX_BLOCKS) if weight_grad else min(-(-work // CUDA_THREADS), CUDA_MAX_BLOCKS)
    kernel((max(1, blocks),), (CUDA_THREADS,), args)


def _ints(*values):
    return tuple(np.int32(v) for v in values)


def _geo_ints(geo):
    return _ints(geo.h, geo.w, geo.ho, geo.wo, geo.k)


def _forward_cupy(x, w, bias, mask_type, d, geo):
    cp = _cupy()
    x, w = cp.ascontiguousarray(x), cp.ascontiguousarray(w)
    n, c_in = x.shape[:2]
    c_out = w.shape[0]
    y = cp.empty((n, c_out, geo.ho, geo.wo), x.dtype)
    if y.size:
        b = cp.ascontiguousarray(bias) if bias is not None else y
        _cupy_launch("masked_conv_forward", x.dtype, y.size,
                     (x, w, b, y) + _ints(n, c_in, c_out) + _geo_ints(geo)
                     + _ints(d, *_geo_args(geo), mask_type == "B", bias is not None))
    return y


def _input_grad_cupy(g, w, mask_type, d, geo):
    cp = _cupy()
    g, w = cp.ascontiguousarray(g), cp.ascontiguousarray(w)
    n, c_out = g.shape[:2]
    c_in = w.shape[1]
    gx = cp.zeros((n, c_in, geo.h, geo.w), g.dtype)
    if gx.size and g.size:
        _cupy_launch("masked_conv_input_grad", g.dtype, gx.size,
                     (g, w, gx) + _ints(n, c_in, c_out) + _geo_ints(geo) + _ints(d, *_geo_args(geo), mask_type == "A"))
    return gx


def _weight_grad_cupy(x, g, k, mask_type, d, geo):
    cp = _cupy()
    x, g = cp.ascontiguousarray(x), cp.ascontiguousarray(g)
    n, c_in = x.shape[:2]
    c_out = g.shape[1]
    gw = cp.zeros((c_out, c_in, k, k), x.dtype)
    if x.size and g.size:
        _cupy_launch("masked_conv_weight_grad", x.dtype, gw.size,
                     (x, g, gw) + _ints(n, c_in, c_out) + _geo_ints(geo) + _ints(d, *_geo_args(geo), mask_type == "B"),
                     weight_grad=True)
    return gw


# ------------------------------------------------------------------------------------------------
# Dispatch
# ------------------------------------------------------------------------------------------------
def _cupy():
    import cupy
    return cupy


def _xp(a):
    return np if isinstance(a, np.ndarray) else _cupy().get_array_module(a)


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
    _check_config(c_out, c_in, k, mask_type, data_channels)


def _select(impl, arrays):
    impl = FORCE_IMPL or impl or "auto"
    arrays = [a for a in arrays if a is not None]
    host = all(isinstance(a, np.ndarray) for a in arrays)
    floating = arrays[0].dtype in (np.float32, np.float64)
    if impl == "auto":
        return ("gemm" if floating else "reference") if host else "cupy"
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS} or None, got {impl!r}")
    if impl in ("gemm", "numba") and not (host and floating):
        raise TypeError(f"impl={impl!r} needs NumPy float32/float64 arrays")
    if impl in ("cuda", "cupy") and not floating:
        raise TypeError(f"impl={impl!r} needs float32/float64 arrays")
    return impl


_FORWARD = {"reference": _forward_ref, "gemm": _forward_gemm, "numba": _forward_numba,
            "cuda": _forward_cuda, "cupy": _forward_cupy}
_INPUT_GRAD = {"reference": _input_grad_ref, "gemm": _input_grad_gemm, "numba": _input_grad_numba,
               "cuda": _input_grad_cuda, "cupy": _input_grad_cupy}
_WEIGHT_GRAD = {"reference": _weight_grad_ref, "gemm": _weight_grad_gemm, "numba": _weight_grad_numba,
                "cuda": _weight_grad_cuda, "cupy": _weight_grad_cupy}


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
    impl = _select(impl, (x, weight, bias))
    return _FORWARD[impl](x, weight, bias, mask_type, data_channels, geo)


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
    impl = _select(impl, (g, weight))
    return _INPUT_GRAD[impl](g, weight, mask_type, data_channels, geo)


def masked_conv2d_weight_grad(x, g, kernel_size, mask_type="B", data_channels=1, stride=1, padding=None,
                              impl=None):
    """dL/dweight for L = <g, masked_conv2d_forward(x, weight, stride=stride, padding=padding)>:
    (C_out, C_in, k, k), exactly zero at the masked entries. x: (N, C_in, H, W); g: (N, C_out, H_out, W_out)."""
    _check_images("x", x)
    _check_images("g", g)
    _check_config(g.shape[1], x.shape[1], kernel_size, mask_type, data_channels)
    geo = _geometry_of(kernel_size, *x.shape[2:], stride, padding)
    if g.shape[0] != x.shape[0] or g.shape[2:] != (geo.ho, geo.wo):
        raise ValueError(f"g (shape {g.shape}) must have x's batch size {x.shape[0]} and the output image size "
                         f"{(geo.ho, geo.wo)} of x (shape {x.shape}) with stride {(geo.sh, geo.sw)} and padding "
                         f"{(geo.ph, geo.pw)}")
    _check_same_dtype([("x", x), ("g", g)])
    impl = _select(impl, (x, g))
    return _WEIGHT_GRAD[impl](x, g, kernel_size, mask_type, data_channels, geo)
