"""'numba', the masked convolution as Numba CPU loops over the unmasked taps: no BLAS.

One (image, channel) plane per task, a prange over the planes from PARALLEL_MIN multiply-adds on
(`scratchgen.threads.parallel_pays`), the serial loop below (separate functions, so that the
`cache=True` files never collide). Which input channels an output sees at the centre comes from
masked_geometry's `centre_inputs` / `centre_first_output`, inlined here as in the CUDA kernels.

Planes are zero-padded and flattened, so that a tap is a constant offset and the inner loop is one
long contiguous multiply-add over the plane (vectorised, no bounds checks). With stride 1 and rows
of width wq = Wp (the padded width), output pixel (i, j) is q = i * wq + j and tap (a, b) reads the
padded input at q + a * wq + b. The plane is computed on this wide grid (its extra columns per row
are discarded), L = (H_out - 1) * wq + W_out positions.
Strides keep that form through a polyphase layout: the padded plane is split into its sh * sw
phases (rows r with r % sh fixed, columns likewise), each (hq, wq) = (Hp / sh, Wp / sw) and stored
one after the other. Tap (a, b) reads only phase (a % sh, b % sw), in which it is a stride-1 tap at
(a // sh, b // sw): again a constant offset, offs[a, b]. With stride 1 the layout is the padded plane.
The shifted source is passed as a slice, src[off:off + L], never indexed as src[q + off]: Numba
must assume q + off may be negative and wrap it around, which stops LLVM vectorising.

Why not one body with the CUDA kernels: the CPU loops stream whole padded planes through
vectorised multiply-adds, the GPU kernels gather one output per thread with bounds checks; the
accumulation is laid out differently on each, so what they share is the mask logic.
"""
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from scratchgen.threads import parallel_pays

from .dispatch import cpu_inline
from .masked_geometry import centre_first_output, centre_inputs, crop, macs, pad

PARALLEL_MIN = 1 << 23       # multiply-adds; smaller calls run the serial kernels

