"""The Helmholtz machine (Hinton, Dayan, Frey & Neal 1995, "The wake-sleep algorithm for
unsupervised neural networks"): a sigmoid belief net read top-down as the generative model and
a second one read bottom-up as the recognition model, trained with wake-sleep, or with reweighted
wake-sleep (Bornschein & Bengio 2015, "Reweighted wake-sleep").

Layers of stochastic binary units x = h_0 (D visible units), h_1, ..., h_L (hidden, bottom to top).
The generative model p (parameters theta) is a top-down sigmoid belief net,

    p(x, h) = p(h_L) prod_{l=L..1} p(h_{l-1} | h_l),
    p(h_L)             = prod_j Bernoulli(h_Lj; sigmoid(b_L)_j)                  factorial top layer
    p(h_{l-1} | h_l)   = prod_j Bernoulli(h_{l-1,j}; sigmoid(W_l h_l + b_{l-1})_j),

and the recognition model q (parameters phi) a bottom-up one,

    q(h | x)           = prod_{l=1..L} q(h_l | h_{l-1}),
    q(h_l | h_{l-1})   = prod_j Bernoulli(h_lj; sigmoid(R_l h_{l-1} + c_l)_j).

Wake-sleep (Hinton et al. 1995) alternates two phases, each a maximum-likelihood step for one
model on samples drawn by the other:

    wake:   h ~ q(h | x) for a training x;   theta += eps grad_theta log p(x, h)
    sleep:  (x, h) ~ p(x, h) (a "dream");   phi   += eps grad_phi   log q(h | x)

Reweighted wake-sleep (Bornschein & Bengio 2015) draws K samples h^(k) ~ q(h | x) and weights
them by importance: with omega_k = p(x, h^(k)) / q(h^(k) | x) and the normalized weights
omega~_k = omega_k / sum_k' omega_k',

    p-wake:  grad_theta log p(x)  ~=  sum_k omega~_k grad_theta log p(x, h^(k))
    q-wake:  grad_phi             ~=  sum_k omega~_k grad_phi log q(h^(k) | x)
    q-sleep: grad_phi             ~=  grad_phi log q(h | x),  (x, h) ~ p          (as in wake-sleep)

The p-wake update is a self-normalized importance-sampling estimate of the exact likelihood
gradient grad log p(x) = E_{p(h|x)}[grad log p(x, h)] (biased, consistent as K grows); the
q-wake update estimates the gradient of -KL(p(h|x) || q(h|x)) likewise. With K = 1 the weights
are 1, and p-wake is wake-sleep's wake phase. The paper recommends both q updates (wake+sleep);
here that is their average.

Each objective below is a surrogate loss: the sampled h and the weights omega~ are constants, so
autograd of the loss gives the update above (its value is not a likelihood). The p terms depend
on theta only and the q terms on phi only, so one optimizer on the sum makes each model's step.

The log-likelihood is estimated by importance sampling with q as the proposal,

    log p(x) ~= log (1/k) sum_{i=1..k} p(x, h^(i)) / q(h^(i) | x),    h^(i) ~ q(h | x),

a stochastic lower bound (Jensen: its expectation is <= log p(x), with equality as k -> inf, or
for any k when q(h|x) is the exact posterior). Bornschein & Bengio score their models this way.
"""
import math

import numpy as np

from .. import backend, nn
from ..distributions import Bernoulli
from ..grad_mode import no_grad
from ..ops.reduce import logsumexp
from ..ops.softmax import softmax
from ..random import rng
from ..tensor import Tensor, float32

__all__ = ["HelmholtzMachine"]

ROWS = 20000   # sample rows (samples x examples) per chunk of the likelihood estimate


