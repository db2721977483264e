"""Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal 2018).

One step of flow (Table 1), on h of shape (C, H, W):

    actnorm        y = s * (h + b) per channel, s = exp(log_scale)       log-det = H W sum log|s|
    1x1 conv       y_ij = W h_ij, W (C x C) invertible                   log-det = H W log|det W|
    affine coupling  (h_a, h_b) = split(h); (log s, t) = NN(h_a); s = sigmoid(raw + 2)
                   y_b = s * h_b + t, y = concat(h_a, y_b)                log-det = sum log s

Actnorm's b and s are initialised from the first batch so that its output has zero mean and
unit variance per channel (data-dependent initialisation), then learned.

LU-decomposed 1x1 convolution (Section 3.2): W = P L (U + diag(sign(s) * exp(log|s|))), with the
permutation P and sign(s) fixed, L unit lower triangular, U strictly upper triangular and
log|s| learned, so log|det W| = sum log|s| and the log-det is H W sum log|s|. W starts as a
random rotation, factored once at construction.

NN (Section 3.3): conv 3x3 (C/2 -> channels), ReLU, conv 1x1 (channels -> channels), ReLU,
conv 3x3 (channels -> C) started at zero. (The paper also puts actnorm inside NN; left out.)

Multi-scale architecture (Dinh et al. 2017; Figure 2): L levels, each a squeeze, K steps of
flow and, except at the last level, a split that factors out half of the channels as z_i. The
prior of each factored-out z_i is learned and conditional, as in the paper's code:
z_i ~ N(mean(h_i), exp(log_std(h_i))^2) given the half h_i that the flow keeps, from a
zero-initialised 3x3 convolution (`split_prior=False`: a standard normal instead). It is written
as one more affine layer, z_i -> (z_i - mean) / std with log-det -sum log_std, so every z the flow
returns is standard normal. Squeeze and split are RealNVP's (realnvp.py).

Pre-processing: x in [0, 1] (dequantized, x = (k + u) / 256) enters the flow as x - 1/2
(log-det 0), as in the paper; with logit_alpha, as RealNVP's logit(alpha + (1 - 2 alpha) x) with
its log-det instead (MNIST's saturated pixels then need no large expansion inside the flow, whose
coupling scales sigmoid(raw + 2) can only contract). log_prob(x) is the density on [0, 1]^D; `bits_per_dim` adds the 1/256 scaling
and the dequantization. Sampling at a temperature T draws z ~ N(0, T^2 I) (Section 5.4).
"""
import numpy as np

from .. import linalg, nn
from ..creation import eye
from ..grad_mode import no_grad
from ..ops.arrays import diag_embed, tril, triu
from ..tensor import Tensor, float32
from .realnvp import ActNorm, ChannelCoupling, RealNVP, split, squeeze, unsplit, unsqueeze

__all__ = ["Glow", "InvConv1x1", "GlowCoupling", "FlowStep", "ActNorm", "SplitPrior"]


class InvConv1x1(nn.Module):
    """The invertible 1x1 convolution with the LU-decomposed weight of the module docstring."""

    def __init__(self, channels, dtype=float32, generator=None):
        super().__init__()
        import scipy.linalg
        from ..random import rng
        q, _ = np.linalg.qr(rng(generator).standard_normal((channels, channels)))   # a random rotation
        p, lower, upper = scipy.linalg.lu(q)   # q = p @ lower @ upper
        s = np.diag(upper)
        self.register_buffer("p", p.astype(dtype))
        self.register_buffer("sign_s", np.sign(s).astype(dtype))
        self.lower = nn.Parameter(np.tril(lower, -1).astype(dtype))
        self.upper = nn.Parameter(np.triu(upper, 1).astype(dtype))
        self.log_s = nn.Parameter(np.log(np.abs(s)).astype(dtype))

    def weight(self):
        c = self.log_s.shape[0]
        identity = eye(c, dtype=self.log_s.dtype, device=self.log_s.device)
        lower = tril(self.lower, -1) + identity
        upper = triu(self.upper, 1) + diag_embed(self.sign_s * self.log_s.exp())
        return self.p @ lower @ upper

    def forward(self, x):
        n, c, h, w = x.shape
        y = (self.weight() @ x.reshape(n, c, h * w)).reshape(n, c, h, w)
        return y, self.log_s.sum() * (h * w)

    def inverse(self, y):
        n, c, h, w = y.shape
        return (linalg.inv(self.weight()) @ y.reshape(n, c, h * w)).reshape(n, c, h, w)


class GlowNN(nn.Module):
    """(log s, t) = NN(h_a): conv 3x3, ReLU, conv 1x1, ReLU, zero-initialised conv 3x3;
    log s = log sigmoid(raw + 2), so each scale starts near 0.88 and stays in (0, 1)."""

    def __init__(self, in_channels, out_channels, channels, dtype=float32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, dtype=dtype), nn.ReLU(),
            nn.Conv2d(channels, channels, 1, dtype=dtype), nn.ReLU())
        self.out = nn.Conv2d(channels, 2 * out_channels, 3, padding=1, dtype=dtype)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x):
        out = self.out(self.net(x))
        c = out.shape[1] // 2
        return (out[:, :c] + 2).logsigmoid(), out[:, c:]


