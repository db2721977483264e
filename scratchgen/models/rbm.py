"""Restricted Boltzmann machine, binary visible and hidden units (Smolensky 1986; Hinton 2002),
trained with contrastive divergence (CD-k, Hinton 2002) or persistent CD (PCD, Tieleman 2008),
and its partition function estimated by annealed importance sampling (AIS, Salakhutdinov &
Murray 2008).

Energy and distribution, v in {0,1}^D, h in {0,1}^H, W of shape (H, D):

    E(v, h) = -b.v - c.h - h.W v,      p(v, h) = exp(-E(v, h)) / Z

Summing out h gives the free energy, and both conditionals factorize:

    F(v) = -log sum_h exp(-E(v, h)) = -b.v - sum_j softplus(c_j + W_j.v),   p(v) = exp(-F(v)) / Z
    p(h_j = 1 | v) = sigmoid(c_j + W_j.v),      p(v_i = 1 | h) = sigmoid(b_i + sum_j h_j W_ji)

so block Gibbs sampling alternates h ~ p(h|v) and v ~ p(v|h). The log-likelihood gradient is

    d(-log p(v))/d theta = dF(v)/d theta - E_{v' ~ p}[dF(v')/d theta].

CD-k replaces the model expectation by v' after k Gibbs steps started at the data; PCD by
fantasy particles whose chains persist from one parameter update to the next (only k steps
per update, but never restarted). Either is trained through autograd with the surrogate

    L = mean_data F(v) - mean_negatives F(stop_gradient(v'))

whose gradient is exactly the CD (or PCD) estimate, so any optimizer applies.

AIS: intermediate distributions between a base-rate model A (W = 0, c = 0, visible biases b_A:
independent pixels) and the RBM B, at inverse temperatures 0 = beta_0 < ... < beta_K = 1,

    log p*_k(v) = (1 - beta_k) b_A.v + beta_k b.v + sum_j softplus(beta_k (c_j + W_j.v)),
    Z_0 = 2^H prod_i (1 + exp(b_A,i)),   Z_K = Z.

A run draws v_1 ~ p_0 exactly, moves v_k -> v_{k+1} with one Gibbs step that leaves p_k
invariant (h_j ~ sigmoid(beta_k (c_j + W_j.v)), v_i ~ sigmoid((1 - beta_k) b_A,i + beta_k (b_i +
sum_j h_j W_ji))), and carries the importance weight

    log w = sum_{k=1..K} log p*_k(v_k) - log p*_{k-1}(v_k),     E[w] = Z / Z_0.

M independent runs give Z_hat = Z_0 mean(w); the paper's error bars are log(Z_hat +- 3 sigma_hat)
with sigma_hat = Z_0 std(w) / sqrt(M), the standard error of the mean of the weights. The
paper's schedule uses beta steps of 1e-3 on [0, 0.5], 1e-4 on [0.5, 0.9] and 1e-5 on [0.9, 1]
(14,500 steps). Z_hat is unbiased, so log Z_hat underestimates log Z on average (Jensen) and
log p(v) = -F(v) - log Z_hat errs on the optimistic side; by Markov's inequality it rarely
overestimates log Z by much (P(log Z_hat > log Z + t) < exp(-t)). The conservative figure here is
therefore log p with the upper end log(Z_hat + 3 sigma_hat): a bound at the paper's three sigmas,
not a guaranteed one (the weights' spread can miss the rare large weights a poor schedule never
draws). A schedule is long enough when a longer one no longer raises log Z_hat: a sharply
peaked RBM can need more than the paper's steps, and then both figures are optimistic.

Reverse AIS (RAISE; Burda, Grosse & Salakhutdinov 2015) bounds log p(v) from below instead. The
forward chain, with one more Gibbs step T_K at beta = 1, is itself a normalised generative model:
v_1 ~ p_0, v_{k+1} ~ T_k(. | v_k), output v_{K+1}. Its likelihood of a test v has an unbiased
importance-sampling estimate whose proposal runs the chain backwards from v (block Gibbs is
reversible, so its reversal is itself): v_K ~ T_K(. | v), ..., v_1 ~ T_1(. | v_2), and

    log w = -F(v) - log Z_0 - sum_{k=1..K} [log p*_k(v_k) - log p*_{k-1}(v_k)],   E[w] = p_anneal(v),

AIS's weight read backwards. The log of the mean of M such weights is a stochastic lower bound
on log p_anneal(v), which tends to log p(v) as the schedule lengthens. It needs a chain per test
example, so it is scored on a subset.
"""
import math
from collections import namedtuple

