"""NADE: the Neural Autoregressive Distribution Estimator (Larochelle & Murray 2011), and its
order-agnostic training (Uria, Murray & Larochelle 2014, "A Deep and Tractable Density Estimator").

For binary x in {0,1}^D and an ordering o (a permutation of the D inputs), with W (H x D),
V (D x H), b (D) and c (H):

    p(x) = prod_d p(x_{o_d} | x_{o_<d}),
    p(x_{o_d} = 1 | x_{o_<d}) = sigmoid(b_{o_d} + V_{o_d} . h_d),
    h_d = sigmoid(a_d),   a_d = c + sum_{i<d} W_{:, o_i} x_{o_i}.

W is shared by all D conditionals, so a_{d+1} = a_d + W_{:, o_d} x_{o_d}: the D hidden
pre-activations are one cumulative sum over the ordering and log p(x) costs O(DH) instead of the
O(D^2 H) of D separate networks. `forward` runs that recurrence as one op (`nade_logits`): a
compiled loop over d per example (scratchgen.kernels.nade) that keeps only the running a (H,)
and has a hand-written backward; `nade_logits_reference` is the same pass from the engine's ops
(a cumsum over (N, D, H) arrays), kept as the reference, for CuPy arrays and for second order.

Order-agnostic training (Uria et al. 2014): the model conditions on an arbitrary set of
observed inputs, given by a mask m (m_i = 1: x_i observed), with the mask as extra input
([x * m, m], as DeepNADE does):

    h(x, m) = act(c + W (x * m) + U m),    p(x_i = 1 | x_{m=1}) = sigmoid(b_i + V_i . h(x, m))  for m_i = 0.

Training draws, per example, an ordering o and a split d uniform in 1..D; o_<d are observed and
every remaining input is predicted from the same h:

    loss(x) = -D / (D - d + 1) * sum_{j >= d} log p(x_{o_j} | x_{o_<d}),

an unbiased estimate of E_o[-log p(x | o)], the negative log-likelihood averaged over orderings
(the remaining inputs are exchangeable once o is random, so each stands for the d-th one). For a
given ordering, the mask of the d-th conditional is 1 on o_<d, so its U m term is a cumsum of U's
columns too and the same O(DH) pass evaluates that ordering's exact log-likelihood. An ensemble of
K orderings is the mixture of the K models, scored in probability space:

    log p(x) = log (1/K) sum_k p(x | o_k)     (log-mean-exp; never an average of logits or of log p).

Implemented: the one-hidden-layer NADE of 2011 (sigmoid hidden units, a natural or given ordering;
exact log_prob in nats; incremental ancestral sampling), and the order-agnostic variant as a
one-hidden-layer DeepNADE with the mask input (the activation is a choice: the 2014 paper used
rectified linear units). Not implemented: deeper DeepNADEs (whose layers above the first lose the
O(DH) cumsum), NADE-k, RNADE for real values, and the papers' SGD training schedules (the
optimizer is the spec's choice). The ordering is a constructor argument, not saved in state_dict.
"""
import math

import numpy as np

from .. import backend, nn
from ..autograd import composed_vjp
from ..grad_mode import _GradMode, no_grad
from ..losses import binary_cross_entropy_with_logits
from ..ops.shape import concatenate, stack
from ..tensor import Tensor, float32, record

__all__ = ["NADE", "nade_logits", "nade_logits_reference"]

_ACTIVATIONS = ("sigmoid", "relu")


def _act_array(xp, a, kind):
    if kind == "sigmoid":
        return 0.5 * (1 + xp.tanh(0.5 * a))   # = 1 / (1 + exp(-a)), without exp's overflow for a << 0
    return xp.maximum(a, 0)


_K = None


def _kernels():
    global _K
    if _K is None:
        from ..kernels import nade    # on first use: importing Numba costs time
        _K = nade
    return _K


# -- one ordering: the O(DH) pass ----------------------------------------------------------------
def nade_logits(x, W, V, b, c, U, ordering, activation):
    """NADE's logits for one ordering: (N, D), logit i = b_i + V_i . act(a) with a the pre-activation
    of the inputs before i in `ordering` (U: the order-agnostic mask term, or None).

    On NumPy arrays of one float dtype this is the compiled pass (scratchgen.kernels.nade: O(N H)
    memory, hand-written backward), recorded as one op; otherwise, and under
    `force_impl("reference", "nade")`, the engine-ops pass `nade_logits_reference`. Both agree to
    rounding. The op's backward is the kernel's when no graph is wanted; with create_graph it
    differentiates the engine-ops pass instead, so second-order gradients work on both paths."""
    inputs = (x, W, V, b, c) if U is None else (x, W, V, b, c, U)
    if x.ndim != 2 or not _kernels().available(*(t.data for t in inputs)):
        return nade_logits_reference(x, W, V, b, c, U, ordering, activation)
    data = _kernels().logits(x.data, W.data, V.data, b.data, c.data, None if U is None else U.data, ordering,
                             activation == "sigmoid")
    return record(data, _nade_logits_vjp, inputs, ordering=ordering, activation=activation)


