"""'numba', the coupling as Numba CPU loops: the default for NumPy float32/float64 arrays.

The element-wise math is coupling.py's `*_elem` functions, inlined into these loops
(dispatch.cpu_inline); exp is fast_exp.exp, which LLVM vectorises. A prange over rows from
PARALLEL_MIN elements on (`scratchgen.threads.parallel_pays`), a plain loop below (separate
functions, not one compiled twice, so the `cache=True` files never collide). The threshold is high:
the serial kernel already runs at memory speed at MNIST sizes, so a parallel region could save
little there, while on an oversubscribed machine it waits for a descheduled worker
(bench/results_coupling.md).
"""
import numpy as np
from numba import njit, prange

from scratchgen.threads import parallel_pays

from .coupling import _forward_elem, _forward_grad_elem, _inverse_elem, _inverse_grad_elem
from .dispatch import cpu_inline
from .fast_exp import exp as _exp

PARALLEL_MIN = 1 << 18       # elements; smaller calls run the serial kernels

_fwd_cpu = cpu_inline(_forward_elem)
_inv_cpu = cpu_inline(_inverse_elem)
_fwd_grad_cpu = cpu_inline(_forward_grad_elem)
_inv_grad_cpu = cpu_inline(_inverse_grad_elem)


# One row of the forward (or inverse) with its logdet. Each flag combination has its own loop
# (see the gradient rows below for why). 'reassoc' is only for the row sum: it lets LLVM keep
# vector partial sums (a sequential float sum cannot be vectorised). The inlined element bodies
# (a product and a sum each) have nothing to reassociate; _exp is compiled with its own flags.
@njit(cache=True, fastmath={"reassoc"})
def _rows_one(i, v, s, t, out, ld, e_out, zero, inverse, save_e):
    d = v.shape[1]
    acc = zero
    if inverse and save_e:
        for j in range(d):
            e = _exp(-s[i, j])
            out[i, j] = _inv_cpu(v[i, j], e, t[i, j])
            e_out[i, j] = e
            acc += s[i, j]
    elif inverse:
        for j in range(d):
            out[i, j] = _inv_cpu(v[i, j], _exp(-s[i, j]), t[i, j])
            acc += s[i, j]
    elif save_e:
        for j in range(d):
            e = _exp(s[i, j])
            out[i, j] = _fwd_cpu(v[i, j], e, t[i, j])
            e_out[i, j] = e
            acc += s[i, j]
    else:
        for j in range(d):
            out[i, j] = _fwd_cpu(v[i, j], _exp(s[i, j]), t[i, j])
            acc += s[i, j]
    ld[i] = -acc if inverse else acc


@njit(parallel=True, cache=True)
def _rows_par(v, s, t, out, ld, e_out, zero, inverse, save_e):
    for i in prange(v.shape[0]):
        _rows_one(i, v, s, t, out, ld, e_out, zero, inverse, save_e)


@njit(cache=True)
def _rows_ser(v, s, t, out, ld, e_out, zero, inverse, save_e):
    for i in range(v.shape[0]):
        _rows_one(i, v, s, t, out, ld, e_out, zero, inverse, save_e)


# The gradient rows. Each combination of flags gets its own loop: LLVM vectorises a
# straight-line loop, but not one with a conditional store or a conditional exp. `add` is gl[i], or -0.0 without gl (x + -0.0 == x for every x, -0.0 included).
@njit(cache=True)
def _forward_grad_one(i, x, s, g, e_in, gx, gs, add, has_e, need_gx):
    d = x.shape[1]
    if has_e and need_gx:
        for j in range(d):
            a, b = _fwd_grad_cpu(g[i, j], x[i, j], e_in[i, j])
            gx[i, j] = a
            gs[i, j] = b + add
    elif has_e:
        for j in range(d):
            gs[i, j] = _fwd_grad_cpu(g[i, j], x[i, j], e_in[i, j])[1] + add
    elif need_gx:
        for j in range(d):
            a, b = _fwd_grad_cpu(g[i, j], x[i, j], _exp(s[i, j]))
            gx[i, j] = a
            gs[i, j] = b + add
    else:
        for j in range(d):
            gs[i, j] = _fwd_grad_cpu(g[i, j], x[i, j], _exp(s[i, j]))[1] + add


