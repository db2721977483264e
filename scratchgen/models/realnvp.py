"""RealNVP for images: Density estimation using Real NVP (Dinh, Sohl-Dickstein, Bengio 2017).

Change of variables (Eq. 3): for a bijection z = f(x),

    log p_X(x) = log p_Z(f(x)) + log |det df/dx|,        p_Z = N(0, I).

Affine coupling (Eq. 7-9) with a binary mask b:

    y = b * x + (1 - b) * (x * exp(s(b * x)) + t(b * x)),      log-det = sum (1 - b) * s(b * x)

- checkerboard mask: b_ij = 1 where (i + j) is even (or odd, alternating layer to layer);
- channel-wise mask: b = 1 on one half of the channels, x = (x_a, x_b) -> (x_a, x_b e^s + t).

s and t come from a small ResNet (conv 3x3, residual blocks, conv 3x3), and s is bounded
as s = scale * tanh(raw) with a learned per-channel `scale` (Section 4.1). The last
convolution starts at zero, so every coupling starts as the identity.

Squeeze (Section 3.6): each 2x2 block of pixels becomes 4 channels, (C, H, W) -> (4C, H/2, W/2).
Multi-scale architecture (Eq. 16): at each scale, `couplings` checkerboard couplings, squeeze,
`couplings` channel-wise couplings, then half of the channels are factored out as z_i (they go
straight to the prior) and the other half continues; the last scale is `couplings + 1`
checkerboard couplings. (The paper: couplings = 3.)

Normalisation: the paper puts batch normalisation in the flow. Its inverse and log-det use
batch statistics in training and running averages at test time, so the density it defines
changes between the two. This module uses actnorm instead (Kingma & Dhariwal 2018): a
per-channel affine map y = (x + bias) * exp(log_scale), initialised from the first batch to
zero mean and unit variance, then learned; it is exact and the same at training and test
time, with log-det = H * W * sum(log_scale). One actnorm follows each coupling.

Pre-processing (Section 4.1) is part of the flow, so its Jacobian enters the likelihood:
x in [0, 1] (dequantized, x = (k + u) / 256) goes to logit space,

    y = logit(alpha + (1 - 2 alpha) x),   log|dy/dx| = log(1 - 2 alpha) - log p - log(1 - p),
    p = alpha + (1 - 2 alpha) x,

so `log_prob(x)` is the density of x on [0, 1]^D. `bits_per_dim` (from nice.py) then adds the
1/256 scaling and the uniform dequantization: bpd = (-log p(x) + D log 256) / (D log 2).
"""
import math

import numpy as np

from .. import nn
from ..grad_mode import no_grad
from ..ops.coupling import affine_coupling, affine_coupling_inverse
from ..ops.shape import concatenate
from ..tensor import Tensor, float32
from .nice import bits_per_dim

__all__ = ["RealNVP", "ActNorm", "CheckerboardCoupling", "ChannelCoupling", "ResNet", "squeeze", "unsqueeze",
           "split", "unsplit", "gaussian_log_prob", "checkerboard", "bits_per_dim"]

LOG_2PI = math.log(2 * math.pi)


# -- shape bijections (log-det 0) -------------------------------------------------------
def squeeze(x):
    """(N, C, H, W) -> (N, 4C, H/2, W/2): each 2x2 block of a channel becomes 4 channels."""
    n, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"squeeze needs an even height and width, got {h}x{w}")
    return x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, 4 * c, h // 2, w // 2)