def _nade_logits_vjp(g, out, x, W, V, b, c, U=None, *, ordering, activation):
    inputs = (x, W, V, b, c) if U is None else (x, W, V, b, c, U)
    if _GradMode.enabled:   # create_graph: the engine differentiates the engine-ops pass
        return _composed_vjp(g, inputs, ordering, activation)
    gd = g.data if g.data.dtype == out.data.dtype else g.data.astype(out.data.dtype)
    grads = _kernels().logits_vjp(gd, x.data, W.data, V.data, c.data, None if U is None else U.data, ordering,
                                  activation == "sigmoid", x._requires_grad)
    return tuple(Tensor(d) if d is not None and t._requires_grad else None for d, t in zip(grads, inputs))


def _composed_vjp(g, inputs, ordering, activation):
    """The vjp of `nade_logits_reference`, taken by the engine with create_graph=True."""
    return composed_vjp(lambda x, W, V, b, c, U=None: nade_logits_reference(x, W, V, b, c, U, ordering, activation),
                        inputs, g)


def nade_logits_reference(x, W, V, b, c, U, ordering, activation):
    """`nade_logits` from engine ops, O(N D H) memory: the reference the kernel is checked against,
    and the pass for CuPy arrays and graphs of gradients.

    The pre-activations a_0 .. a_{D-1} are one cumsum over the ordering of the columns of
    [c, W_{:, o_0} x_{o_0}, ..., W_{:, o_{D-2}} x_{o_{D-2}}] (the bias rides along as a column
    with input 1), plus the cumsum of [0, U_{:, o_0}, ...] for the order-agnostic model, whose
    mask at position d is 1 on o_<d. A sigmoid unit is computed as (1 + tanh(a/2)) / 2, the
    same function, with the halves folded into the small weight matrices: the (N, D, H)
    arrays then see one tanh, whose backward rule reuses its output instead of a second exp."""
    o = ordering
    N, D = x.shape
    xo = x[:, o]                                                      # inputs in generation order
    Vo, bo = V[o], b[o]                                               # (D, H), (D,)
    ones = Tensor(x.xp.ones((N, 1), dtype=x.dtype))
    inputs = concatenate([ones, xo[:, :-1]], axis=1)                  # (N, D): 1, x_{o_0}, ..
    columns = concatenate([c.reshape(1, -1), W.T[o][:-1]], axis=0)    # (D, H)
    half = 0.5 if activation == "sigmoid" else 1.0
    a = (inputs.unsqueeze(-1) * (columns * half)).cumsum(axis=1)     # (N, D, H): a_d (halved)
    if U is not None:
        zero = Tensor(x.xp.zeros((1, W.shape[0]), dtype=U.dtype))
        a = a + (concatenate([zero, U.T[o][:-1]], axis=0) * half).cumsum(axis=0)
    if activation == "sigmoid":   # V . sigmoid(a) = (V/2) . tanh(a/2) + sum(V)/2
        logits_o = (a.tanh() * (Vo * 0.5)).sum(axis=-1) + (bo + Vo.sum(axis=-1) * 0.5)
    else:
        logits_o = (a.relu() * Vo).sum(axis=-1) + bo
    return logits_o[:, np.argsort(o)]                                 # back to input order


