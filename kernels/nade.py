"""NADE's fixed-ordering pass as Numba CPU loops: the logits and their vector-Jacobian product.

For inputs x (N, D), an ordering o, W (H, D), V (D, H), b (D,), c (H,) and, for the
order-agnostic model, U (H, D) (scratchgen.models.nade has the model behind these equations):

    a_0     = c,
    a_{d+1} = a_d + x_{o_d} W_{:, o_d} (+ U_{:, o_d}),          d = 0 .. D-2
    h_d     = act(a_d)                    act = sigmoid or relu
    logit_{o_d} = b_{o_d} + V_{o_d} . h_d.

The wrappers gather the columns in generation order first (Wo = W.T[o], Vo = V[o], Uo = U.T[o],
all (D, H) and C-contiguous), so every step of the loops reads whole rows.

Forward. One example at a time, d = 0 .. D-1, keeping only the running pre-activation a (H,):
O(N H) memory for the batch, where the engine-ops form holds several (N, D, H) arrays. A block of
BLOCK examples advances together, d by d, so that the rows Wo[d], Vo[d] are read once per block
(from cache) instead of once per example.

Backward. With G = dL/dlogit (in generation order) and ga_d = dL/da_d,

    ga_d  = G_{o_d} V_{o_d} * act'(a_d)          (sigmoid: h (1 - h); relu: [a > 0] = [h > 0])
    r_d   = sum_{e > d} ga_e                     (a_e for e > d contains the step d -> d+1)
    dW_{:, o_d} = sum_n x_{o_d} r_d,   dU_{:, o_d} = sum_n r_d,   dx_{o_d} = W_{:, o_d} . r_d,
    dV_{o_d}    = sum_n G_{o_d} h_d,   dc = sum_n r_{-1} (= sum over all d of ga_d),   db = sum_n G.

r is a suffix sum, so the backward runs over d in reverse, but h_d comes from the forward
recurrence, which runs forward. Three ways to have h_d in reverse order:
  - subtract: a_d = a_{d+1} - x_{o_d} W_{:, o_d}. Each step rounds, and the errors of up to D
    subtractions pile up on a_d (in float32, ~D eps |a|, at the start of the ordering where the
    gradients are largest); the result would no longer equal the engine-ops reference's.
  - checkpoints every sqrt(D) steps, each segment recomputed from its checkpoint when the reverse
    pass reaches it: exact and O(sqrt(D) H) per example, at the price of the segment bookkeeping.
  - run the recurrence forward once more inside the backward, keeping h_d for the D steps of the
    examples in the block: (BLOCK, D, H) scratch per thread, independent of N.
The last is used: it is exact (the same recurrence as the forward's, in the same order), simple,
and its scratch, a few MB per thread at MNIST sizes, is written and read once, in order. Keeping
h rather than a saves a second exp in the reverse pass: act'(a) is a function of h for both
activations.

Parallelism. Examples are independent: the forward's prange is over blocks of examples. The
backward sums dW, dV, dU, dc over examples, so each thread accumulates its own share of the batch
(`chunk`) into its own (D, H) buffers, summed after the parallel region; no locks, no atomics.
The parallel bodies run from PARALLEL_MIN units of N*D*H work (`scratchgen.threads.parallel_pays`).

Rounding. fastmath is limited to 'reassoc' on the per-block bodies: it lets LLVM keep vector partial
sums for the dot products V_{o_d} . h_d and W_{:, o_d} . r_d (a sequential float sum does not
vectorise); every other operation rounds as written. The sigmoid is 1 / (1 + exp(-a)) with
fast_exp.exp (<= 1 ulp, vectorisable), under error_model="numpy" (x/0 gives inf, as in NumPy):
Python's error model puts a zero-division check in the division, and that check stops the loop
from vectorising. The engine-ops reference sums the cumsum and the dot products in other orders
and computes the sigmoid as (1 + tanh(a/2)) / 2; the two agree to rounding
(tests/test_nade_kernel.py).

'reference' is the engine-ops pass in scratchgen.models.nade (`force_impl("reference", "nade")`);
it also serves CuPy arrays and higher-order gradients.
"""
import numba
import numpy as np
from numba import njit, prange

from scratchgen.threads import parallel_pays

from .dispatch import register, select
from .fast_exp import exp as _exp

FAMILY = register("nade", ("reference", "numba"), host="numba", device="reference", host_only=("numba",))
PARALLEL_MIN = 1 << 18  # N*D*H; col2im's break-even, not measured for this kernel (one MNIST example
                        # is already above it, so only tiny models stay serial)
BLOCK = 4               # examples that advance together over d (the rows of W and V are reused BLOCK times)


# ------------------------------------------------------------------------------------------------
# Loop bodies: one block of examples [n0, n1). `one` is 1 in the arrays' dtype (Numba's literals are
# float64, which would promote float32 arithmetic).
# ------------------------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def _advance(a, xv, Wo, Uo, d, has_u):
    """a += x_{o_d} W_{:, o_d} (+ U_{:, o_d}): the step from a_d to a_{d+1}."""
    if has_u:
        for j in range(a.shape[0]):
            a[j] = a[j] + xv * Wo[d, j] + Uo[d, j]
    else:
        for j in range(a.shape[0]):
            a[j] = a[j] + xv * Wo[d, j]


