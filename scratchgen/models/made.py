"""MADE: Masked Autoencoder for Distribution Estimation (Germain, Gregor, Murray, Larochelle 2015).

An autoencoder whose weight masks make output d depend only on inputs that come before d
in an ordering, so the outputs are the conditionals of an exact autoregressive model:

    log p(x) = sum_d log p(x_d | x_<d),   p(x_d = 1 | x_<d) = sigmoid(logit_d(x)).

Masks come from degrees (Section 4): input d has degree m0(d) = its position in the
ordering (1..D); hidden unit k of layer l draws m_l(k) from [min m_{l-1}, D-1]. Then

    hidden mask   M_l[k, j]  = 1  if  m_l(k) >= m_{l-1}(j)
    output mask   M_V[d, k]  = 1  if  m0(d)  >  m_L(k)        (strict: x_d never sees itself)

Order- and connectivity-agnostic training (Section 5) cycles through K mask sets; at test
time the K models are averaged in probability space: log p(x) = logmeanexp_k log p_k(x).
"""
import math

import numpy as np

from .. import backend, nn
from ..grad_mode import no_grad
from ..losses import binary_cross_entropy_with_logits
from ..ops.shape import stack
from ..tensor import Tensor, float32

__all__ = ["MADE"]


def _connect(layer, m_in, m_out, strict):
    """Write the degree mask M[k, j] = m_out[k] >= m_in[j] (> when strict) into a MaskedLinear.

    Built where the weights live: resampling 32 masks of 8000 x 8000 every step must not
    copy them from the host."""
    m_in, m_out = (backend.to_device(m, layer.mask.device) for m in (m_in, m_out))
    layer.mask.data[...] = m_out[:, None] > m_in[None, :] if strict else m_out[:, None] >= m_in[None, :]


class MADE(nn.Module):
    def __init__(self, input_dim, hidden_sizes, num_masks=1, natural_ordering=True,
                 direct_connection=False, seed=0, dtype=float32):
        super().__init__()
        if input_dim < 2:
            raise ValueError(f"MADE needs input_dim >= 2, got {input_dim}")
        self.input_dim, self.hidden_sizes = input_dim, list(hidden_sizes)
        self.num_masks, self.natural_ordering, self.seed = num_masks, natural_ordering, seed
        sizes = [input_dim] + self.hidden_sizes + [input_dim]
        self.layers = nn.ModuleList([
            nn.MaskedLinear(n_in, n_out, np.ones((n_out, n_in)), dtype=dtype)
            for n_in, n_out in zip(sizes[:-1], sizes[1:])])
        self.direct = (nn.MaskedLinear(input_dim, input_dim, np.ones((input_dim, input_dim)), bias=False, dtype=dtype)
                       if direct_connection else None)
        self.mask_index = 0
        self.set_mask(0)

    # -- masks from degrees ---------------------------------------------------------------
    def degrees(self, k):
        """Degrees of the input and every hidden layer for mask set k (reproducible from the seed)."""
        D = self.input_dim
        rng = np.random.default_rng([self.seed, k])
        # Order-agnostic training gives every mask set its own ordering.
        m0 = np.arange(1, D + 1) if self.natural_ordering else rng.permutation(D) + 1
        degrees = [m0]
        for h in self.hidden_sizes:
            low = min(degrees[-1].min(), D - 1)
            degrees.append(rng.integers(low, D, size=h))  # in [low, D-1]
        return degrees

    def set_mask(self, k):
        """Install mask set k: the ordering and connectivity of one member of the ensemble."""
        self.mask_index = k % self.num_masks
        m = self.degrees(self.mask_index)
        for layer, m_prev, m_next in zip(self.layers[:-1], m[:-1], m[1:]):
            _connect(layer, m_prev, m_next, strict=False)
        _connect(self.layers[-1], m[-1], m[0], strict=True)
        if self.direct is not None:
            _connect(self.direct, m[0], m[0], strict=True)
        self.ordering = np.argsort(m[0])  # input indices in the order they are generated

    def next_mask(self):
        self.set_mask(self.mask_index + 1)

    # -- the model ------------------------------------------------------------------------
    def forward(self, x):
        """Logits of p(x_d = 1 | x_<d) for every d, shape (N, D)."""
        h = x
        for layer in self.layers[:-1]:
            h = layer(h).relu()
        logits = self.layers[-1](h)
        return logits + self.direct(x) if self.direct is not None else logits

    def log_prob_one_mask(self, x):
        return -binary_cross_entropy_with_logits(self(x), x, reduction="none").sum(axis=1)

    def log_prob(self, x, num_masks=None):
        """Exact log-likelihood in nats per example. With several masks, the ensemble of mask
        sets 0 .. num_masks-1 (default: all of them) averaged in probability space with a
        log-mean-exp; the mask in use before the call is put back after it."""
        w = self.layers[0].weight
        x = x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=w.dtype)).to(w.device)
        K = num_masks or self.num_masks
        if not 1 <= K <= self.num_masks:
            raise ValueError(f"num_masks={K}: this MADE has {self.num_masks} mask set(s)")
        if self.num_masks == 1:
            return self.log_prob_one_mask(x)
        keep = self.mask_index
        per_mask = []
        for k in range(K):
            self.set_mask(k)
            per_mask.append(self.log_prob_one_mask(x))
        self.set_mask(keep)
        if K == 1:
            return per_mask[0]
        return stack(per_mask, axis=0).logsumexp(axis=0) - math.log(K)

    @no_grad()
    def sample(self, n, generator=None):
        """Ancestral sampling in the ordering, batched over n samples, on the model's device (the
        uniforms come from the host generator, so a seed gives the same samples on any device).

        Drawing x_d changes the first layer's pre-activation by x_d (W_1 * M_1)[:, d], so it is
        updated in O(nH) per dimension rather than recomputed from x; deeper layers run once per
        dimension, and at the output only logit d is computed. No graph is built and every
        mask is applied once, so sampling costs about one forward pass per dimension of one
        layer's width instead of a whole network's."""
        from ..random import rng
        draw = rng(generator)
        xp = self.layers[0].weight.xp
        weights = [layer.weight.data * layer.mask.data for layer in self.layers]
        biases = [layer.bias.data for layer in self.layers]
        direct = self.direct.weight.data * self.direct.mask.data if self.direct is not None else None
        x = xp.zeros((n, self.input_dim), dtype=weights[0].dtype)
        first = xp.broadcast_to(biases[0], (n, biases[0].shape[0])).copy()  # x = 0: just the bias
        for d in self.ordering:
            h = xp.maximum(first, 0)
            for w, b in zip(weights[1:-1], biases[1:-1]):
                h = xp.maximum(h @ w.T + b, 0)
            logit = h @ weights[-1][d] + biases[-1][d]
            if direct is not None:
                logit = logit + x @ direct[d]
            p = backend.to_device(1 / (1 + xp.exp(-logit)), "cpu")   # one column back to the host
            x_d = backend.to_device((draw.random(n) < p).astype(x.dtype), backend.device_of(x))
            x[:, d] = x_d
            first += x_d[:, None] * weights[0][:, d]
        return Tensor(x)
