"""Linear algebra with gradients (`sg.linalg`, after `numpy.linalg` / `torch.linalg`).

Every op works on the last two axes (batches in front) and its backward rule is written with
the engine's ops, so second-order gradients work too. The rules (Giles 2008, "Extended
collection of matrix derivative results"; Murray 2016 for the Cholesky factor):

    inv       X = A^-1              gA = -X^T g X^T
    solve     X = A^-1 B            gB = A^-T g,  gA = -gB X^T
    slogdet   (s, log|det A|)       gA = g A^-T                  (s has no gradient)
    det       d = det A             gA = g d A^-T
    cholesky  A = L L^T             gA = sym(L^-T Phi(L^T gL) L^-1), Phi: lower triangle, half diagonal
    eigh      A = V diag(w) V^T     gA = sym(V (diag(gw) + F o (V^T gV)) V^T),  F_ij = 1 / (w_j - w_i)
    svd       A = U diag(s) V^T     Townsend 2016, F_ij = 1 / (s_j^2 - s_i^2); pinv composed from it

Failure modes, documented rather than silent: inv, solve, slogdet and det of a singular matrix
raise NumPy's LinAlgError (slogdet returns sign 0 and -inf forward, but its gradient then needs
an inverse, which raises); cholesky of a matrix that is not positive definite raises; eigh's
gradient is infinite where two eigenvalues coincide (F divides by their difference), so it is
exact only for distinct eigenvalues, and the result carries infinities, never a wrong finite
number. cholesky and eigh read the lower triangle only, as NumPy does; their gradients are
symmetric.
"""
import numpy as np

from .autograd import grad
from .ops.arrays import diag_embed, tril
from .ops.elementwise import unbroadcast
from .tensor import Tensor, record


def _np(x):
    return np.linalg if x.xp is np else x.xp.linalg


def _sym(a):
    return (a + a.mT) * 0.5


def inv(a):
    return record(_np(a).inv(a.data), inv_vjp, (a,))


def inv_vjp(g, out, a):
    return (-(out.mT @ g @ out.mT),)


def solve(a, b):
    """X with A X = B; b may be a vector (n,) or a matrix (n, k), batched alike."""
    vector = b.ndim == a.ndim - 1
    bb = b.unsqueeze(-1) if vector else b
    x = record(_np(a).solve(a.data, bb.data), solve_vjp, (a, bb))
    return x.squeeze(-1) if vector else x


def solve_vjp(g, out, a, b):
    gb = solve(a.mT, g)   # batch axes broadcast between a and b: sum each gradient back to its own
    return ((unbroadcast(-(gb @ out.mT), a.shape) if a._requires_grad else None),
            (unbroadcast(gb, b.shape) if b._requires_grad else None))


def slogdet(a):
    """(sign, log|det A|); the gradient flows through log|det A| only."""
    sign, logabs = _np(a).slogdet(a.data)
    return Tensor(sign), record(logabs, slogdet_vjp, (a,))


def slogdet_vjp(g, out, a):
    return (g.unsqueeze(-1).unsqueeze(-1) * inv(a).mT,)


def det(a):
    return record(_np(a).det(a.data), det_vjp, (a,))


def det_vjp(g, out, a):
    return ((g * out).unsqueeze(-1).unsqueeze(-1) * inv(a).mT,)


def cholesky(a):
    """The lower-triangular L with A = L L^T, for symmetric positive definite A."""
    return record(_np(a).cholesky(a.data), cholesky_vjp, (a,))


def cholesky_vjp(g, out, a):
    n = out.shape[-1]
    half_diagonal = Tensor(out.xp.asarray(np.tril(np.ones((n, n)), -1) + 0.5 * np.eye(n), dtype=out.dtype))
    phi = (out.mT @ tril(g)) * half_diagonal
    l_inv = inv(out)
    return (_sym(l_inv.mT @ phi @ l_inv),)


def eigh(a):
    """(w, V): eigenvalues ascending and orthonormal eigenvectors of symmetric A. Each output has
    the rule for its own cotangent; used together, their contributions add (the rule is linear)."""
    w, v = _np(a).eigh(a.data)
    return record(w, eigh_values_vjp, (a,)), record(v, eigh_vectors_vjp, (a,))


def eigh_values_vjp(g, out, a):
    w, v = eigh(a)  # recomputed through the engine, so the rule is itself differentiable
    return (_sym(v @ diag_embed(g) @ v.mT),)


def eigh_vectors_vjp(g, out, a):
    w, v = eigh(a)
    gaps = w.unsqueeze(-2) - w.unsqueeze(-1)                         # w_j - w_i
    n = w.shape[-1]
    off = Tensor(w.xp.asarray(1 - np.eye(n), dtype=w.dtype))
    f = off / (gaps + Tensor(w.xp.asarray(np.eye(n), dtype=w.dtype)))   # 0 on the diagonal
    return (_sym(v @ (f * (v.mT @ g)) @ v.mT),)


