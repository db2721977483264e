"""MAF: Masked Autoregressive Flow (Papamakarios, Pavlakou, Murray 2017).

Each layer is a Gaussian MADE: conditionals p(x_i | x_<i) = N(mu_i, exp(alpha_i)^2) with
mu_i = f_mu(x_<i), alpha_i = f_alpha(x_<i) (Eq. 2-3), read as a bijection x -> u to a standard
normal (Eq. 4-5):

    u_i = (x_i - mu_i) exp(-alpha_i),          log|det du/dx| = -sum_i alpha_i,
    x_i = u_i exp(alpha_i) + mu_i              (the inverse: sequential, D passes per MADE).

The Jacobian of each layer is triangular in its ordering. K layers are stacked, each using the
reverse of the previous layer's ordering, and the density of x is (Eq. 1)

    log p(x) = log N(u_K; 0, I) + sum_k log|det du_k/du_{k-1}|.

Between MADEs sits the paper's batch normalization as a bijection (Section 3.3 / Appendix B):

    y = (x - m) / sqrt(v + eps) * exp(gamma) + beta,   log|det dy/dx| = sum_i (gamma_i - 1/2 log(v_i + eps)),

with (m, v) the batch mean and variance in training and running averages in eval mode (and in
the inverse, where no batch of x exists).

Masks come from MADE's degree rules (scratchgen.models.made): input degrees 1..D (reversed in
every other layer), hidden degrees cycling through 1..D-1 (the "sequential" degrees of the
authors' code, so that every conditional gets hidden units at any width).
"""
import math

import numpy as np

from .. import nn
from ..grad_mode import no_grad
from ..tensor import Tensor, float32
from .made import MADE, _connect

__all__ = ["GaussianMADE", "BatchNormFlow", "MAF"]

LOG_2PI = math.log(2 * math.pi)


class GaussianMADE(MADE):
    """A MADE whose two heads give mu(x_<i) and alpha(x_<i) for every i (shape (N, D) each).

    reverse: order the inputs D, D-1, ..., 1 instead of 1..D;
    context_dim: an unmasked input h (IAF's context from the encoder) added to the first hidden
        layer's pre-activation, so every output may depend on it."""

    def __init__(self, input_dim, hidden_sizes, reverse=False, context_dim=0, dtype=float32):
        if not hidden_sizes:
            raise ValueError("GaussianMADE needs at least one hidden layer")
        super().__init__(input_dim, hidden_sizes, num_masks=1, natural_ordering=True, dtype=dtype)
        self.reverse = bool(reverse)
        h = self.hidden_sizes
        self.alpha_out = nn.MaskedLinear(h[-1], input_dim, np.ones((input_dim, h[-1])), dtype=dtype)
        self.context = nn.Linear(context_dim, h[0], bias=False, dtype=dtype) if context_dim else None
        self.set_mask(0)   # again: now with the ordering and the alpha head

    def degrees(self, k):
        D = self.input_dim
        m0 = np.arange(D, 0, -1) if getattr(self, "reverse", False) else np.arange(1, D + 1)
        return [m0] + [np.arange(n) % max(1, D - 1) + 1 for n in self.hidden_sizes]

    def set_mask(self, k):
        super().set_mask(k)
        alpha_out = getattr(self, "alpha_out", None)
        if alpha_out is not None:   # the same strict output mask as the mu head
            m = self.degrees(self.mask_index)
            _connect(alpha_out, m[-1], m[0], strict=True)

    def forward(self, x, context=None):
        """(mu, alpha), each (N, D); output i depends only on the inputs before i (and on context)."""
        h = self.layers[0](x)
        if self.context is not None:
            h = h + self.context(context)
        h = h.relu()
        for layer in self.layers[1:-1]:
            h = layer(h).relu()
        return self.layers[-1](h), self.alpha_out(h)

    def to_noise(self, x):
        """u = (x - mu) exp(-alpha) and log|det du/dx| = -sum alpha, per example."""
        mu, alpha = self(x)
        return (x - mu) * (-alpha).exp(), -alpha.sum(axis=1)

    @no_grad()
    def from_noise(self, u):
        """x with to_noise(x) = u: x_i = u_i exp(alpha_i) + mu_i in the ordering, one pass per dimension.

        Setting x_i changes the first layer's pre-activation by x_i (W_1 * M_1)[:, i], so it is
        updated in place rather than recomputed, and only output i's two rows are evaluated: a pass
        costs the deeper layers plus O(NH), on the raw arrays (no graph is needed here)."""
        if self.context is not None:   # IAF never inverts its steps; a context would need its own pass
            raise NotImplementedError("from_noise of a GaussianMADE with a context input")
        xp = u.xp
        weights = [layer.weight.data * layer.mask.data for layer in self.layers]
        biases = [layer.bias.data for layer in self.layers]
        w_alpha = self.alpha_out.weight.data * self.alpha_out.mask.data
        b_alpha = self.alpha_out.bias.data
        x = xp.zeros_like(u.data)
        first = xp.broadcast_to(biases[0], (len(x), biases[0].shape[0])).copy()   # x = 0: just the bias
        for i in self.ordering:
            h = xp.maximum(first, 0)
            for w, b in zip(weights[1:-1], biases[1:-1]):
                h = xp.maximum(h @ w.T + b, 0)
            mu = h @ weights[-1][i] + biases[-1][i]
            alpha = h @ w_alpha[i] + b_alpha[i]
            x[:, i] = u.data[:, i] * xp.exp(alpha) + mu
            first += x[:, i][:, None] * weights[0][:, i]
        return Tensor(x)


