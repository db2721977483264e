"""Deep belief network (Hinton, Osindero & Teh 2006): a stack of binary RBMs trained greedily, layer
by layer, and its variational lower bound on log p(v) with the top RBM's log Z from annealed
importance sampling (Salakhutdinov & Murray 2008, Section 4).

Layers h_0 = v (D units), h_1, ..., h_L, and one RBM per pair: RBM l (l = 1..L, `rbms[l - 1]`)
joins h_{l-1} (its visible units, bias b_l) and h_l (its hidden units, bias c_l) with weights W_l of
shape (n_l, n_{l-1}). The generative model is the top RBM over (h_{L-1}, h_L) and, below it, the
directed sigmoid belief layers of the lower RBMs' generative halves:

    p(v, h_1, ..., h_L) = p(v | h_1) ... p(h_{L-2} | h_{L-1}) p(h_{L-1}, h_L)
    p(h_{l-1} = 1 | h_l) = sigmoid(b_l + h_l W_l)            (l = 1..L-1)
    p(h_{L-1}, h_L) = exp(-E_L(h_{L-1}, h_L)) / Z_L,   p*(h_{L-1}) = exp(-F_L(h_{L-1}))

so the top RBM's free energy F_L gives the unnormalised prior p*(h_{L-1}). The lower RBMs' hidden
biases c_l only serve the recognition (upward) pass, the factorial approximate posterior

    q(h_l = 1 | h_{l-1}) = sigmoid(c_l + W_l h_{l-1}),     q(h | v) = prod_{l=1..L-1} q(h_l | h_{l-1}).

Greedy learning (Hinton et al. 2006, Section 4): train RBM 1 on the data, freeze it, train RBM 2 on
its hidden units driven by the data, and so on up. `up` is that upward pass: the mean-field
probabilities q(h_l = 1 | .) (what Hinton & Salakhutdinov's code feeds the next RBM, and what the
`dbn` spec trains on), or 0/1 draws from q (the recognition pass of the bound). If RBM l starts as
RBM l-1 turned upside down (W_l = W_{l-1}^T, b_l = c_{l-1}, c_l = b_{l-1}: `init_from_below`), the
deeper DBN is the same distribution as the shallower one and q is its exact posterior (the
complementary prior); maximum-likelihood learning of RBM l then can only raise the bound.

The bound (Salakhutdinov & Murray 2008, Section 4, for two hidden layers; applied recursively for L):

    log p(v) >= sum_h q(h | v) [log p(v | h_1) + sum_{l=2..L-1} log p(h_{l-1} | h_l) + log p*(h_{L-1})]
                + H(q(h | v)) - log Z_L
              = E_q[log w(v, h)] - log Z_L,     log w = log p*(v, h_1, ..., h_{L-1}) - log q(h | v),

with equality exactly when q(h | v) is the true posterior p(h | v). It is estimated by k draws
h ~ q(h | v) from the upward pass: mean_s log w(v, h^(s)) - log Z_L, unbiased for the bound given
log Z_L (and with zero variance when q is exact). log Z_L comes from `RBM.ais` (whose estimate errs
on the optimistic side, so an estimated bound may sit slightly above the true bound) or, for a small
top RBM, `RBM.log_z_exact`. With one RBM (L = 1) the bound is log p(v) itself.

`sample` draws from the generative model: Gibbs sampling in the top RBM, then one top-down pass
h_{l-1} ~ p(h_{l-1} | h_l) down to v. Data loading and the greedy training loop are the spec's
(scratchgen.specs.dbn).
"""
import numpy as np

from .. import backend, nn
from ..grad_mode import no_grad
from ..tensor import Tensor, float32
from .rbm import RBM, AISResult, _logsumexp, _sigmoid, _softplus

__all__ = ["DBN"]


def _states(n):
    """All 2^n binary vectors of length n, code c's bits in row c (float64)."""
    codes = np.arange(1 << n)
    return ((codes[:, None] >> np.arange(n)) & 1).astype(np.float64)


