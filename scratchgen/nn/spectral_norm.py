"""Spectral normalisation (Miyato, Kataoka, Koyama, Yoshida 2018): use W / sigma(W) in place of a
layer's weight, sigma(W) the largest singular value of W reshaped to (out, -1). It bounds the
layer's Lipschitz constant by 1, which keeps a GAN discriminator from becoming too sharp.

sigma is estimated by power iteration, one step per training forward, with u and v kept as
buffers between steps (Algorithm 1 of the paper):

    v <- W^T u / ||W^T u||,    u <- W v / ||W v||,    sigma(W) = u^T W v

u and v are constants for the gradient, as in the paper and in torch.nn.utils.spectral_norm:
the gradient of W / (u^T W v) flows through W alone.
"""
import numpy as np

from ..grad_mode import no_grad
from ..random import rng
from ..tensor import Tensor
from .module import Module, Parameter


def spectral_normalized(weight, u, v):
    """W / (u^T W v), W reshaped to (out, -1) for the product; u (out,) and v (in,) constant arrays."""
    w = weight.reshape(weight.shape[0], -1)
    sigma = Tensor(w.xp.asarray(u)) @ w @ Tensor(w.xp.asarray(v))
    return weight / sigma


def _normalize(a, eps):
    return a / max(float((a * a).sum()) ** 0.5, eps)


class SpectralNorm(Module):
    """Wrap a layer with a `weight` (Linear, Conv2d, ...) so that it runs with W / sigma(W).

    The wrapped layer's parameters stay where they were (`sn.module.weight`); u and v are buffers,
    saved with the model. Power iteration runs only in training mode, so evaluation does not
    change the estimate (torch.nn.utils.spectral_norm does the same).
    """

    def __init__(self, module, n_power_iterations=1, eps=1e-12, generator=None):
        super().__init__()
        weight = getattr(module, "weight", None)
        if not isinstance(weight, Parameter):
            raise TypeError(f"SpectralNorm wraps a layer with a 'weight' parameter, got {type(module).__name__}")
        if n_power_iterations < 1:
            raise ValueError(f"n_power_iterations must be >= 1, got {n_power_iterations}")
        self.module, self.n_power_iterations, self.eps = module, int(n_power_iterations), float(eps)
        w = np.asarray(weight.detach().cpu().numpy(), dtype=np.float64).reshape(weight.shape[0], -1)
        u = _normalize(rng(generator).standard_normal(w.shape[0]), eps)
        self.register_buffer("u", u.astype(weight.dtype))
        self.register_buffer("v", _normalize(w.T @ u, eps).astype(weight.dtype))
        self.to(weight.device)

    def _matrix(self):
        w = self.module.weight.data
        return w.reshape(w.shape[0], -1)

    @no_grad()
    def power_iteration(self):
        w = self._matrix()
        u, v = self.u.data, self.v.data
        for _ in range(self.n_power_iterations):
            v = _normalize(w.T @ u, self.eps)
            u = _normalize(w @ v, self.eps)
        self.u.data[...], self.v.data[...] = u, v

    def sigma(self):
        """The current estimate u^T W v of the largest singular value (a float)."""
        return float(self.u.data @ self._matrix() @ self.v.data)

    def forward(self, *args, **kwargs):
        if self.training:
            self.power_iteration()
        weight = self.module._parameters["weight"]
        self.module._parameters["weight"] = spectral_normalized(weight, self.u.data, self.v.data)
        try:
            return self.module(*args, **kwargs)
        finally:
            self.module._parameters["weight"] = weight


def spectral_norm(module, n_power_iterations=1, eps=1e-12, generator=None):
    """`module` wrapped to run with its weight divided by its spectral norm (see SpectralNorm)."""
    return SpectralNorm(module, n_power_iterations, eps, generator)