import numpy as np

from .. import backend, nn
from ..grad_mode import no_grad
from ..tensor import Tensor, float32

__all__ = ["RBM", "AISResult", "ais_schedule", "base_rate_bias"]

AISResult = namedtuple("AISResult", "log_z log_z_low log_z_high log_weights log_z_base")
Annealing = namedtuple("Annealing", "b_a log_z_a pre log_ratio gibbs minus_free_energy")
AISResult.__doc__ = """AIS estimate: log Z_hat, log(Z_hat -+ 3 sigma_hat) (low is -inf when Z_hat <=
3 sigma_hat), each run's log importance weight, and log Z_0 of the base-rate model."""

# the paper's schedule: (end of a stretch, beta step within it)
PAPER_STRETCHES = ((0.5, 1e-3), (0.9, 1e-4), (1.0, 1e-5))


def ais_schedule(betas="paper"):
    """Inverse temperatures from 0 to 1 (float64): 'paper' is Salakhutdinov & Murray's 14,501; an
    int n gives n + 1 values spread over the same three stretches in the paper's proportions
    (the stretch near beta = 1, where the distributions change fastest, gets the most); an
    array is used as it is (it must start at 0, end at 1 and not decrease)."""
    if isinstance(betas, str):
        if betas != "paper":
            raise ValueError(f"AIS schedule must be 'paper', a number of steps or an array, got {betas!r}")
        counts = [round((end - start) / step) for (start, _), (end, step)
                  in zip(((0.0, None),) + PAPER_STRETCHES[:-1], PAPER_STRETCHES)]
    elif np.ndim(betas) == 0:
        n = int(betas)
        if n < 1:
            raise ValueError(f"an AIS schedule needs at least 1 step, got {n}")
        paper = [500, 4000, 10000]
        counts = [max(1, round(n * p / sum(paper))) for p in paper[:2]]
        counts.append(max(1, n - sum(counts)))
    else:
        b = np.asarray(betas, dtype=np.float64)
        if b.ndim != 1 or len(b) < 2 or b[0] != 0 or b[-1] != 1 or np.any(np.diff(b) < 0):
            raise ValueError("an AIS schedule must run from 0 to 1 without decreasing")
        return b
    starts = [0.0] + [end for end, _ in PAPER_STRETCHES[:-1]]
    parts = [np.linspace(s, end, k + 1)[:-1] for s, (end, _), k in zip(starts, PAPER_STRETCHES, counts)]
    return np.concatenate(parts + [np.ones(1)])


def base_rate_bias(data, smoothing=0.05):
    """Visible biases of the base-rate model: the logits of each pixel's frequency in `data`
    ((N, D) of 0/1), smoothed towards 1/2 by `smoothing` pseudo-examples per example, so a pixel
    never (or always) on gets a finite bias: p_i = (sum_n v_ni + smoothing N) / (N + 2 smoothing N).
    Salakhutdinov's code smooths by the same 0.05 pseudo-counts per example; the base model
    only changes the variance of AIS, never what it estimates."""
    x = np.asarray(data, dtype=np.float64)
    n = len(x)
    p = (x.sum(axis=0) + smoothing * n) / (n + 2 * smoothing * n)
    return np.log(p) - np.log1p(-p)


def _softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _sigmoid(x, xp=np):
    return 0.5 * (1 + xp.tanh(0.5 * x))   # = 1 / (1 + exp(-x)), without exp's overflow for x << 0