def svd(a):
    """Thin SVD (U, S, Vh) with A = U diag(S) Vh. Gradients (Townsend 2016) are exact for
    distinct non-zero singular values; where two coincide, F below divides by zero and the
    gradient carries infinities (as eigh's does), never a wrong finite number."""
    u, sv, vh = _np(a).svd(a.data, full_matrices=False)
    return (record(u, svd_u_vjp, (a,)), record(sv, svd_s_vjp, (a,)), record(vh, svd_vh_vjp, (a,)))


def _svd_terms(a):
    u, sv, vh = svd(a)       # through the engine: the rules are themselves differentiable
    k = sv.shape[-1]
    eye = Tensor(sv.xp.asarray(np.eye(k), dtype=sv.dtype))
    s2 = sv * sv
    f = (1 - eye) / (s2.unsqueeze(-2) - s2.unsqueeze(-1) + eye)      # 1 / (s_j^2 - s_i^2), 0 on the diagonal
    return u, sv, vh.mT, f, eye


def svd_s_vjp(g, out, a):
    u, sv, v, f, eye = _svd_terms(a)
    return (u @ diag_embed(g) @ v.mT,)


def svd_u_vjp(g, out, a):
    u, sv, v, f, eye = _svd_terms(a)
    s = diag_embed(sv)
    inner = f * (u.mT @ g - g.mT @ u)
    m = u.shape[-2]
    proj = Tensor(u.xp.asarray(np.eye(m), dtype=u.dtype)) - u @ u.mT
    return (u @ (inner @ s) @ v.mT + proj @ g @ diag_embed(1 / sv) @ v.mT,)


def svd_vh_vjp(g, out, a):
    u, sv, v, f, eye = _svd_terms(a)
    gv = g.mT
    s = diag_embed(sv)
    inner = f * (v.mT @ gv - gv.mT @ v)
    n = v.shape[-2]
    proj = Tensor(v.xp.asarray(np.eye(n), dtype=v.dtype)) - v @ v.mT
    return (u @ (s @ inner) @ v.mT + u @ diag_embed(1 / sv) @ gv.mT @ proj,)


def pinv(a):
    """The Moore-Penrose pseudo-inverse V diag(1/S) U^T (full-rank inputs; no cut-off)."""
    u, sv, vh = svd(a)
    return vh.mT @ diag_embed(1 / sv) @ u.mT


def qr(a):
    """(Q, R), reduced, as numpy.linalg.qr; forward only (its gradient is not implemented)."""
    q, r = _np(a).qr(a.data)
    return Tensor(q), Tensor(r)


def lu(a):
    """(P, L, U) with A = P L U (scipy.linalg.lu), as constants: Glow's 1x1 convolution takes its
    LU parameterization from it at initialisation and learns L and U from there."""
    import scipy.linalg
    p, l, u = scipy.linalg.lu(np.asarray(a.data))
    return Tensor(p.astype(a.dtype)), Tensor(l.astype(a.dtype)), Tensor(u.astype(a.dtype))


def norm(x, ord=None, axis=None, keepdims=False):
    """The 2-norm of a vector or the Frobenius norm of a matrix (ord None or 'fro'), or sum |x|
    (ord 1 over a vector); other orders are not implemented."""
    if ord in (None, "fro", 2) and (ord != 2 or axis is None or isinstance(axis, int)):
        return (x * x).sum(axis=axis, keepdims=keepdims).sqrt()
    if ord == 1 and (axis is None or isinstance(axis, int)):
        return x.abs().sum(axis=axis, keepdims=keepdims)
    raise NotImplementedError(f"linalg.norm: ord={ord!r} with axis={axis!r} is not implemented")


# -- derivatives of functions ---------------------------------------------------------------------
def jacobian(fn, x, create_graph=False):
    """d fn(x) / dx, shaped fn(x).shape + x.shape, one backward pass per output element."""
    x = x if x._requires_grad else Tensor(x.data, requires_grad=True)
    y = fn(x)
    rows = []
    for i in range(y.data.size):
        seed = np.zeros(y.data.size, dtype=y.dtype)
        seed[i] = 1
        gi, = grad(y, x, grad_outputs=Tensor(y.xp.asarray(seed.reshape(y.shape))), retain_graph=True,
                   create_graph=create_graph, allow_unused=True)
        rows.append(gi if gi is not None else Tensor(x.xp.zeros_like(x.data)))
    from .ops.shape import stack
    return stack(rows, axis=0).reshape(y.shape + x.shape)


def hessian(fn, x):
    """d^2 fn(x) / dx^2 for a scalar fn, shaped x.shape + x.shape."""
    x = x if x._requires_grad else Tensor(x.data, requires_grad=True)
    return jacobian(lambda t: grad(fn(t), t, create_graph=True)[0], x)