class BatchNormFlow(nn.Module):
    """MAF's batch normalization as an invertible layer with its log-determinant."""

    def __init__(self, dim, momentum=0.1, eps=1e-5, dtype=float32):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.log_gamma = nn.Parameter(np.zeros(dim, dtype=dtype))
        self.beta = nn.Parameter(np.zeros(dim, dtype=dtype))
        self.register_buffer("running_mean", np.zeros(dim, dtype=dtype))
        self.register_buffer("running_var", np.ones(dim, dtype=dtype))

    def _running(self):
        return Tensor(self.running_mean.data), Tensor(self.running_var.data)

    def forward(self, x):
        """(y, log|det dy/dx|): batch statistics in training (and the running ones updated), else running."""
        if self.training:
            mean = x.mean(axis=0)
            var = ((x - mean) ** 2).mean(axis=0)
            m = self.momentum
            self.running_mean.data[...] = (1 - m) * self.running_mean.data + m * mean.data
            self.running_var.data[...] = (1 - m) * self.running_var.data + m * var.data
        else:
            mean, var = self._running()
        y = (x - mean) / (var + self.eps).sqrt() * self.log_gamma.exp() + self.beta
        return y, (self.log_gamma - 0.5 * (var + self.eps).log()).sum()

    def inverse(self, y):
        mean, var = self._running()
        return (y - self.beta) * (-self.log_gamma).exp() * (var + self.eps).sqrt() + mean


class MAF(nn.Module):
    """num_mades Gaussian MADEs with alternating (reversed) orderings, batch norm between them."""

    def __init__(self, dim, num_mades=5, hidden_sizes=(100,), batch_norm=True, dtype=float32):
        super().__init__()
        if dim < 2:
            raise ValueError(f"MAF needs dim >= 2, got {dim}")
        self.dim = dim
        self.mades = nn.ModuleList([GaussianMADE(dim, list(hidden_sizes), reverse=k % 2 == 1, dtype=dtype)
                                    for k in range(num_mades)])
        self.norms = nn.ModuleList([BatchNormFlow(dim, dtype=dtype) for _ in range(num_mades - 1)]) \
            if batch_norm else None

    @property
    def dtype(self):
        return self.mades[0].alpha_out.weight.dtype

    def _tensor(self, x):
        if isinstance(x, Tensor):
            return x
        w = self.mades[0].alpha_out.weight
        return Tensor(np.asarray(x, dtype=w.dtype)).to(w.device)

    def forward(self, x):
        """x -> (u, log|det du/dx|) per example."""
        x = self._tensor(x)
        logdet = 0
        for k, made in enumerate(self.mades):
            x, ld = made.to_noise(x)
            logdet = logdet + ld
            if self.norms is not None and k < len(self.norms):
                x, ld = self.norms[k](x)
                logdet = logdet + ld
        return x, logdet

    @no_grad()
    def inverse(self, u):
        """u -> x (the norms use their running statistics)."""
        x = self._tensor(u)
        for k in reversed(range(len(self.mades))):
            if self.norms is not None and k < len(self.norms):
                x = self.norms[k].inverse(x)
            x = self.mades[k].from_noise(x)
        return x

    def log_prob(self, x):
        """Exact log-density in nats per example, in the space x is given in."""
        u, logdet = self(x)
        return -0.5 * (u * u + LOG_2PI).sum(axis=1) + logdet

    @no_grad()
    def sample(self, n, generator=None):
        """n draws x = inverse(u), u ~ N(0, I), on the host generator's stream."""
        from ..random import rng
        u = rng(generator).standard_normal((n, self.dim)).astype(self.dtype)
        return self.inverse(u)