class NADE(nn.Module):
    """NADE(input_dim, hidden): p(x) over {0,1}^input_dim.

    ordering: the order of generation (input indices; None: natural order 0..D-1).
    order_agnostic: add the mask input U (H x D) and train with `order_agnostic_loss`; the
        ensemble's orderings are then `ensemble_orderings(K)` (random, fixed by `seed`).
    activation: 'sigmoid' (NADE 2011) or 'relu' (DeepNADE)."""

    def __init__(self, input_dim, hidden, ordering=None, order_agnostic=False, activation="sigmoid",
                 seed=0, dtype=float32):
        super().__init__()
        if input_dim < 2:
            raise ValueError(f"NADE needs input_dim >= 2, got {input_dim}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
        D, H = int(input_dim), int(hidden)
        self.input_dim, self.hidden, self.seed = D, H, seed
        self.order_agnostic, self.activation = bool(order_agnostic), activation
        self.ordering = np.arange(D) if ordering is None else np.asarray(ordering, dtype=np.int64)
        if sorted(self.ordering.tolist()) != list(range(D)):
            raise ValueError(f"ordering must be a permutation of 0..{D - 1}")
        self.W = nn.Parameter(np.empty((H, D), dtype=dtype))
        self.V = nn.Parameter(np.empty((D, H), dtype=dtype))
        self.b = nn.Parameter(np.zeros(D, dtype=dtype))
        self.c = nn.Parameter(np.zeros(H, dtype=dtype))
        nn.init.uniform_(self.W, -1 / math.sqrt(D), 1 / math.sqrt(D))
        nn.init.uniform_(self.V, -1 / math.sqrt(H), 1 / math.sqrt(H))
        if self.order_agnostic:
            self.U = nn.Parameter(np.empty((H, D), dtype=dtype))
            nn.init.uniform_(self.U, -1 / math.sqrt(D), 1 / math.sqrt(D))
        else:
            self.U = None

    def _act(self, a):
        return a.sigmoid() if self.activation == "sigmoid" else a.relu()

    def _as_input(self, x):
        w = self.W
        return x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=w.dtype)).to(w.device)

    def _ordering(self, ordering):
        return self.ordering if ordering is None else np.asarray(ordering, dtype=np.int64)

    # -- one ordering: the O(DH) pass ---------------------------------------------------------
    def forward(self, x, ordering=None):
        """Logits of p(x_i = 1 | the inputs before i in the ordering), shape (N, D), in input order
        (`nade_logits`: the compiled pass on NumPy arrays, the engine-ops pass otherwise)."""
        x = self._as_input(x)
        return nade_logits(x, self.W, self.V, self.b, self.c, self.U, self._ordering(ordering), self.activation)

    def log_prob(self, x, ordering=None):
        """Exact log p(x) in nats per example under one ordering (default: the model's own)."""
        x = self._as_input(x)
        return -binary_cross_entropy_with_logits(self(x, ordering), x, reduction="none").sum(axis=1)

    # -- the order-agnostic model ---------------------------------------------------------------
    def masked_logits(self, x, mask):
        """Logits of p(x_i = 1 | x_j for m_j = 1) for every i, from h(x, m) = act(c + W(x*m) + U m).
        Only the entries with m_i = 0 are conditionals of the model."""
        if self.U is None:
            raise ValueError("masked_logits needs an order-agnostic NADE (order_agnostic=True)")
        x, m = self._as_input(x), self._as_input(mask)
        h = self._act((x * m) @ self.W.T + m @ self.U.T + self.c)
        return h @ self.V.T + self.b

    def split_mask(self, n, generator=None):
        """(mask, k): per example, the inputs observed (m = 1) under a random ordering and split
        d = k + 1 uniform in 1..D, i.e. a random set of k = 0..D-1 inputs."""
        from ..random import rng
        draw = rng(generator)
        D = self.input_dim
        k = draw.integers(0, D, size=n)                       # observed inputs: o_1 .. o_k
        rank = draw.random((n, D)).argsort(axis=1).argsort(axis=1)   # position of input i in a random ordering
        return (rank < k[:, None]).astype(self.W.dtype), k

    def order_agnostic_loss(self, x, generator=None, mask=None):
        """Per-example unbiased estimate of E_o[-log p(x | o)]: -D/(D-k) times the log-likelihood
        of the D-k unobserved inputs given the k observed ones (mask from `split_mask`)."""
        x = self._as_input(x)
        N, D = x.shape
        if mask is None:
            mask, _ = self.split_mask(N, generator)
        mask = np.asarray(mask.numpy() if isinstance(mask, Tensor) else mask, dtype=self.W.dtype)
        k = mask.sum(axis=1)
        weight = Tensor(backend.to_device((D / (D - k))[:, None] * (1 - mask), self.W.device))
        m = Tensor(backend.to_device(mask, self.W.device))
        logp = -binary_cross_entropy_with_logits(self.masked_logits(x, m), x, reduction="none")
        return -(logp * weight).sum(axis=1)

    def ensemble_orderings(self, K):
        """K orderings for the ensemble: random ones fixed by the seed (ordering k is the same for
        every K, so a larger ensemble extends a smaller one). A fixed-order NADE has one."""
        if not self.order_agnostic:
            if K != 1:
                raise ValueError(f"a fixed-order NADE has one ordering, not {K}")
            return [self.ordering]
        return [np.random.default_rng([self.seed, k]).permutation(self.input_dim) for k in range(K)]

    def ensemble_log_prob(self, x, K):
        """log (1/K) sum_k p(x | o_k) over `ensemble_orderings(K)`: a mixture, scored exactly."""
        x = self._as_input(x)
        per = [self.log_prob(x, o) for o in self.ensemble_orderings(K)]
        if len(per) == 1:
            return per[0]
        return stack(per, axis=0).logsumexp(axis=0) - math.log(len(per))

    # -- sampling ---------------------------------------------------------------------------------
    @no_grad()
    def sample(self, n, generator=None, ordering=None):
        """Ancestral sampling in the ordering, batched over n samples, without a graph. Drawing
        x_{o_d} adds x_{o_d} W_{:, o_d} (+ U_{:, o_d}) to the pre-activation, so each step costs
        O(nH), as in the forward pass. The uniforms come from the host generator."""
        from ..random import rng
        draw = rng(generator)
        o = self._ordering(ordering)
        W, V, b, c = self.W.data, self.V.data, self.b.data, self.c.data
        xp = self.W.xp
        U = self.U.data if self.U is not None else None
        x = xp.zeros((n, self.input_dim), dtype=W.dtype)
        a = xp.broadcast_to(c, (n, c.shape[0])).copy()
        for d in o:
            logit = _act_array(xp, a, self.activation) @ V[d] + b[d]
            p = backend.to_device(1 / (1 + xp.exp(-logit)), "cpu")
            x_d = backend.to_device((draw.random(n) < p).astype(x.dtype), backend.device_of(x))
            x[:, d] = x_d
            a += x_d[:, None] * W[:, d]
            if U is not None:
                a += U[:, d]
        return Tensor(x)