_centre_inputs = cpu_inline(centre_inputs)
_centre_first_output = cpu_inline(centre_first_output)


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
def _fwd_plane(task, xph, w, bias, d, type_b, offs, wq, y, has_bias):
    c_out, c_in, k, _ = w.shape
    p = k // 2
    ho, wo = y.shape[2], y.shape[3]
    n, o = task // c_out, task % c_out
    acc = np.empty((ho - 1) * wq + wo, y.dtype)
    acc[:] = bias[o] if has_bias else 0
    for a in range(p + 1):
        for b in range(k if a < p else p):          # the rows above; the centre row up to the centre
            _axpy_channels(acc, w, o, a, b, xph, n, offs[a, b], 0, c_in)
    n_in = _centre_inputs(o, c_out // d, c_in // d, type_b)    # the centre: the visible prefix
    _axpy_channels(acc, w, o, p, p, xph, n, offs[p, p], 0, n_in)
    for i in range(ho):
        for j in range(wo):
            y[n, o, i, j] = acc[i * wq + j]


@njit(parallel=True, cache=True)
def _fwd_par(xph, w, bias, d, type_b, offs, wq, y, has_bias):
    for task in prange(y.shape[0] * y.shape[1]):
        _fwd_plane(task, xph, w, bias, d, type_b, offs, wq, y, has_bias)


@njit(cache=True)
def _fwd_ser(xph, w, bias, d, type_b, offs, wq, y, has_bias):
    for task in range(y.shape[0] * y.shape[1]):
        _fwd_plane(task, xph, w, bias, d, type_b, offs, wq, y, has_bias)


@njit(cache=True)
def _input_grad_plane(task, gwide, size, wt, d, type_a, offs, gph):
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
    o_start = _centre_first_output(c, c_out // d, c_in // d, type_a, c_out)
    _axpy_channels(plane[offs[p, p]:offs[p, p] + size], wt, c, p, p, gwide, n, 0, o_start, c_out)


@njit(parallel=True, cache=True)
def _input_grad_par(gwide, size, wt, d, type_a, offs, gph):
    for task in prange(gph.shape[0] * gph.shape[1]):
        _input_grad_plane(task, gwide, size, wt, d, type_a, offs, gph)


@njit(cache=True)
def _input_grad_ser(gwide, size, wt, d, type_a, offs, gph):
    for task in range(gph.shape[0] * gph.shape[1]):
        _input_grad_plane(task, gwide, size, wt, d, type_a, offs, gph)


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
def _weight_grad_pair(task, xph, gwide, size, d, type_b, offs, gw, zero):
    """gw[o, c, taps], summed over the images; gwide holds g on the wide grid (zero in the extra
    columns, so the discarded positions add nothing)."""
    c_out, c_in, k, _ = gw.shape
    p = k // 2
    o, c = task // c_in, task % c_in
    centre = c < _centre_inputs(o, c_out // d, c_in // d, type_b)
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
def _weight_grad_par(xph, gwide, size, d, type_b, offs, gw, zero):
    for task in prange(gw.shape[0] * gw.shape[1]):
        _weight_grad_pair(task, xph, gwide, size, d, type_b, offs, gw, zero)


@njit(cache=True)
def _weight_grad_ser(xph, gwide, size, d, type_b, offs, gw, zero):
    for task in range(gw.shape[0] * gw.shape[1]):
        _weight_grad_pair(task, xph, gwide, size, d, type_b, offs, gw, zero)


def _pick(par, ser, work):
    return par if parallel_pays(work, PARALLEL_MIN) else ser


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
    xpad = pad(x, geo._replace(hp=ph.hq * sh, wp=ph.wq * sw))
    if (sh, sw) == (1, 1):
        return _flat(xpad)
    return np.ascontiguousarray(xpad.reshape(n, c, ph.hq, sh, ph.wq, sw).transpose(0, 1, 3, 5, 2, 4)).reshape(n, c, -1)


def _from_phases(aph, geo, ph):
    """The inverse of _to_phases: (N, C, sh * sw * hq * wq) -> the (N, C, H, W) image part."""
    n, c = aph.shape[:2]
    sh, sw = geo.sh, geo.sw
    full = aph.reshape(n, c, sh, sw, ph.hq, ph.wq).transpose(0, 1, 4, 2, 5, 3).reshape(n, c, ph.hq * sh, ph.wq * sw)
    return np.ascontiguousarray(crop(full, geo))


def _wide(g, ph):
    """g (N, C, H_out, W_out) on the wide grid (N, C, H_out * wq), zero in the extra columns."""
    n, c, ho, wo = g.shape
    gwide = np.zeros((n, c, ho, ph.wq), g.dtype)
    gwide[:, :, :, :wo] = g
    return _flat(gwide)

def forward(x, w, bias, mask_type, d, geo):
    n, c_in = x.shape[:2]
    c_out, _, k, _ = w.shape
    y = np.empty((n, c_out, geo.ho, geo.wo), x.dtype)
    if y.size:
        ph = _phases(geo)
        b = np.ascontiguousarray(bias) if bias is not None else np.empty(0, x.dtype)
        _pick(_fwd_par, _fwd_ser, macs(n, c_out, c_in, geo.ho * geo.wo, k))(
            _to_phases(x, geo, ph), np.ascontiguousarray(w), b, d, int(mask_type == "B"), ph.offs, ph.wq,
            y, bias is not None)
    return y


def input_grad(g, w, mask_type, d, geo):
    n, c_out = g.shape[:2]
    _, c_in, k, _ = w.shape
    if not (g.size and n * c_in):
        return np.zeros((n, c_in, geo.h, geo.w), g.dtype)
    ph = _phases(geo)
    gph = np.zeros((n, c_in, geo.sh * geo.sw * ph.hq * ph.wq), g.dtype)
    _pick(_input_grad_par, _input_grad_ser, macs(n, c_out, c_in, geo.ho * geo.wo, k))(
        _wide(g, ph), ph.size, np.ascontiguousarray(w.transpose(1, 0, 2, 3)), d, int(mask_type == "A"),
        ph.offs, gph)
    return _from_phases(gph, geo, ph)


def weight_grad(x, g, k, mask_type, d, geo):
    n, c_in = x.shape[:2]
    c_out = g.shape[1]
    gw = np.zeros((c_out, c_in, k, k), x.dtype)
    if x.size and g.size:
        ph = _phases(geo)
        _pick(_weight_grad_par, _weight_grad_ser, macs(n, c_out, c_in, geo.ho * geo.wo, k))(
            _to_phases(x, geo, ph), _wide(g, ph), ph.size, d, int(mask_type == "B"), ph.offs, gw,
            x.dtype.type(0))
    return gw