def _log_bernoulli(x, logits):
    """sum_i log Bernoulli(x_i; sigmoid(a_i)) = sum_i x_i a_i - softplus(a_i), per row."""
    return (x * logits - _softplus(logits)).sum(axis=1)


class DBN(nn.Module):
    """A deep belief network over layer sizes `sizes` = [D, n_1, ..., n_L]: L RBMs in `rbms`,
    rbms[0] on the data. `visible_bias` starts the first RBM's visible bias (e.g. the base rate of
    the pixels); the other biases start at 0 and every weight at N(0, init_std^2), as in RBM."""

    def __init__(self, sizes, init_std=0.01, visible_bias=None, dtype=float32, generator=None):
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"a DBN needs at least two layer sizes, all positive; got {sizes}")
        self.sizes = sizes
        self.rbms = nn.ModuleList([
            RBM(sizes[l], sizes[l + 1], init_std=init_std, visible_bias=visible_bias if l == 0 else None,
                dtype=dtype, generator=generator)
            for l in range(len(sizes) - 1)])

    def extra_repr(self):
        return f"sizes={self.sizes}"

    @property
    def num_layers(self):
        """L, the number of RBMs (hidden layers)."""
        return len(self.rbms)

    @property
    def top(self):
        """The top RBM, over (h_{L-1}, h_L): the DBN's undirected associative memory."""
        return self.rbms[-1]

    def _host(self, l):
        """RBM l's (W, b, c) as float64 host arrays."""
        r = self.rbms[l]
        return [backend.to_device(p.data, "cpu").astype(np.float64) for p in (r.W, r.b, r.c)]

    # -- greedy construction -------------------------------------------------------------------
    @no_grad()
    def up(self, v, layers=None, sample=False, generator=None):
        """The rows of v carried up through the first `layers` RBMs (default: all but the top, so the
        result is the top RBM's input): each step x -> q(h = 1 | x) = sigmoid(c + W x), the mean-field
        probabilities (sample=False: what the next RBM trains on), or 0/1 draws from them
        (sample=True: the recognition pass of the bound). An array of the model's device and dtype."""
        layers = self.num_layers - 1 if layers is None else int(layers)
        if not 0 <= layers <= self.num_layers:
            raise ValueError(f"layers must be in [0, {self.num_layers}], got {layers}")
        x = v.data if isinstance(v, Tensor) else backend.to_device(
            np.asarray(v, dtype=self.rbms[0].W.dtype), self.rbms[0].W.device)
        for r in list(self.rbms)[:layers]:
            x = r.sample_hidden(x, generator) if sample else r.hidden_probs(x)
        return x

    @no_grad()
    def init_from_below(self, l):
        """Start RBM l (0-based, l >= 1) as RBM l-1 upside down: W_l = W_{l-1}^T, b_l = c_{l-1},
        c_l = b_{l-1}. The DBN then defines the same p(v) as without layer l, q is its exact
        posterior and the bound equals log p(v) (Hinton et al. 2006, Section 4). Needs
        sizes[l + 1] == sizes[l - 1]."""
        if not 1 <= l < self.num_layers:
            raise ValueError(f"layer {l} has no RBM below it to copy (layers 1..{self.num_layers - 1})")
        below, r = self.rbms[l - 1], self.rbms[l]
        if (r.hidden, r.visible) != (below.visible, below.hidden):
            raise ValueError(f"RBM {l} is {r.visible}x{r.hidden}; the transpose of RBM {l - 1} is "
                             f"{below.hidden}x{below.visible}")
        xp = r.W.xp
        r.W.data[...] = xp.ascontiguousarray(below.W.data.T)
        r.b.data[...] = below.c.data
        r.c.data[...] = below.b.data

    # -- sampling ----------------------------------------------------------------------------------
    @no_grad()
    def sample(self, n, steps=1000, generator=None, init=None, probs=True):
        """n draws of v: `steps` Gibbs steps in the top RBM from `init` (rows of h_{L-1}) or from units
        drawn independently with p = sigmoid(b_L), then h_{l-1} ~ p(h_{l-1} | h_l) down the directed
        layers. With probs=True the last step returns p(v = 1 | h_1) instead of its 0/1 draw (smoother
        pictures, the same chain). A Tensor (n, D)."""
        if self.num_layers == 1:
            return self.top.sample(n, steps=steps, generator=generator, init=init, probs=probs)
        x = self.top.sample(n, steps=steps, generator=generator, init=init).data
        for l in range(self.num_layers - 2, -1, -1):
            r = self.rbms[l]
            x = r.visible_probs(x) if probs and l == 0 else r.sample_visible(x, generator)
        return Tensor(x)

    # -- the likelihood ------------------------------------------------------------------------------
    def log_prob_lower_bound(self, v, log_z_top, k=1, generator=None):
        """The variational lower bound on log p(v) in nats, per row of v (a float64 array (N,)):
        mean over k draws h ~ q(h | v) of log p*(v, h) - log q(h | v), minus log Z_L (module
        docstring). `log_z_top` is the top RBM's log Z: a number or an AISResult (its log_z). In
        float64 on the host; the draws come from `generator`."""
        from ..random import rng
        if isinstance(log_z_top, AISResult):
            log_z_top = log_z_top.log_z
        k = int(k)
        if k < 1:
            raise ValueError(f"the bound needs k >= 1 draws from q, got {k}")
        draw = rng(generator)
        x = np.asarray(backend.to_device(v.data if isinstance(v, Tensor) else v, "cpu"), dtype=np.float64)
        n = len(x)
        x = np.repeat(x, k, axis=0)
        log_w = np.zeros(len(x))
        for l in range(self.num_layers - 1):
            W, b, c = self._host(l)
            a_q = x @ W.T + c                                              # q(h_l | h_{l-1}) logits
            h = (draw.random(a_q.shape) < _sigmoid(a_q)).astype(np.float64)
            log_w += _log_bernoulli(x, h @ W + b) - _log_bernoulli(h, a_q)  # log p(h_{l-1}|h_l) - log q
            x = h
        W, b, c = self._host(self.num_layers - 1)
        log_w += x @ b + _softplus(x @ W.T + c).sum(axis=1)                 # log p*(h_{L-1}) = -F_L
        return log_w.reshape(n, k).mean(axis=1) - float(log_z_top)

    def log_prob_exact(self, v, max_bits=20):
        """log p(v) by enumeration (float64 array (N,)), for a small DBN: h_L is summed out through the
        top RBM's free energy, each h_l (l = 1..L-1) over its 2^n_l states, layer by layer from the top:

            m_{L-1}(h_{L-1}) = -F_L(h_{L-1}),   m_{l-1}(h_{l-1}) = logsumexp_{h_l} log p(h_{l-1} | h_l) + m_l(h_l)
            log p(v) = m_0(v) - log Z_L   (log Z_L from RBM.log_z_exact)."""
        hidden = self.sizes[1:-1]
        if any(n > max_bits for n in hidden) or any(a + b > 2 * max_bits for a, b in zip(hidden, hidden[1:])):
            raise ValueError(f"exact log p(v) enumerates the states of layers {hidden}: over 2^{max_bits} "
                             "each; bound it with log_prob_lower_bound instead")
        x = np.asarray(backend.to_device(v.data if isinstance(v, Tensor) else v, "cpu"), dtype=np.float64)
        top = self.top
        if self.num_layers == 1:
            W, b, c = self._host(0)
            return x @ b + _softplus(x @ W.T + c).sum(axis=1) - top.log_z_exact()
        S = _states(self.sizes[-2])
        W, b, c = self._host(self.num_layers - 1)
        m = S @ b + _softplus(S @ W.T + c).sum(axis=1)
        for l in range(self.num_layers - 2, -1, -1):
            W, b, c = self._host(l)
            a = S @ W + b                                           # p(h_l | h_{l+1}) logits, rows: h_{l+1}
            below = x if l == 0 else _states(self.sizes[l])
            m = _logsumexp(below @ a.T - _softplus(a).sum(axis=1) + m, axis=1)
            S = below
        return m - top.log_z_exact()