def unsqueeze(x):
    """Inverse of squeeze: (N, 4C, H, W) -> (N, C, 2H, 2W)."""
    n, c, h, w = x.shape
    if c % 4:
        raise ValueError(f"unsqueeze needs channels divisible by 4, got {c}")
    return x.reshape(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c // 4, 2 * h, 2 * w)


def split(x):
    """Factor out half the channels: x -> (kept, z), z the first half (it goes to the prior)."""
    c = x.shape[1]
    return x[:, c // 2:], x[:, :c // 2]


def unsplit(kept, z):
    return concatenate([z, kept], axis=1)


def gaussian_log_prob(z):
    """log N(z; 0, I) summed over every axis but the first."""
    return -0.5 * (z * z + LOG_2PI).reshape(z.shape[0], -1).sum(axis=1)


def checkerboard(h, w, parity, dtype):
    """b of shape (1, 1, h, w): 1 where (i + j) % 2 == parity."""
    i, j = np.indices((h, w))
    return ((i + j) % 2 == parity).astype(dtype)[None, None]


# -- actnorm -----------------------------------------------------------------------------
class ActNorm(nn.Module):
    """y = (x + bias) * exp(log_scale) per channel; log-det = H * W * sum(log_scale).

    Data-dependent initialisation (Glow, Section 3.1): the first forward pass in training mode
    sets bias and log_scale so that this batch's output has zero mean and unit variance per
    channel; after that they are ordinary parameters. The `initialized` buffer is saved with the
    state_dict, so a loaded model is not initialised again."""

    def __init__(self, channels, dtype=float32):
        super().__init__()
        self.bias = nn.Parameter(np.zeros((1, channels, 1, 1), dtype=dtype))
        self.log_scale = nn.Parameter(np.zeros((1, channels, 1, 1), dtype=dtype))
        self.register_buffer("initialized", np.zeros((), dtype=dtype))

    @no_grad()
    def initialize(self, x):
        data = x.data.astype(np.float64)
        mean = data.mean(axis=(0, 2, 3), keepdims=True)
        std = data.std(axis=(0, 2, 3), keepdims=True)
        dtype = self.bias.dtype
        self.bias.data[...] = (-mean).astype(dtype)
        self.log_scale.data[...] = (-self.bias.xp.log(std + 1e-6)).astype(dtype)
        self.initialized.data[...] = 1

    def forward(self, x):
        if self.training and not float(self.initialized.data):
            self.initialize(x)
        h, w = x.shape[2:]
        logdet = self.log_scale.sum() * (h * w)
        return (x + self.bias) * self.log_scale.exp(), logdet

    def inverse(self, y):
        return y * (-self.log_scale).exp() - self.bias


# -- couplings ---------------------------------------------------------------------------
class ResNet(nn.Module):
    """s, t = net(x): conv 3x3 (in -> channels), ReLU, `blocks` residual blocks, conv 3x3
    (channels -> 2 * out) started at zero; s = scale * tanh(raw), scale learned per channel."""

    def __init__(self, in_channels, out_channels, channels, blocks, dtype=float32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, dtype=dtype), nn.ReLU(),
            *[nn.ResidualBlock(channels, batch_norm=False, dtype=dtype) for _ in range(blocks)])
        self.out = nn.Conv2d(channels, 2 * out_channels, 3, padding=1, dtype=dtype)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.scale = nn.Parameter(np.ones((1, out_channels, 1, 1), dtype=dtype))

    def forward(self, x):
        out = self.out(self.net(x))
        c = out.shape[1] // 2
        return out[:, :c].tanh() * self.scale, out[:, c:]


class CheckerboardCoupling(nn.Module):
    """Affine coupling with a checkerboard mask b: the pixels where b = 1 condition the others."""

    def __init__(self, channels, hidden, blocks, parity, dtype=float32):
        super().__init__()
        self.parity = parity
        self.net = ResNet(channels, channels, hidden, blocks, dtype)

    def _shift_and_log_scale(self, x):
        b = Tensor(x.xp.asarray(checkerboard(x.shape[2], x.shape[3], self.parity, x.dtype)))
        s, t = self.net(x * b)
        return s * (1 - b), t * (1 - b)   # zero where b = 1: those pixels pass unchanged

    def forward(self, x):
        s, t = self._shift_and_log_scale(x)
        return affine_coupling(x, s, t)

    def inverse(self, y):
        s, t = self._shift_and_log_scale(y)   # b * y == b * x
        return affine_coupling_inverse(y, s, t)[0]


class ChannelCoupling(nn.Module):
    """Affine coupling with a channel-wise mask: one half of the channels conditions the other.
    parity 0 changes the second half, parity 1 the first."""

    def __init__(self, channels, hidden, blocks, parity, dtype=float32, net=None):
        super().__init__()
        if channels % 2:
            raise ValueError(f"a channel-wise coupling needs an even number of channels, got {channels}")
        self.parity = parity
        self.net = net if net is not None else ResNet(channels // 2, channels // 2, hidden, blocks, dtype)

    def _halves(self, x):
        c = x.shape[1] // 2
        a, b = x[:, :c], x[:, c:]
        return (a, b) if self.parity == 0 else (b, a)

    def _join(self, cond, changed):
        return concatenate([cond, changed] if self.parity == 0 else [changed, cond], axis=1)

    def shift_and_log_scale(self, cond):
        return self.net(cond)

    def forward(self, x):
        cond, changed = self._halves(x)
        s, t = self.shift_and_log_scale(cond)
        y, logdet = affine_coupling(changed, s, t)
        return self._join(cond, y), logdet

    def inverse(self, y):
        cond, changed = self._halves(y)
        s, t = self.shift_and_log_scale(cond)
        return self._join(cond, affine_coupling_inverse(changed, s, t)[0])


class _Steps(nn.Module):
    """A sequence of (coupling, actnorm) pairs."""

    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        logdet = 0
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y):
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y


class _Normed(nn.Module):
    """A coupling followed by actnorm, as one step."""

    def __init__(self, coupling, channels, dtype):
        super().__init__()
        self.coupling, self.norm = coupling, ActNorm(channels, dtype)

    def forward(self, x):
        y, ld = self.coupling(x)
        y, ld2 = self.norm(y)
        return y, ld + ld2

    def inverse(self, y):
        return self.coupling.inverse(self.norm.inverse(y))


class RealNVP(nn.Module):
    """The multi-scale RealNVP of the module docstring on images of `shape` (C, H, W) in [0, 1].

    forward(x) -> ([z_1, ..., z_L], log|det dz/dx|) per image (logit pre-processing included);
    inverse(zs) -> x; log_prob(x) in nats per image; sample(n, temperature)."""

    def __init__(self, shape=(1, 28, 28), scales=2, channels=64, blocks=2, couplings=3, alpha=0.05,
                 dtype=float32):
        super().__init__()
        c, h, w = shape
        if scales < 1 or couplings < 1:
            raise ValueError(f"scales and couplings must be >= 1, got {scales}, {couplings}")
        if h % 2 ** (scales - 1) or w % 2 ** (scales - 1):
            raise ValueError(f"{scales} scales squeeze {scales - 1} times: height and width {h}x{w} must be "
                             f"divisible by {2 ** (scales - 1)}")
        self.shape, self.alpha = tuple(shape), alpha
        levels, self.z_shapes = [], []
        for i in range(scales):
            checker = [_Normed(CheckerboardCoupling(c, channels, blocks, k % 2, dtype), c, dtype)
                       for k in range(couplings + (i == scales - 1))]
            if i == scales - 1:
                levels.append(nn.ModuleList([_Steps(checker)]))
                self.z_shapes.append((c, h, w))
                break
            c, h, w = 4 * c, h // 2, w // 2
            chan = [_Normed(ChannelCoupling(c, channels, blocks, k % 2, dtype), c, dtype) for k in range(couplings)]
            levels.append(nn.ModuleList([_Steps(checker), _Steps(chan)]))
            self.z_shapes.append((c // 2, h, w))
            c //= 2
        self.levels = nn.ModuleList(levels)

    # -- pre-processing: [0, 1] <-> logit space ----------------------------------------------
    def preprocess(self, x):
        """y = logit(alpha + (1 - 2 alpha) x) and its log|det dy/dx| per image."""
        p = self.alpha + (1 - 2 * self.alpha) * x
        y = p.log() - (-p).log1p()
        logdet = (math.log1p(-2 * self.alpha) - p.log() - (-p).log1p()).reshape(x.shape[0], -1).sum(axis=1)
        return y, logdet

    def postprocess(self, y):
        return (y.sigmoid() - self.alpha) / (1 - 2 * self.alpha)

    # -- the flow ----------------------------------------------------------------------------
    def _as_input(self, x):
        if not isinstance(x, Tensor):
            x = Tensor(np.asarray(x, dtype=self.levels[0][0].layers[0].norm.bias.dtype))
        return x.reshape(x.shape[0], *self.shape)

    def forward(self, x):
        x = self._as_input(x)
        x, logdet = self.preprocess(x)
        zs = []
        for level in self.levels:
            x, ld = level[0](x)
            logdet = logdet + ld
            if len(level) == 1:
                zs.append(x)
                break
            x, ld = level[1](squeeze(x))
            logdet = logdet + ld
            x, z = split(x)
            zs.append(z)
        return zs, logdet

    def inverse(self, zs):
        x = zs[-1]
        for level, z in zip(reversed(self.levels), reversed(zs)):
            if len(level) == 2:
                x = unsqueeze(level[1].inverse(unsplit(x, z)))
            x = level[0].inverse(x)
        return self.postprocess(x)

    def log_prob(self, x):
        """log p(x) in nats per image, for x in [0, 1]^D (every Jacobian of the flow included)."""
        zs, logdet = self(x)
        return sum(gaussian_log_prob(z) for z in zs) + logdet

    def bits_per_dim(self, x):
        """Bits/dim of the 8-bit data (dequantized x = (k + u) / 256), per image."""
        return bits_per_dim(self.log_prob(x), dim=int(np.prod(self.shape)))

    @no_grad()
    def sample(self, n, temperature=1.0, generator=None):
        """n images, about [0, 1] (the inverse logit reaches slightly past both ends), from z ~ N(0, temperature^2 I)."""
        from ..random import rng
        draw, p = rng(generator), self.levels[0][0].layers[0].norm.bias
        zs = [Tensor(p.xp.asarray((temperature * draw.standard_normal((n,) + s)).astype(p.dtype)))
              for s in self.z_shapes]
        return self.inverse(zs)
