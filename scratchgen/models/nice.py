"""NICE: Non-linear Independent Components Estimation (Dinh, Krueger, Bengio 2014),
with RealNVP's affine coupling (Dinh, Sohl-Dickstein, Bengio 2017) as an option.

A bijection h = f(x) with a tractable Jacobian gives an exact likelihood (Eq. 1-2):

    log p(x) = sum_d log p_H(h_d) + log |det df/dx|

Additive coupling (Eq. 5), on a partition of x into odd and even dimensions (x1, x2):

    y1 = x1,    y2 = x2 + m(x1)                 log-det = 0

Affine coupling (RealNVP Eq. 6), s bounded by a tanh with a learned scale:

    y1 = x1,    y2 = x2 * exp(s(x1)) + t(x1)    log-det = sum s(x1)

The couplings alternate which half they change; a final diagonal scaling h = exp(S) * y
adds sum S to the log-det (Section 3.3). Priors: the standard logistic (the paper's MNIST
choice), log p(h) = -(softplus(h) + softplus(-h)), or the standard Gaussian.
"""
import math

import numpy as np

from .. import nn
from ..grad_mode import no_grad
from ..ops.coupling import affine_coupling, affine_coupling_inverse
from ..ops.elementwise import softplus
from ..ops.shape import stack
from ..tensor import Tensor, float32

__all__ = ["NICE", "Coupling"]

LOG_2PI = math.log(2 * math.pi)


class Coupling(nn.Module):
    """One coupling layer: leaves one half unchanged, transforms the other using it."""

    def __init__(self, dim, hidden, n_layers, parity, affine=False, dtype=float32):
        super().__init__()
        self.parity, self.affine = parity, affine
        half = dim // 2
        self.m = nn.mlp([half] + [hidden] * n_layers + [2 * half if affine else half], "relu", dtype=dtype)
        if affine:
            self.s_scale = nn.Parameter(np.ones(half, dtype=dtype))

    def split(self, x):
        """(x1, x2): the unchanged half and the transformed half, alternating by parity."""
        pairs = x.reshape(x.shape[0], -1, 2)
        return pairs[:, :, self.parity], pairs[:, :, 1 - self.parity]

    def merge(self, y1, y2):
        halves = (y1, y2) if self.parity == 0 else (y2, y1)
        return stack(halves, axis=2).reshape(y1.shape[0], -1)

    def shift_and_log_scale(self, x1):
        out = self.m(x1)
        if not self.affine:
            return out, None
        half = out.shape[1] // 2
        return out[:, half:], out[:, :half].tanh() * self.s_scale

    def forward(self, x):
        x1, x2 = self.split(x)
        t, s = self.shift_and_log_scale(x1)
        if s is None:
            return self.merge(x1, x2 + t), None
        y2, logdet = affine_coupling(x2, s, t)
        return self.merge(x1, y2), logdet

    def inverse(self, y):
        y1, y2 = self.split(y)
        t, s = self.shift_and_log_scale(y1)
        x2 = y2 - t if s is None else affine_coupling_inverse(y2, s, t)[0]
        return self.merge(y1, x2)


class NICE(nn.Module):
    def __init__(self, dim, num_couplings=4, hidden=1000, hidden_layers=5, prior="logistic",
                 coupling="additive", dtype=float32):
        super().__init__()
        if dim % 2:
            raise ValueError(f"NICE splits the input into odd and even halves, so dim must be even, got {dim}")
        if prior not in ("logistic", "gaussian"):
            raise ValueError(f"prior must be 'logistic' or 'gaussian', got {prior!r}")
        if coupling not in ("additive", "affine"):
            raise ValueError(f"coupling must be 'additive' or 'affine', got {coupling!r}")
        self.dim, self.prior = dim, prior
        self.couplings = nn.ModuleList([
            Coupling(dim, hidden, hidden_layers, parity=i % 2, affine=coupling == "affine", dtype=dtype)
            for i in range(num_couplings)])
        self.log_scale = nn.Parameter(np.zeros(dim, dtype=dtype))  # S in h = exp(S) * y

    def forward(self, x):
        """x -> (h, log|det dh/dx|) per example."""
        logdet = 0
        for layer in self.couplings:
            x, ld = layer(x)
            if ld is not None:
                logdet = logdet + ld
        h = x * self.log_scale.exp()
        return h, logdet + self.log_scale.sum()

    @no_grad()
    def uniform_init_(self, r, generator=None):
        """Every coupling weight from U(-r, r), every bias 0: the authors' released code
        (pylearn2's irange = 0.01). The couplings then start close to the identity. Returns self."""
        for module in self.couplings.modules():
            if isinstance(module, nn.Linear):
                nn.init.uniform_(module.weight, -r, r, generator=generator)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        return self

    @no_grad()
    def initialize_scale(self, x):
        """Data-dependent start for S (the actnorm idea of Kingma & Dhariwal 2018): S_d such that
        h_d = exp(S_d) y_d has the prior's second moment on the batch x (pi^2/3 logistic, 1
        Gaussian). From S = 0 the optimiser would need many epochs to shrink the near-constant
        border pixels' scales; the couplings start unchanged. Returns S as a NumPy array."""
        y = x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=self.log_scale.dtype))
        for layer in self.couplings:
            y, _ = layer(y)
        rms = np.sqrt(np.mean(np.asarray(y.numpy(), np.float64) ** 2, axis=0)) + 1e-12
        target = math.pi / math.sqrt(3) if self.prior == "logistic" else 1.0
        s = np.log(target / rms).astype(self.log_scale.dtype)
        self.log_scale.data[...] = self.log_scale.xp.asarray(s)
        return s

    def inverse(self, h):
        x = h * (-self.log_scale).exp()
        for layer in reversed(self.couplings):
            x = layer.inverse(x)
        return x

    def log_prior(self, h):
        if self.prior == "logistic":
            return -(softplus(h) + softplus(-h)).sum(axis=1)
        return -0.5 * (h * h + LOG_2PI).sum(axis=1)

    def log_prob(self, x):
        """Exact log-density in nats per example (of x in the space it is given in)."""
        x = x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=self.log_scale.dtype))
        h, logdet = self(x)
        return self.log_prior(h) + logdet

    @no_grad()
    def sample(self, n, generator=None):
        from ..random import rng
        draw, dtype = rng(generator), self.log_scale.dtype
        if self.prior == "logistic":
            u = draw.uniform(1e-6, 1 - 1e-6, size=(n, self.dim))
            h = np.log(u) - np.log1p(-u)
        else:
            h = draw.standard_normal((n, self.dim))
        return self.inverse(Tensor(h.astype(dtype)).to(self.log_scale.device))


def bits_per_dim(log_likelihood_nats, dim=784, levels=256):
    """Bits per dimension of the discrete 8-bit data, from the density of x in [0, 1]^dim.

    Dequantized x = (k + u) / 256 with k in {0..255}: the discrete probability of k is at
    least p(x) * (1/256)^dim, so  bpd = (-log p(x) + dim * log 256) / (dim * log 2).
    """
    return (-log_likelihood_nats + dim * math.log(levels)) / (dim * math.log(2))