@njit(parallel=True, cache=True)
def _forward_grad_par(x, s, g, gl, e_in, gx, gs, has_gl, has_e, need_gx, neg_zero):
    for i in prange(x.shape[0]):
        _forward_grad_one(i, x, s, g, e_in, gx, gs, gl[i] if has_gl else neg_zero, has_e, need_gx)


@njit(cache=True)
def _forward_grad_ser(x, s, g, gl, e_in, gx, gs, has_gl, has_e, need_gx, neg_zero):
    for i in range(x.shape[0]):
        _forward_grad_one(i, x, s, g, e_in, gx, gs, gl[i] if has_gl else neg_zero, has_e, need_gx)


# `sub` is gl[i], or +0.0 without gl (x - 0.0 == x for every x).
@njit(cache=True)
def _inverse_grad_one(i, y, s, t, g, e_in, gy, gs, gt, sub, has_e):
    d = y.shape[1]
    if has_e:
        for j in range(d):
            a, b, c = _inv_grad_cpu(g[i, j], y[i, j], t[i, j], e_in[i, j])
            gy[i, j] = a
            gs[i, j] = b - sub
            gt[i, j] = c
    else:
        for j in range(d):
            a, b, c = _inv_grad_cpu(g[i, j], y[i, j], t[i, j], _exp(-s[i, j]))
            gy[i, j] = a
            gs[i, j] = b - sub
            gt[i, j] = c


@njit(parallel=True, cache=True)
def _inverse_grad_par(y, s, t, g, gl, e_in, gy, gs, gt, has_gl, has_e, zero):
    for i in prange(y.shape[0]):
        _inverse_grad_one(i, y, s, t, g, e_in, gy, gs, gt, gl[i] if has_gl else zero, has_e)


@njit(cache=True)
def _inverse_grad_ser(y, s, t, g, gl, e_in, gy, gs, gt, has_gl, has_e, zero):
    for i in range(y.shape[0]):
        _inverse_grad_one(i, y, s, t, g, e_in, gy, gs, gt, gl[i] if has_gl else zero, has_e)


def _pick(par, ser, n_rows, size):
    return par if n_rows > 1 and parallel_pays(size, PARALLEL_MIN) else ser


def _c(a):
    return np.ascontiguousarray(a)


def rows(v, s, t, inverse, save_e):
    v, s, t = _c(v), _c(s), _c(t)
    dt = s.dtype
    out, ld = np.empty_like(s), np.empty(s.shape[0], dt)
    e = np.empty_like(s) if save_e else np.empty((0, 0), dt)
    _pick(_rows_par, _rows_ser, s.shape[0], s.size)(v, s, t, out, ld, e, dt.type(0), inverse, save_e)
    return out, ld, (e if save_e else None)


def forward_grad(x2, s, g, gl, e, need_gx):
    x2, s, g = _c(x2), _c(s), _c(g)
    dt = s.dtype
    gs = np.empty_like(s)
    gx = np.empty_like(s) if need_gx else np.empty((0, 0), dt)
    gl_ = _c(gl) if gl is not None else np.empty(0, dt)
    e_ = _c(e) if e is not None else np.empty((0, 0), dt)
    _pick(_forward_grad_par, _forward_grad_ser, s.shape[0], s.size)(
        x2, s, g, gl_, e_, gx, gs, gl is not None, e is not None, need_gx, dt.type(-0.0))
    return (gx if need_gx else None), gs, g


def inverse_grad(y2, s, t, g, gl, e):
    y2, s, t, g = _c(y2), _c(s), _c(t), _c(g)
    dt = s.dtype
    gy, gs, gt = np.empty_like(s), np.empty_like(s), np.empty_like(s)
    gl_ = _c(gl) if gl is not None else np.empty(0, dt)
    e_ = _c(e) if e is not None else np.empty((0, 0), dt)
    _pick(_inverse_grad_par, _inverse_grad_ser, s.shape[0], s.size)(
        y2, s, t, g, gl_, e_, gy, gs, gt, gl is not None, e is not None, dt.type(0))
    return gy, gs, gt