class GlowCoupling(ChannelCoupling):
    """Glow's affine coupling: RealNVP's channel-wise coupling with Glow's NN and sigmoid scale."""

    def __init__(self, channels, hidden, dtype=float32):
        if channels % 2:
            raise ValueError(f"Glow's coupling needs an even number of channels, got {channels}")
        super().__init__(channels, hidden, 0, 0, dtype, net=GlowNN(channels // 2, channels // 2, hidden, dtype))


class SplitPrior(nn.Module):
    """The learned prior of a factored-out half z given the kept half h, as an affine layer:
    forward(h, z) -> ((z - mean(h)) / std(h), -sum log std(h)); inverse(h, eps) -> z.
    It starts as the identity (zero-initialised convolution: mean 0, std 1)."""

    def __init__(self, channels, dtype=float32):
        super().__init__()
        self.net = nn.Conv2d(channels, 2 * channels, 3, padding=1, dtype=dtype)
        nn.init.zeros_(self.net.weight)
        nn.init.zeros_(self.net.bias)

    def _mean_and_log_std(self, kept):
        out = self.net(kept)
        c = out.shape[1] // 2
        return out[:, :c], out[:, c:]

    def forward(self, kept, z):
        mean, log_std = self._mean_and_log_std(kept)
        return (z - mean) * (-log_std).exp(), -log_std.reshape(z.shape[0], -1).sum(axis=1)

    def inverse(self, kept, eps):
        mean, log_std = self._mean_and_log_std(kept)
        return eps * log_std.exp() + mean


class FlowStep(nn.Module):
    """actnorm -> invertible 1x1 conv -> affine coupling."""

    def __init__(self, channels, hidden, dtype=float32, generator=None):
        super().__init__()
        self.norm = ActNorm(channels, dtype)
        self.conv = InvConv1x1(channels, dtype, generator)
        self.coupling = GlowCoupling(channels, hidden, dtype)

    def forward(self, x):
        x, ld1 = self.norm(x)
        x, ld2 = self.conv(x)
        x, ld3 = self.coupling(x)
        return x, ld1 + ld2 + ld3

    def inverse(self, y):
        return self.norm.inverse(self.conv.inverse(self.coupling.inverse(y)))


class Glow(nn.Module):
    """Glow on images of `shape` (C, H, W) in [0, 1]: `levels` levels of `steps` steps of flow,
    the NN `channels` wide.

    forward(x) -> ([z_1, ..., z_L], log|det dz/dx|) per image; inverse(zs) -> x;
    log_prob(x) in nats per image; sample(n, temperature)."""

    def __init__(self, shape=(1, 28, 28), levels=2, steps=8, channels=64, dtype=float32, generator=None,
                 logit_alpha=None, split_prior=True):
        super().__init__()
        self.alpha = logit_alpha
        c, h, w = shape
        if levels < 1 or steps < 1:
            raise ValueError(f"levels and steps must be >= 1, got {levels}, {steps}")
        if h % 2 ** levels or w % 2 ** levels:
            raise ValueError(f"{levels} levels squeeze {levels} times: height and width {h}x{w} must be "
                             f"divisible by {2 ** levels}")
        self.shape, self.z_shapes, blocks, priors = tuple(shape), [], [], []
        for i in range(levels):
            c, h, w = 4 * c, h // 2, w // 2
            blocks.append(nn.ModuleList([FlowStep(c, channels, dtype, generator) for _ in range(steps)]))
            if i < levels - 1:
                self.z_shapes.append((c // 2, h, w))
                c //= 2
                if split_prior:
                    priors.append(SplitPrior(c, dtype))
        self.z_shapes.append((c, h, w))
        self.levels = nn.ModuleList(blocks)
        self.priors = nn.ModuleList(priors) if split_prior else None

    def _param(self):
        return self.levels[0][0].norm.bias

    def forward(self, x):
        p = self._param()
        if not isinstance(x, Tensor):
            x = Tensor(np.asarray(x, dtype=p.dtype))
        x = x.reshape(x.shape[0], *self.shape)
        if self.alpha is None:
            x, logdet = x - 0.5, 0
        else:
            x, logdet = self.preprocess(x)
        zs = []
        for i, level in enumerate(self.levels):
            x = squeeze(x)
            for step in level:
                x, ld = step(x)
                logdet = logdet + ld
            if i < len(self.levels) - 1:
                x, z = split(x)
                if self.priors is not None:
                    z, ld = self.priors[i](x, z)
                    logdet = logdet + ld
                zs.append(z)
        zs.append(x)
        return zs, logdet

    def inverse(self, zs):
        x = zs[-1]
        for i in reversed(range(len(self.levels))):
            if i < len(self.levels) - 1:
                z = zs[i] if self.priors is None else self.priors[i].inverse(x, zs[i])
                x = unsplit(x, z)
            for step in reversed(self.levels[i]):
                x = step.inverse(x)
            x = unsqueeze(x)
        return x + 0.5 if self.alpha is None else self.postprocess(x)

    # The same density and bits/dim as RealNVP's: every z returned is standard normal (the split priors
    # are layers of the flow).
    log_prob = RealNVP.log_prob
    bits_per_dim = RealNVP.bits_per_dim
    preprocess = RealNVP.preprocess
    postprocess = RealNVP.postprocess

    @no_grad()
    def sample(self, n, temperature=1.0, generator=None):
        """n images (about [0, 1]) from z ~ N(0, temperature^2 I)."""
        from ..random import rng
        draw, p = rng(generator), self._param()
        zs = [Tensor(p.xp.asarray((temperature * draw.standard_normal((n,) + s)).astype(p.dtype)))
              for s in self.z_shapes]
        return self.inverse(zs)
