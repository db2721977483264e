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

Sampling is sequential: one conditional per pixel (and channel), each filling the next pixel.
Drawing a pixel of row i changes no layer's output above row i, so `sample` caches every layer's
activations of the finished rows and recomputes only the part of row i that pixel needs
(`cached_sample`): the same draws as the naive sampler's n full-image passes
(`autoregressive_sample`, kept as the reference).

The paper's binarized MNIST number is 81.30 nats (Table 4).
"""
import math

import numpy as np

from .. import backend, nn, threads
from ..grad_mode import no_grad
from ..losses import binary_cross_entropy_with_logits
from ..tensor import Tensor, tensor

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
        return cached_sample(PixelCNNRows(self, n, shape), n, (self.data_channels, *shape), seed)


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


def _draw(rng, logits):
    """One Bernoulli draw per image from host logits, in float64 (the naive sampler's arithmetic)."""
    p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    return rng.random(len(p)) < p


@no_grad()
def cached_sample(rows, n, shape, seed=None):
    """autoregressive_sample's draws, in its order and from the same generator, but each conditional
    comes from `rows`, which recomputes only the row being drawn from cached activations.

    `rows` has logits(i, j) -> the (C, n) logits of pixel (i, j) given the current image, put(k, i,
    j, values) writing a drawn pixel, finish_row(i) refreshing its caches once row i is complete,
    and image() -> the (n, C, H, W) array.

    BLAS runs on one thread here: a row's products are so small that waking and syncing a second
    thread costs more than the product itself."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    with threads.limit(1):
        for i in range(h):
            for j in range(w):
                for k in range(c):
                    logits = rows.logits(i, j)
                    rows.put(k, i, j, _draw(rng, Tensor(logits[k]).numpy()))
            rows.finish_row(i)
    return Tensor(rows.image())


class RowBuffer:
    """A layer's input for the whole image, channel-first: data[c, top + i, n, side + j] is channel c
    of image row i, column j. The `top` rows above and `side` columns either side stay zero: they
    are the convolution's zero padding, so a window of rows and columns is a plain slice."""

    def __init__(self, like, c, n, h, w, top, side):
        self.data = like.xp.zeros((c, top + h, n, side + w + side), dtype=like.dtype)
        self.top, self.side, self.w = top, side, w

    def row(self, i, j0=0, j1=None):
        """(C, n, j1 - j0): image row i, columns j0 .. j1 - 1 (negative ones: the zero padding)."""
        j1 = self.w if j1 is None else j1
        return self.data[:, self.top + i, :, self.side + j0:self.side + j1]

    def write(self, i, values, j0=0):
        self.row(i, j0, j0 + values.shape[-1])[...] = values

    def image(self):
        """(n, C, H, W) without the padding."""
        view = self.data[:, self.top:, :, self.side:self.side + self.w].transpose(2, 0, 1, 3)
        return backend.array_module(view).ascontiguousarray(view)


class RowConv:
    """A convolution's output at one image row, as one matrix product: out = W_taps @ [input slices].

    taps: (row offset, column offset, kernel row, kernel column) per tap used; output (i, j) reads
    input (i + row offset, j + column offset). The weight is read once, with any mask applied, and
    the taps whose weights are all masked are dropped, so a masked kernel costs its unmasked taps."""

    def __init__(self, weight, bias, taps, mask=None):
        xp = weight.xp
        w = weight.data
        if mask is not None:
            taps = [t for t in taps if mask[:, :, t[2], t[3]].any()]
            w = w * xp.asarray(mask, dtype=w.dtype)
        self.taps = [(di, dj) for di, dj, _, _ in taps]
        self.w = xp.concatenate([w[:, :, a, b] for _, _, a, b in taps], axis=1)
        self.b = None if bias is None else bias.data.reshape(-1, 1, 1)

    def __call__(self, buf, i, j0=0, j1=None):
        """(C_out, n, j1 - j0): image row i, output columns j0 .. j1 - 1, from a RowBuffer."""
        j1 = buf.w if j1 is None else j1
        cols = [buf.row(i + di, j0 + dj, j1 + dj) for di, dj in self.taps]
        return self._product(cols[0] if len(cols) == 1 else backend.array_module(buf.data).concatenate(cols, axis=0))

    def _product(self, x):
        c, n, w = x.shape
        out = (self.w @ x.reshape(c, n * w)).reshape(-1, n, w)
        return out if self.b is None else out + self.b

    def pointwise(self, x):
        """A 1x1 layer on (C_in, n, W) activations."""
        return self._product(x)


def masked_taps(layer):
    """A stride-1 MaskedConv2d with padding k // 2 (PixelCNN's layers) as a RowConv over its unmasked taps."""
    if layer.stride != (1, 1) or layer.padding != (layer.kernel_size // 2,) * 2:
        raise ValueError("row sampling needs stride-1 masked convolutions with padding k // 2 (PixelCNN's own)")
    r = layer.kernel_size // 2
    taps = [(a - r, b - r, a, b) for a in range(r + 1) for b in range(layer.kernel_size)]
    return RowConv(layer.weight, layer.bias, taps, layer.mask)


def relu(a):
    return backend.array_module(a).maximum(a, 0)


class PixelCNNRows:
    """PixelCNN's conditionals for one row at a time, for `cached_sample`; plain array math.

    The only layers that look at other rows are the first k x k conv (over the image) and each
    block's 3x3 conv (over that block's relu(reduce(relu(x)))); those inputs are kept for the whole
    image, everything else is computed for row i alone."""

    def __init__(self, model, n, shape):
        h, w = shape
        like = model.first.weight
        r = model.first.kernel_size // 2
        self.x = RowBuffer(like, model.data_channels, n, h, w, r, r)
        self.first = masked_taps(model.first)
        self.blocks = []
        for block in model.blocks:
            rb = block.conv.kernel_size // 2
            self.blocks.append((masked_taps(block.reduce), masked_taps(block.conv), masked_taps(block.expand),
                                RowBuffer(like, block.conv.in_channels, n, h, w, rb, rb)))
        self.hidden, self.out = masked_taps(model.hidden), masked_taps(model.logits)
        # reach[b]: how many columns left of j the residual stream entering block b is needed at
        radii = [block.conv.kernel_size // 2 for block in model.blocks]
        self.reach = [sum(radii[b:]) for b in range(len(radii) + 1)]

    def logits(self, i, j=None):
        """(C, n) logits of pixel (i, j); j=None runs the whole row (and returns (C, n, W)).

        Pixel (i, j) reads row i's activations only at columns <= j, and a 3x3 'B' conv widens that
        by one column to the left per block, so each layer runs on the columns still needed; the
        caches' columns past the window go stale, and finish_row recomputes the complete row."""
        w = self.x.w
        j0, j1 = (0, w) if j is None else (max(0, j - self.reach[0]), j + 1)
        s = self.first(self.x, i, j0, j1)
        for (reduce, conv, expand, mid), reach in zip(self.blocks, self.reach[1:]):
            mid.write(i, relu(reduce.pointwise(relu(s))), j0)
            jb = j0 if j is None else max(0, j - reach)
            s = s[:, :, jb - j0:] + expand.pointwise(relu(conv(mid, i, jb, j1)))
            j0 = jb
        out = self.out.pointwise(relu(self.hidden.pointwise(relu(s))))
        return out if j is None else out[:, :, -1]

    def put(self, k, i, j, values):
        self.x.row(i, j, j + 1)[k, :, 0] = backend.array_module(self.x.data).asarray(values)

    def finish_row(self, i):
        """The caches' row i was last computed before the row's last pixel was drawn: redo it."""
        self.logits(i)

    def image(self):
        return self.x.image()
