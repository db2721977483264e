"""Gated PixelCNN (van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu, 2016,
"Conditional Image Generation with PixelCNN Decoders").

Same model of p(x) as PixelCNN (pixelcnn.py, equation (1)), with two changes to the network.

1. No blind spot. A stack of masked 3x3 convolutions never sees a growing triangle of pixels
   above and to the right. The fix (Figure 1) is two stacks:
     vertical stack    v at (i, j) sees rows <= i, every column within reach: a (k//2 + 1) x k
                       kernel over the rows above plus the current one (padding above only);
     horizontal stack  h at (i, j) sees columns <= j of row i: a 1 x (k//2 + 1) kernel (padding
                       on the left only); in the first layer shifted right by one, so that it
                       does not see pixel (i, j) itself (the 'A' mask).
   h also receives v shifted down by one row, so h at (i, j) gets everything strictly above
   from v and everything to its left from h, and never the pixel itself. v itself never goes
   to the output, so it may look at its own row.

2. Gated activations (equation (2)), in both stacks:

        y = tanh(W_f * x + V_f h) * sigmoid(W_g * x + V_g h)

   where each convolution produces 2p channels split into the f and g halves, and h is an
   optional conditioning vector (here a class label: V is a learned embedding per class,
   added as a per-channel bias to every layer's f and g, equation (4)).

One layer (Figure 2), with p channels in each stack:

    v_pre = conv_v(v)                                  (2p channels)
    h_pre = conv_h(h) + 1x1(shift_down(v_pre))         (2p channels)
    v'    = gate(v_pre + cond)
    h'    = h + 1x1(gate(h_pre + cond))                (the residual skips the first layer)

Output: ReLU, 1x1 to `out_channels`, ReLU, 1x1 to one Bernoulli logit per pixel.
The PixelVAE authors' Gated PixelCNN reaches 80.1 nats on binarized MNIST (the issue's target).
"""
import numpy as np

from .. import nn
from ..grad_mode import no_grad
from ..losses import binary_cross_entropy_with_logits
from ..ops.conv import conv2d
from ..ops.shape import pad
from .gan import one_hot
from .pixelcnn import BinarizedMNISTAutoregressiveSpec, _as_images, autoregressive_sample
from .registry import register

__all__ = ["GatedPixelCNN"]


def shift_down(x):
    """Row i receives row i - 1 (row 0 gets zeros): strictly-above information only."""
    return pad(x, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :-1, :]


def shift_right(x):
    """Column j receives column j - 1 (column 0 gets zeros)."""
    return pad(x, ((0, 0), (0, 0), (0, 0), (1, 0)))[:, :, :, :-1]


def gate(a):
    """tanh(f) * sigmoid(g) over the two halves of the channel axis."""
    p = a.shape[1] // 2
    return a[:, :p].tanh() * a[:, p:].sigmoid()


