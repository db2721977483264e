"""PixelCNN (van den Oord, Kalchbrenner & Kavukcuoglu, 2016, "Pixel Recurrent Neural Networks").

An autoregressive model of an image x with pixels x_1..x_n in raster order (row by row, and
within a pixel channel by channel, R -> G -> B):

    p(x) = prod_i p(x_i | x_1, ..., x_{i-1})                                           (1)

Every conditional comes from one convolutional network run once on the whole image, made causal
by masking its kernels (Figure 2 of the paper): output pixel i only sees pixels above it, and to
its left in its own row.

    layer 1     7x7 masked convolution, mask 'A': the centre pixel itself is hidden
    blocks      residual blocks (Figure 5): 1x1 conv 2h -> h, ReLU, 3x3 mask 'B' conv h -> h
                (the centre is visible: it holds features, not the pixel), ReLU, 1x1 conv h -> 2h,
                added to the block's input
    output      ReLU, 1x1, ReLU, 1x1 -> one Bernoulli logit per pixel and channel

With several data channels each layer's channels are split into R, G, B groups and the mask
also orders the groups at the centre tap (MaskedConv2d's `data_channels`); every 1x1 layer is a
masked 'B' 1x1 for the same reason. For binarized MNIST (one channel) they are plain 1x1s.

    nll(x) = -log p(x) = sum_i BCE(logit_i, x_i)      in nats, exact: no bound, no sampling

Sampling is sequential: n network passes, one per pixel (and channel), each filling the next
pixel from its conditional. The paper's binarized MNIST number is 81.30 nats (Table 4).
"""
import math

import numpy as np

from .. import nn
from ..grad_mode import no_grad
from ..losses import binary_cross_entropy_with_logits
from ..tensor import Tensor, tensor
from .registry import ModelSpec, register

__all__ = ["PixelCNN"]


def masked_1x1(c_in, c_out, data_channels):
    return nn.MaskedConv2d(c_in, c_out, 1, mask_type="B", data_channels=data_channels)


class ResidualBlock(nn.Module):
    """Figure 5: x + 1x1(relu(3x3_B(relu(1x1(relu(x)))))) with 2h -> h -> h -> 2h channels."""

    def __init__(self, channels, kernel_size=3, data_channels=1):
        super().__init__()
        h = channels // 2
        self.reduce = masked_1x1(channels, h, data_channels)
        self.conv = nn.MaskedConv2d(h, h, kernel_size, mask_type="B", data_channels=data_channels)
        self.expand = masked_1x1(h, channels, data_channels)

    def forward(self, x):
        y = self.reduce(x.relu())
        y = self.conv(y.relu())
        return x + self.expand(y.relu())


class PixelCNN(nn.Module):
    """PixelCNN over (N, C, H, W) binary images; forward returns (N, C, H, W) Bernoulli logits.

    channels: the residual stream's width 2h; blocks: how many residual blocks; out_channels:
    width of the two 1x1 output layers. `data_channels` (1 or 3) is C.
    """

    def __init__(self, data_channels=1, channels=64, blocks=7, first_kernel=7, kernel_size=3, out_channels=64):
        super().__init__()
        if channels % (2 * data_channels) or out_channels % data_channels:
            raise ValueError(f"PixelCNN: channels ({channels}) must be a multiple of 2 * data_channels "
                             f"({2 * data_channels}) and out_channels ({out_channels}) of data_channels")
        self.data_channels = data_channels
        self.first = nn.MaskedConv2d(data_channels, channels, first_kernel, mask_type="A",
                                     data_channels=data_channels)
        self.blocks = nn.Sequential(*[ResidualBlock(channels, kernel_size, data_channels) for _ in range(blocks)])
        self.hidden = masked_1x1(channels, out_channels, data_channels)
        self.logits = masked_1x1(out_channels, data_channels, data_channels)

    def features(self, x):
        """The residual stream after the last block: what each pixel's prediction is made from."""
        return self.blocks(self.first(x))

    def forward(self, x):
        return self.logits(self.hidden(self.features(x).relu()).relu())

    def nll(self, x):
        """-log p(x) in nats, one value per image (the sum of per-pixel Bernoulli NLLs (1))."""
        x = _as_images(x, self)
        per_pixel = binary_cross_entropy_with_logits(self(x), x, reduction="none")
        return per_pixel.reshape(x.shape[0], -1).sum(axis=1)

    @no_grad()
    def sample(self, n, shape=(28, 28), seed=None):
        return autoregressive_sample(self, n, (self.data_channels, *shape), seed)