@njit(cache=True, error_model="numpy")
def _activate(a, h, sigmoid, one):
    if sigmoid:
        for j in range(a.shape[0]):
            h[j] = one / (one + _exp(-a[j]))
    else:
        zero = one - one
        for j in range(a.shape[0]):
            h[j] = a[j] if a[j] > zero else zero


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _logits_block(n0, n1, xo, Wo, Vo, bo, c, Uo, has_u, sigmoid, one, out, a, h):
    """out[n, d] for n in [n0, n1); a (BLOCK, H) holds the block's running pre-activations, h (H,)
    one activation row."""
    D, H = Vo.shape
    for k in range(n1 - n0):
        a[k, :] = c
    for d in range(D):
        for k in range(n1 - n0):
            _activate(a[k], h, sigmoid, one)
            s = one - one
            for j in range(H):
                s += Vo[d, j] * h[j]
            out[n0 + k, d] = bo[d] + s
            if d + 1 < D:  # a_D is never used
                _advance(a[k], xo[n0 + k, d], Wo, Uo, d, has_u)


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _vjp_block(n0, n1, xo, go, Wo, Vo, c, Uo, has_u, sigmoid, need_x, one,
               gWo, gVo, gUo, gc, gxo, a, hs, r):
    """Add the block's shares of dW, dV, dU, dc (generation order) into gWo, gVo, gUo, gc and
    write its dx rows into gxo. Scratch: a and r (BLOCK, H), hs (BLOCK, D, H)."""
    D, H = Vo.shape
    zero = one - one
    nb = n1 - n0
    # Forward again, keeping h_d: the same recurrence as _logits_block, so the same values.
    for k in range(nb):
        a[k, :] = c
    for d in range(D):
        for k in range(nb):
            _activate(a[k], hs[k, d], sigmoid, one)
            if d + 1 < D:
                _advance(a[k], xo[n0 + k, d], Wo, Uo, d, has_u)
    # Reverse: r holds sum_{e > d} ga_e, the gradient of a_{d+1}.
    for k in range(nb):
        r[k, :] = zero
    for d in range(D - 1, -1, -1):
        for k in range(nb):
            n = n0 + k
            rk, hk = r[k], hs[k, d]
            # a_{d+1} = a_d + x W_{:, o_d} + U_{:, o_d}: r reaches W's column, U's column and x
            if need_x:
                s = zero
                for j in range(H):
                    s += Wo[d, j] * rk[j]
                gxo[n, d] = s
            xv = xo[n, d]
            for j in range(H):
                gWo[d, j] += xv * rk[j]
            if has_u:
                for j in range(H):
                    gUo[d, j] += rk[j]
            # logit_{o_d} = b + V_{o_d} . h_d: into V's row, and through act into a_d (then into r)
            g = go[n, d]
            for j in range(H):
                gVo[d, j] += g * hk[j]
            if sigmoid:
                for j in range(H):
                    rk[j] += g * Vo[d, j] * (hk[j] * (one - hk[j]))
            else:
                for j in range(H):
                    rk[j] += g * Vo[d, j] if hk[j] > zero else zero
    for k in range(nb):     # a_0 = c: every ga_d reaches c
        for j in range(H):
            gc[j] += r[k, j]