def _sigmoid_in_place(x, xp=np):
    """_sigmoid(x) written over x, a fresh array of the caller's (the Gibbs chain's hot path)."""
    x *= 0.5
    xp.tanh(x, out=x)
    x += 1
    x *= 0.5
    return x


def _logsumexp(a, axis=None):
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis))


class RBM(nn.Module):
    """A binary-binary RBM with weights W (hidden x visible), visible bias b and hidden bias c.

    W starts as N(0, init_std^2) (0.01, Hinton's practical guide), c at 0, and b at 0 or at
    `visible_bias` (the guide's log(p_i / (1 - p_i)) of the training pixels' frequencies)."""

    def __init__(self, visible, hidden, init_std=0.01, visible_bias=None, dtype=float32, generator=None):
        super().__init__()
        from ..random import rng
        self.visible, self.hidden = int(visible), int(hidden)
        w = rng(generator).normal(0.0, init_std, (self.hidden, self.visible))
        self.W = nn.Parameter(w.astype(dtype))
        b = np.zeros(self.visible) if visible_bias is None else np.asarray(visible_bias, dtype=np.float64)
        if b.shape != (self.visible,):
            raise ValueError(f"visible_bias must have shape ({self.visible},), got {b.shape}")
        self.b = nn.Parameter(b.astype(dtype))
        self.c = nn.Parameter(np.zeros(self.hidden, dtype=dtype))

    def extra_repr(self):
        return f"visible={self.visible}, hidden={self.hidden}"

    def _tensor(self, v):
        if isinstance(v, Tensor):
            return v
        return Tensor(backend.to_device(np.asarray(v, dtype=self.W.dtype), self.W.device))

    # -- the model --------------------------------------------------------------------------
    def free_energy(self, v):
        """F(v) = -b.v - sum_j softplus(c_j + W_j.v), shape (N,), differentiable in W, b, c."""
        v = self._tensor(v)
        return -(v @ self.b) - nn.functional.linear(v, self.W, self.c).softplus().sum(axis=1)

    def energy(self, v, h):
        """E(v, h) = -b.v - c.h - h.W v, shape (N,)."""
        v, h = self._tensor(v), self._tensor(h)
        return -(v @ self.b) - (h @ self.c) - ((h @ self.W) * v).sum(axis=1)

    def log_prob(self, v, log_z=None):
        """log p(v) = -F(v) - log Z in nats, shape (N,). `log_z` is an estimate (a number or an
        AISResult, whose log_z is used); without one, log Z is computed exactly (`log_z_exact`),
        which only a small RBM allows."""
        if log_z is None:
            log_z = self.log_z_exact()
        elif isinstance(log_z, AISResult):
            log_z = log_z.log_z
        return -self.free_energy(v) - float(log_z)

    def log_z_exact(self, max_bits=24):
        """log Z by enumerating the smaller layer's 2^min(D, H) states (float64):
        log Z = logsumexp_h [c.h + sum_i softplus(b_i + (h W)_i)]  (or logsumexp_v -F(v))."""
        W, b, c = (backend.to_device(p.data, "cpu").astype(np.float64) for p in (self.W, self.b, self.c))
        n = min(self.hidden, self.visible)
        if n > max_bits:
            raise ValueError(f"exact log Z enumerates 2^{n} states; that is over 2^{max_bits}: "
                             "estimate it with ais() instead")
        if self.hidden <= self.visible:
            a, lin, W_side = b, c, W          # sum over h: lin.h + sum_i softplus(a_i + (h W)_i)
        else:
            a, lin, W_side = c, b, W.T        # sum over v: lin.v + sum_j softplus(a_j + (v W^T)_j)
        parts = []
        chunk = 1 << 14
        for start in range(0, 1 << n, chunk):
            codes = np.arange(start, min(start + chunk, 1 << n))
            s = ((codes[:, None] >> np.arange(n)) & 1).astype(np.float64)
            parts.append(_logsumexp(s @ lin + _softplus(s @ W_side + a).sum(axis=1)))
        return float(_logsumexp(np.array(parts)))

    # -- Gibbs sampling ---------------------------------------------------------------------
    def hidden_probs(self, v):
        """p(h_j = 1 | v) for every row of v (an array or Tensor), an array (N, H); no graph."""
        v = v.data if isinstance(v, Tensor) else v
        pre = v @ self.W.data.T
        pre += self.c.data
        return _sigmoid_in_place(pre, self.W.xp)

    def visible_probs(self, h):
        """p(v_i = 1 | h) for every row of h, an array (N, D); no graph."""
        h = h.data if isinstance(h, Tensor) else h
        pre = h @ self.W.data
        pre += self.b.data
        return _sigmoid_in_place(pre, self.W.xp)

    def _bernoulli(self, p, generator):
        """0/1 draws with probabilities p, from the host generator (the same draws on any device),
        its uniforms in the model's precision (a float32 model needs no float64 uniforms)."""
        from ..random import rng
        dtype = np.float32 if self.W.dtype == np.float32 else np.float64
        u = backend.to_device(rng(generator).random(p.shape, dtype=dtype), backend.device_of(p))
        return (u < p).astype(self.W.dtype)

    def sample_hidden(self, v, generator=None):
        return self._bernoulli(self.hidden_probs(v), generator)

    def sample_visible(self, h, generator=None):
        return self._bernoulli(self.visible_probs(h), generator)

    def gibbs(self, v, k=1, generator=None):
        """k steps of block Gibbs sampling v -> h -> v' from the rows of v; an array of 0/1."""
        v = v.data if isinstance(v, Tensor) else v
        for _ in range(k):
            v = self.sample_visible(self.sample_hidden(v, generator), generator)
        return v

    @no_grad()
    def sample(self, n, steps=1000, generator=None, init=None, probs=False):
        """n fantasy particles after `steps` Gibbs steps from `init` (rows of 0/1), or from pixels
        drawn independently with p(v_i) = sigmoid(b_i). With probs=True the last step's p(v|h)
        is returned instead of its 0/1 draw (smoother pictures, same chain)."""
        if init is None:
            v = self._bernoulli(_sigmoid(self.W.xp.broadcast_to(self.b.data, (n, self.visible)), self.W.xp),
                                generator)
        else:
            v = init.data if isinstance(init, Tensor) else backend.to_device(
                np.asarray(init, dtype=self.W.dtype), self.W.device)
        v = self.gibbs(v, steps - 1 if probs and steps else steps, generator)
        if probs:
            v = self.visible_probs(self.sample_hidden(v, generator)) if steps else v
        return Tensor(v)

    # -- training -----------------------------------------------------------------------------
    def cd_loss(self, v_data, v_model):
        """The surrogate whose gradient is the CD (or PCD) gradient: mean F(v_data) - mean F(v_model),
        the negatives v_model held constant. Its value is not a likelihood."""
        v_model = v_model.detach() if isinstance(v_model, Tensor) else v_model
        if isinstance(v_data, Tensor) and v_data.requires_grad:
            return self.free_energy(v_data).mean() - self.free_energy(v_model).mean()
        # Both sets of rows in one pass: one product each way instead of two, the same gradient.
        n = len(v_data)
        rows = [self._tensor(v).data for v in (v_data, v_model)]
        f = self.free_energy(Tensor(self.W.xp.concatenate(rows)))
        return f[:n].mean() - f[n:].mean()

    # -- annealed importance sampling -----------------------------------------------------------
    def ais(self, runs=100, betas="paper", base_bias=None, generator=None):
        """Estimate log Z by AIS (module docstring) with `runs` independent runs over the schedule
        `betas` ('paper', a number of steps, or an array; see ais_schedule), from the base-rate
        model with visible biases `base_bias` (default 0: uniform pixels; base_rate_bias(train)
        is the paper's). Vectorized over runs, in float64 on the host. Returns an AISResult."""
        from ..random import rng
        draw, beta, a = rng(generator), ais_schedule(betas), self._annealing(base_bias)
        v = (draw.random((runs, self.visible)) < _sigmoid(a.b_a)).astype(np.float64)   # exact draw from p_0
        log_w = np.zeros(runs)
        K = len(beta) - 1
        for k in range(1, K + 1):
            pre = a.pre(v)
            log_w += a.log_ratio(v, pre, beta[k], beta[k - 1])
            if k < K:   # one Gibbs step that leaves p_k invariant
                v = a.gibbs(v, pre, beta[k], draw)
        return ais_result(log_w, a.log_z_a)

    def _annealing(self, base_bias):
        """The path from the base-rate model to this RBM, in float64 on the host: log Z_0, and
        log p*_k - log p*_j and a Gibbs step at beta as functions of the visible states."""
        W, b, c = (backend.to_device(p.data, "cpu").astype(np.float64) for p in (self.W, self.b, self.c))
        b_a = np.zeros(self.visible) if base_bias is None else np.asarray(base_bias, dtype=np.float64)
        W_t, db = np.ascontiguousarray(W.T), b - b_a

        def pre(v):   # the hidden units' input c + W v, shared by the two functions below
            return v @ W_t + c

        def log_ratio(v, pre, beta_k, beta_j):
            """log p*_k(v) - log p*_j(v) per row: the visible term and the hidden units' at both temperatures."""
            return (beta_k - beta_j) * (v @ db) + _softplus(beta_k * pre).sum(axis=1) - _softplus(beta_j * pre).sum(axis=1)

        def gibbs(v, pre, beta, draw):
            h = (draw.random(pre.shape) < _sigmoid(beta * pre)).astype(np.float64)
            return (draw.random(v.shape) < _sigmoid((1 - beta) * b_a + beta * (b + h @ W))).astype(np.float64)

        log_z_a = self.hidden * math.log(2.0) + float(_softplus(b_a).sum())
        return Annealing(b_a, log_z_a, pre, log_ratio, gibbs, lambda v: v @ b + _softplus(pre(v)).sum(axis=1))


    def reverse_ais(self, v, runs=1, betas="paper", base_bias=None, generator=None):
        """RAISE (module docstring): per row of v, log of the mean of `runs` reverse-chain weights,
        a stochastic lower bound on the annealing model's log p(v) in nats (float64, on the host)."""
        from ..random import rng
        draw, beta, a = rng(generator), ais_schedule(betas), self._annealing(base_bias)
        data = backend.to_device(v.data if isinstance(v, Tensor) else np.asarray(v), "cpu").astype(np.float64)
        x = np.repeat(data, runs, axis=0)
        log_w, pre = a.minus_free_energy(x) - a.log_z_a, a.pre(x)
        for k in range(len(beta) - 1, 0, -1):
            x = a.gibbs(x, pre, beta[k], draw)                # v_k ~ T_k(. | v_{k+1}), which leaves p_k invariant
            pre = a.pre(x)
            log_w -= a.log_ratio(x, pre, beta[k], beta[k - 1])
        log_w = log_w.reshape(len(data), runs)
        m = log_w.max(axis=1)
        return m + np.log(np.exp(log_w - m[:, None]).mean(axis=1))


def ais_result(log_w, log_z_base, sigmas=3.0):
    """log Z_hat and its paper-style bounds log(Z_hat -+ sigmas * sigma_hat) from the log weights."""
    log_w = np.asarray(log_w, dtype=np.float64)
    m = float(np.max(log_w))
    w = np.exp(log_w - m)
    mean = float(w.mean())
    se = float(w.std(ddof=1) / math.sqrt(len(w))) if len(w) > 1 else 0.0
    top = log_z_base + m
    low = top + math.log(mean - sigmas * se) if mean > sigmas * se else -math.inf
    return AISResult(top + math.log(mean), low, top + math.log(mean + sigmas * se), log_w, log_z_base)