def _as_images(x, model):
    """(N, C*H*W) or (N, C, H, W) -> (N, C, H, W) tensor in the model's dtype."""
    x = x if isinstance(x, Tensor) else tensor(np.asarray(x))
    c = model.data_channels
    if x.ndim == 2:
        side = math.isqrt(x.shape[1] // c)
        if c * side * side != x.shape[1]:
            raise ValueError(f"cannot read a flat input of {x.shape[1]} values as {c}-channel square images; "
                             f"pass (N, {c}, H, W)")
        x = x.reshape(x.shape[0], c, side, side)
    if x.ndim != 4 or x.shape[1] != c:
        raise ValueError(f"expected images of shape (N, {c}, H, W), got {x.shape}")
    dtype = next(model.parameters()).dtype
    return x if x.dtype == dtype else x.astype(dtype)


@no_grad()
def autoregressive_sample(model, n, shape, seed=None, dtype=None, device=None):
    """x_i ~ p(x_i | x_<i) in raster and channel order: one forward pass per (row, column, channel).
    `model` maps (n, C, H, W) images to logits of the same shape; it runs on `device` (by default
    its parameters' device), the uniforms come from the host generator."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    dtype = dtype or next(model.parameters()).dtype
    device = device or next(model.parameters()).device
    x = np.zeros((n, c, h, w), dtype=dtype)
    for i in range(h):
        for j in range(w):
            for k in range(c):
                logits = model(Tensor(x).to(device))[:, k, i, j].numpy()
                p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
                x[:, k, i, j] = rng.random(n) < p
    return Tensor(x).to(device)


# -- the registered models --------------------------------------------------------------------------
class BinarizedMNISTAutoregressiveSpec(ModelSpec):
    """Training and evaluation on Larochelle's binarized MNIST (50k/10k/10k): NLL in nats per image."""

    dataset = "binarized_mnist"
    monitor = ("valid_nll", "min")
    patience = 10
    n_samples = 16

    def describe_data(self):
        from ..data import data_root
        return f"binarized MNIST (Larochelle's fixed binarization) from {data_root()}"

    def _split(self, split):
        from ..data import load_binarized_mnist
        x = load_binarized_mnist(split)
        limit = self.config.get("limit_train" if split == "train" else "limit_eval")
        x = x[:limit] if limit else x
        return x.reshape(len(x), 1, 28, 28)

    def train_dataset(self):
        return (self._split("train"),)

    def loss(self, model, batch):
        return model.nll(batch[0]).mean()

    @no_grad()
    def evaluate(self, model, split, batch=500):
        x = self._split(split)
        total = sum(float(model.nll(x[i:i + batch]).sum().item()) for i in range(0, len(x), batch))
        return {f"{split}_nll": total / len(x)}

    def sample(self, model, n, path):
        from ..plots import image_grid
        images = model.sample(n, seed=self.config["seed"]).numpy()
        return image_grid(images.reshape(n, 28, 28), path, nrow=int(math.ceil(math.sqrt(n))),
                          title=f"{self.name}: samples")


@register("pixelcnn")
class PixelCNNSpec(BinarizedMNISTAutoregressiveSpec):
    description = "PixelCNN (van den Oord et al. 2016) on binarized MNIST: exact test NLL in nats"
    defaults = dict(epochs=20, batch_size=64, lr=1e-3, channels=64, blocks=7, out_channels=64)

    def build(self):
        c = self.config
        return PixelCNN(1, c["channels"], c["blocks"], out_channels=c["out_channels"])