# ------------------------------------------------------------------------------------------------
# Serial and parallel drivers (separate functions, so the `cache=True` files never collide)
# ------------------------------------------------------------------------------------------------
@njit(parallel=True, cache=True, error_model="numpy")
def _logits_par(xo, Wo, Vo, bo, c, Uo, has_u, sigmoid, one, out, a, h):
    N = xo.shape[0]
    for blk in prange((N + BLOCK - 1) // BLOCK):
        n0 = blk * BLOCK
        _logits_block(n0, min(n0 + BLOCK, N), xo, Wo, Vo, bo, c, Uo, has_u, sigmoid, one, out, a[blk], h[blk])


@njit(cache=True, error_model="numpy")
def _logits_ser(xo, Wo, Vo, bo, c, Uo, has_u, sigmoid, one, out, a, h):
    N = xo.shape[0]
    for n0 in range(0, N, BLOCK):
        _logits_block(n0, min(n0 + BLOCK, N), xo, Wo, Vo, bo, c, Uo, has_u, sigmoid, one, out, a[0], h[0])


@njit(cache=True, error_model="numpy")
def _vjp_chunk(t, chunks, xo, go, Wo, Vo, c, Uo, has_u, sigmoid, need_x, one, gWo, gVo, gUo, gc, gxo, a, hs, r):
    """Chunk t of `chunks`: a contiguous share of the examples, in blocks, into the chunk's own
    accumulators gWo[t], gVo[t], gUo[t], gc[t]."""
    N = xo.shape[0]
    lo, hi = t * N // chunks, (t + 1) * N // chunks
    for n0 in range(lo, hi, BLOCK):
        _vjp_block(n0, min(n0 + BLOCK, hi), xo, go, Wo, Vo, c, Uo, has_u, sigmoid, need_x, one,
                   gWo[t], gVo[t], gUo[t], gc[t], gxo, a[t], hs[t], r[t])


@njit(parallel=True, cache=True, error_model="numpy")
def _vjp_par(xo, go, Wo, Vo, c, Uo, has_u, sigmoid, need_x, one, gWo, gVo, gUo, gc, gxo, a, hs, r):
    chunks = gWo.shape[0]
    for t in prange(chunks):
        _vjp_chunk(t, chunks, xo, go, Wo, Vo, c, Uo, has_u, sigmoid, need_x, one, gWo, gVo, gUo, gc, gxo, a, hs, r)


@njit(cache=True, error_model="numpy")
def _vjp_ser(xo, go, Wo, Vo, c, Uo, has_u, sigmoid, need_x, one, gWo, gVo, gUo, gc, gxo, a, hs, r):
    _vjp_chunk(0, 1, xo, go, Wo, Vo, c, Uo, has_u, sigmoid, need_x, one, gWo, gVo, gUo, gc, gxo, a, hs, r)


# ------------------------------------------------------------------------------------------------
# Dispatch
# ------------------------------------------------------------------------------------------------
def available(x, W, V, b, c, U=None):
    """Whether the compiled loops take these arrays: NumPy, one float dtype (float32 or float64),
    and the family not forced to the reference."""
    arrays = [x, W, V, b, c] + ([] if U is None else [U])
    if select(FAMILY, None, arrays) != "numba":
        return False
    return all(isinstance(t, np.ndarray) and t.dtype == W.dtype for t in arrays)


def _ordered(W, V, U, order):
    """W's columns, V's rows and U's columns in generation order, each (D, H) (U absent: (0, H))."""
    Wo = np.ascontiguousarray(W.T[order])
    Uo = np.ascontiguousarray(U.T[order]) if U is not None else np.empty((0, W.shape[0]), W.dtype)
    return Wo, np.ascontiguousarray(V[order]), Uo


def logits(x, W, V, b, c, U, order, sigmoid):
    """(N, D) logits of p(x_i = 1 | x before i in `order`), in input order (the module docstring)."""
    N, D = x.shape
    H, dt = W.shape[0], W.dtype
    Wo, Vo, Uo = _ordered(W, V, U, order)
    bo = np.ascontiguousarray(b[order])
    xo = np.ascontiguousarray(x[:, order])
    out = np.empty((N, D), dt)
    c = np.ascontiguousarray(c)
    if N > BLOCK and parallel_pays(N * D * H, PARALLEL_MIN):    # (one block: nothing to share)
        blocks = (N + BLOCK - 1) // BLOCK
        _logits_par(xo, Wo, Vo, bo, c, Uo, U is not None, sigmoid, dt.type(1), out,
                    np.empty((blocks, BLOCK, H), dt), np.empty((blocks, H), dt))
    else:
        _logits_ser(xo, Wo, Vo, bo, c, Uo, U is not None, sigmoid, dt.type(1), out,
                    np.empty((1, BLOCK, H), dt), np.empty((1, H), dt))
    result = np.empty_like(out)
    result[:, order] = out
    return result


def logits_vjp(g, x, W, V, c, U, order, sigmoid, need_x):
    """(dx or None, dW, dV, db, dc, dU or None) for the cotangent g (N, D) of `logits`."""
    N, D = x.shape
    H, dt = W.shape[0], W.dtype
    Wo, Vo, Uo = _ordered(W, V, U, order)
    xo = np.ascontiguousarray(x[:, order])
    go = np.ascontiguousarray(g[:, order], dtype=dt)
    par = N > 1 and parallel_pays(N * D * H, PARALLEL_MIN)
    chunks = max(1, min(numba.get_num_threads(), N)) if par else 1
    gWo, gVo = np.zeros((chunks, D, H), dt), np.zeros((chunks, D, H), dt)
    gUo = np.zeros((chunks,) + Uo.shape, dt)
    gc = np.zeros((chunks, H), dt)
    gxo = np.zeros((N, D), dt) if need_x else np.empty((0, 0), dt)
    scratch = (np.empty((chunks, BLOCK, H), dt), np.empty((chunks, BLOCK, D, H), dt), np.empty((chunks, BLOCK, H), dt))
    (_vjp_par if par else _vjp_ser)(xo, go, Wo, Vo, np.ascontiguousarray(c), Uo, U is not None, sigmoid, need_x,
                                    dt.type(1), gWo, gVo, gUo, gc, gxo, *scratch)
    # Back to input order: column o_d of W and U, row o_d of V and b.
    gW, gV, gb = np.empty_like(W), np.empty_like(V), np.empty(D, dt)
    gW[:, order] = gWo.sum(axis=0).T
    gV[order] = gVo.sum(axis=0)
    gb[order] = go.sum(axis=0)
    gU = None
    if U is not None:
        gU = np.empty_like(U)
        gU[:, order] = gUo.sum(axis=0).T
    gx = None
    if need_x:
        gx = np.empty((N, D), dt)
        gx[:, order] = gxo
    return gx, gW, gV, gb, gc.sum(axis=0), gU