class HelmholtzMachine(nn.Module):
    """HelmholtzMachine(input_dim, hidden_sizes): binary units x (input_dim) below hidden layers
    of widths hidden_sizes (bottom to top).

    generative[l] maps h_{l+1} to the logits of p(h_l | h_{l+1}) (h_0 = x), prior_logits are b_L;
    recognition[l] maps h_l to the logits of q(h_{l+1} | h_l). visible_bias: initial b_0 (e.g.
    the logits of the pixels' frequencies, Hinton's practical guide for RBMs); default the Linear
    init. A sample h is the list [h_1, ..., h_L] of 0/1 Tensors."""

    def __init__(self, input_dim, hidden_sizes, visible_bias=None, dtype=float32, generator=None):
        super().__init__()
        if not hidden_sizes:
            raise ValueError("a Helmholtz machine needs at least one hidden layer")
        self.input_dim, self.hidden_sizes = int(input_dim), [int(h) for h in hidden_sizes]
        sizes = [self.input_dim] + self.hidden_sizes
        self.prior_logits = nn.Parameter(np.zeros(sizes[-1], dtype=dtype))
        self.generative = nn.ModuleList([nn.Linear(above, below, dtype=dtype, generator=generator)
                                         for below, above in zip(sizes[:-1], sizes[1:])])
        self.recognition = nn.ModuleList([nn.Linear(below, above, dtype=dtype, generator=generator)
                                          for below, above in zip(sizes[:-1], sizes[1:])])
        if visible_bias is not None:
            b = np.asarray(visible_bias, dtype=np.float64)
            if b.shape != (self.input_dim,):
                raise ValueError(f"visible_bias must have shape ({self.input_dim},), got {b.shape}")
            self.generative[0].bias.data[...] = backend.to_device(b.astype(dtype), self.prior_logits.device)

    def extra_repr(self):
        return f"input_dim={self.input_dim}, hidden_sizes={self.hidden_sizes}"

    @property
    def dtype(self):
        return self.prior_logits.dtype

    def generative_parameters(self):
        """theta: the parameters of p(x, h)."""
        return [self.prior_logits] + list(self.generative.parameters())

    def recognition_parameters(self):
        """phi: the parameters of q(h | x)."""
        return list(self.recognition.parameters())

    def _tensor(self, x):
        if isinstance(x, Tensor):
            return x
        return Tensor(backend.to_device(np.asarray(x, dtype=self.dtype), self.prior_logits.device))

    # -- the two models -----------------------------------------------------------------------
    def log_p(self, x, hs):
        """log p(x, h) = log p(h_L) + sum_l log p(h_{l-1} | h_l), shape (...) of the samples' leading
        axes. x: (N, D); hs: [h_1, ..., h_L], each (..., N, H_l) (x broadcasts against them)."""
        x, hs = self._tensor(x), [self._tensor(h) for h in hs]
        below = [x] + hs[:-1]
        log_p = Bernoulli(logits=self.prior_logits).log_prob(hs[-1]).sum(axis=-1)
        for layer, h_below, h_above in zip(self.generative, below, hs):
            log_p = log_p + Bernoulli(logits=layer(h_above)).log_prob(h_below).sum(axis=-1)
        return log_p

    def log_q(self, hs, x):
        """log q(h | x) = sum_l log q(h_l | h_{l-1}) (h_0 = x), shaped as log_p's."""
        x, hs = self._tensor(x), [self._tensor(h) for h in hs]
        below = [x] + hs[:-1]
        log_q = 0
        for layer, h_below, h_above in zip(self.recognition, below, hs):
            log_q = log_q + Bernoulli(logits=layer(h_below)).log_prob(h_above).sum(axis=-1)
        return log_q

    # -- sampling ---------------------------------------------------------------------------------
    def _uniforms(self, shape, widths, generator):
        """U(0, 1) for every unit of a sample, one array of shape `shape` + (sum widths,) drawn from
        the host generator and cut into layers: a chunk of samples draws the same numbers as the
        same rows of one big draw, so estimates do not depend on the chunk size."""
        u = backend.to_device(rng(generator).random(tuple(shape) + (sum(widths),)), self.prior_logits.device)
        cuts = np.cumsum([0] + list(widths))
        return [u[..., a:b] for a, b in zip(cuts[:-1], cuts[1:])]

    def _bernoulli(self, logits, u):
        """A 0/1 Tensor: 1 where u < sigmoid(logits)."""
        return Tensor((u < logits.detach().sigmoid().data).astype(self.dtype))

    @no_grad()
    def sample_q(self, x, k=None, generator=None):
        """h ~ q(h | x) bottom-up: [h_1, ..., h_L], each (N, H_l), or (k, N, H_l) for k samples per
        example. The samples are constants (no graph)."""
        x = self._tensor(x)
        lead = ((k,) if k is not None else ()) + tuple(x.shape[:-1])
        us = self._uniforms(lead, self.hidden_sizes, generator)
        h, hs = x, []
        for layer, u in zip(self.recognition, us):
            h = self._bernoulli(layer(h), u)
            hs.append(h)
        return hs

    @no_grad()
    def sample_p(self, n, generator=None):
        """(x, [h_1, ..., h_L]) ~ p(x, h) by ancestral sampling, top-down: n dreams."""
        us = self._uniforms((n,), self.hidden_sizes[::-1] + [self.input_dim], generator)
        h = self._bernoulli(self.prior_logits, us[0])           # (H_L,) logits against (n, H_L) uniforms
        hs = [h]
        for layer, u in zip(reversed(self.generative), us[1:]):
            h = self._bernoulli(layer(h), u)
            hs.insert(0, h)
        return hs[0], hs[1:]

    @no_grad()
    def sample(self, n, generator=None, probs=False):
        """n draws x ~ p(x); with probs=True, the Bernoulli means p(x = 1 | h_1) of the same draws'
        h_1 instead (smoother pictures)."""
        x, hs = self.sample_p(n, generator)
        return self.generative[0](hs[0]).sigmoid() if probs else x

    # -- training objectives (surrogates: their gradients are the updates) -----------------------
    def wake_sleep_loss(self, x, generator=None):
        """Wake-sleep's two phases on a batch x of N examples, one sample h ~ q(h|x) per example and
        N dreams (x', h') ~ p. Returns {'loss': wake_p + sleep_q, 'wake_p': -mean log p(x, h),
        'sleep_q': -mean log q(h' | x'), 'nll': -mean log [p(x, h) / q(h|x)] (a one-sample
        estimate of the negative ELBO, no gradient)}."""
        x = self._tensor(x)
        hs = self.sample_q(x, generator=generator)
        log_p = self.log_p(x, hs)
        wake_p = -log_p.mean()
        sleep_q = self.sleep_loss(x.shape[0], generator)
        nll = -(log_p.detach() - self.log_q(hs, x).detach()).mean()
        return {"loss": wake_p + sleep_q, "wake_p": wake_p.detach(), "sleep_q": sleep_q.detach(), "nll": nll}

    def sleep_loss(self, n, generator=None):
        """The sleep phase: -mean log q(h | x) over n dreams (x, h) ~ p; a function of phi only."""
        x, hs = self.sample_p(n, generator)
        return -self.log_q(hs, x).mean()

    def reweighted_wake_sleep_loss(self, x, k=5, q_update="wake+sleep", generator=None):
        """Reweighted wake-sleep on a batch x: k samples h^(k) ~ q(h|x) per example, weighted by
        omega~_k. q_update: 'wake', 'sleep' or 'wake+sleep' (the average of the two). Returns
        {'loss': wake_p + the q term, 'wake_p', 'wake_q', 'sleep_q' (the terms in use),
        'nll': -mean log (1/k) sum_k omega_k (the importance-sampling estimate with the training
        samples, no gradient)}."""
        if q_update not in ("wake", "sleep", "wake+sleep"):
            raise ValueError(f"q_update must be 'wake', 'sleep' or 'wake+sleep', got {q_update!r}")
        x = self._tensor(x)
        hs = self.sample_q(x, k, generator)                      # (k, N, H_l)
        log_p, log_q = self.log_p(x, hs), self.log_q(hs, x)       # (k, N)
        log_omega = (log_p - log_q).detach()
        omega = softmax(log_omega, axis=0)                       # omega~_k, normalized over the k samples
        terms = {"wake_p": -(omega * log_p).sum(axis=0).mean()}
        if q_update != "sleep":
            terms["wake_q"] = -(omega * log_q).sum(axis=0).mean()
        if q_update != "wake":
            terms["sleep_q"] = self.sleep_loss(x.shape[0], generator)
        q_loss = (terms["wake_q"] + terms["sleep_q"]) * 0.5 if q_update == "wake+sleep" else \
            terms.get("wake_q", terms.get("sleep_q"))
        nll = -(logsumexp(log_omega, axis=0) - math.log(k)).mean()
        return {"loss": terms["wake_p"] + q_loss, **{name: t.detach() for name, t in terms.items()}, "nll": nll}

    # -- evaluation -------------------------------------------------------------------------------
    @no_grad()
    def importance_log_likelihood(self, x, k=5000, chunk=None, generator=None):
        """The importance-sampling estimate of log p(x) per example (nats, float64 NumPy, shape (N,)):
        log (1/k) sum_i p(x, h^(i)) / q(h^(i) | x), h^(i) ~ q(h | x).

        The k samples come in chunks of `chunk` (default: about ROWS sample rows per chunk), each
        reduced to its log-sum-exp in float64, so memory stays bounded for k = 5000; the draws do
        not depend on the chunking."""
        x = self._tensor(x)
        n = x.shape[0]
        chunk = int(chunk or max(1, min(k, ROWS // max(n, 1))))
        parts = []
        for start in range(0, k, chunk):
            hs = self.sample_q(x, min(chunk, k - start), generator)
            log_w = backend.to_device((self.log_p(x, hs) - self.log_q(hs, x)).data, "cpu").astype(np.float64)
            parts.append(_logsumexp(log_w, axis=0))
        return _logsumexp(np.stack(parts), axis=0) - math.log(k)


def _logsumexp(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis))