class VerticalConv(nn.Conv2d):
    """A (k//2 + 1) x k kernel that sees the current row and the k//2 rows above it."""

    def __init__(self, c_in, c_out, k):
        super().__init__(c_in, c_out, (k // 2 + 1, k))
        self.k = k

    def forward(self, x):
        r = self.k // 2
        return conv2d(pad(x, ((0, 0), (0, 0), (r, 0), (r, r))), self.weight, self.bias)


class HorizontalConv(nn.Conv2d):
    """A 1 x (k//2 + 1) kernel that sees the current column and the k//2 columns to its left."""

    def __init__(self, c_in, c_out, k):
        super().__init__(c_in, c_out, (1, k // 2 + 1))
        self.k = k

    def forward(self, x):
        return conv2d(pad(x, ((0, 0), (0, 0), (0, 0), (self.k // 2, 0))), self.weight, self.bias)


class GatedLayer(nn.Module):
    def __init__(self, c_in, p, k, first=False, num_classes=0):
        super().__init__()
        self.first = first
        self.vertical = VerticalConv(c_in, 2 * p, k)
        self.horizontal = HorizontalConv(c_in, 2 * p, k)
        self.v_to_h = nn.Conv2d(2 * p, 2 * p, 1)
        self.h_out = nn.Conv2d(p, p, 1)
        if num_classes:
            self.v_embed = nn.Parameter(np.zeros((num_classes, 2 * p), np.float32))
            self.h_embed = nn.Parameter(np.zeros((num_classes, 2 * p), np.float32))
        self.num_classes = num_classes

    def forward(self, v, h, y=None):
        v_pre = self.vertical(v)
        h_conv = self.horizontal(h)
        if self.first:  # the 'A' mask: pixel (i, j) must not see itself
            h_conv = shift_right(h_conv)
        h_pre = h_conv + self.v_to_h(shift_down(v_pre))
        if self.num_classes:
            v_pre = v_pre + (y @ self.v_embed).reshape(y.shape[0], -1, 1, 1)
            h_pre = h_pre + (y @ self.h_embed).reshape(y.shape[0], -1, 1, 1)
        h_new = self.h_out(gate(h_pre))
        return gate(v_pre), (h_new if self.first else h + h_new)


class GatedPixelCNN(nn.Module):
    """Gated PixelCNN over (N, 1, H, W) binary images; forward returns (N, 1, H, W) logits.

    channels: p, the width of each stack; layers: gated layers (the first is the 'A' one);
    num_classes > 0 makes it class-conditional: forward(x, y) with integer labels y."""

    data_channels = 1

    def __init__(self, channels=64, layers=8, kernel_size=3, first_kernel=7, out_channels=128, num_classes=0):
        super().__init__()
        if kernel_size % 2 == 0 or first_kernel % 2 == 0:
            raise ValueError(f"GatedPixelCNN: kernel sizes must be odd, got {first_kernel} and {kernel_size}")
        self.num_classes = num_classes
        self.layers = nn.ModuleList(
            [GatedLayer(1, channels, first_kernel, first=True, num_classes=num_classes)]
            + [GatedLayer(channels, channels, kernel_size, num_classes=num_classes) for _ in range(layers - 1)])
        self.hidden = nn.Conv2d(channels, out_channels, 1)
        self.logits = nn.Conv2d(out_channels, 1, 1)

    def features(self, x, y=None):
        """The horizontal stack after the last layer: what each pixel's prediction is made from."""
        if self.num_classes and y is None:
            raise ValueError(f"a class-conditional GatedPixelCNN (num_classes={self.num_classes}) needs labels y")
        cond = one_hot(y, self.num_classes, x.dtype, like=x) if self.num_classes else None
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h, cond)
        return h

    def forward(self, x, y=None):
        return self.logits(self.hidden(self.features(x, y).relu()).relu())

    def nll(self, x, y=None):
        """-log p(x | y) in nats, one value per image."""
        x = _as_images(x, self)
        per_pixel = binary_cross_entropy_with_logits(self(x, y), x, reduction="none")
        return per_pixel.reshape(x.shape[0], -1).sum(axis=1)

    @no_grad()
    def sample(self, n, shape=(28, 28), seed=None, labels=None):
        if self.num_classes:
            labels = np.arange(n) % self.num_classes if labels is None else np.asarray(labels)
            first = next(self.parameters())
            return autoregressive_sample(lambda x: self(x, labels), n, (1, *shape), seed,
                                         dtype=first.dtype, device=first.device)
        return autoregressive_sample(self, n, (1, *shape), seed)


@register("gated_pixelcnn")
class GatedPixelCNNSpec(BinarizedMNISTAutoregressiveSpec):
    description = "Gated PixelCNN (van den Oord et al. 2016b; no blind spot) on binarized MNIST: exact test NLL"
    defaults = dict(epochs=20, batch_size=64, lr=1e-3, channels=32, layers=8, out_channels=64)

    def build(self):
        c = self.config
        return GatedPixelCNN(c["channels"], c["layers"], out_channels=c["out_channels"])
