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
The PixelVAE authors report 80.1 nats on binarized MNIST for a Gated PixelCNN.
"""
import numpy as np

from .. import backend, nn
from ..grad_mode import _GradMode, no_grad
from ..losses import binary_cross_entropy_with_logits
from ..ops.conv import conv2d
from ..tensor import Tensor, record
from .gan import one_hot
from .pixelcnn import RowBuffer, RowConv, _as_images, autoregressive_sample, cached_sample, relu

__all__ = ["GatedPixelCNN"]


def shift(x, axis, k):
    """Entries moved k steps along `axis` (k > 0: towards the end), the k vacated ones zero. One
    copy, where pad-then-slice makes two; its adjoint is the shift by -k, so it stays linear and
    differentiable to every order."""
    out = x.xp.zeros(x.shape, dtype=x.dtype)
    n = x.shape[axis]
    src, dst = [slice(None)] * x.ndim, [slice(None)] * x.ndim
    src[axis], dst[axis] = (slice(0, n - k), slice(k, n)) if k >= 0 else (slice(-k, n), slice(0, n + k))
    out[tuple(dst)] = x.data[tuple(src)]
    return record(out, shift_vjp, (x,), axis=axis, k=k)


def shift_vjp(g, out, x, *, axis, k):
    return (shift(g, axis, -k),)


def shift_down(x):
    """Row i receives row i - 1 (row 0 gets zeros): strictly-above information only."""
    return shift(x, 2, 1)


def shift_right(x):
    """Column j receives column j - 1 (column 0 gets zeros)."""
    return shift(x, 3, 1)


def gate(a):
    """tanh(f) * sigmoid(g) over the two halves of the channel axis, as one op: its backward writes
    both halves' gradients into one array from the saved tanh and sigmoid, where the composition
    would build each half's gradient as a zero-filled full-size array and add the two."""
    xp = a.xp
    p = a.shape[1] // 2
    t = xp.tanh(a.data[:, :p])
    s = _sigmoid(xp, a.data[:, p:])
    return record(t * s, gate_vjp, (a,), saved=(t, s))


def _sigmoid(xp, x):
    """sigmoid(x) = (1 + tanh(x / 2)) / 2, in place on one buffer: a third of scipy's expit's time
    on NumPy. Off by at most an ulp of 1 from it; below about -17 (float32) it is 0 where expit is
    < 4e-8, which changes a gate output by less than that."""
    s = xp.multiply(x, 0.5)
    xp.tanh(s, out=s)
    s *= 0.5
    s += 0.5
    return s


def _composed_gate(a):
    p = a.shape[1] // 2
    return a[:, :p].tanh() * a[:, p:].sigmoid()


def gate_vjp(g, out, a, *, saved):
    """d/df = g s (1 - t^2), d/dg = g t s (1 - s), written into the two halves of one array."""
    if _GradMode.enabled:   # create_graph: differentiate the composition, so the result is differentiable
        from ..autograd import composed_vjp
        return composed_vjp(_composed_gate, (a,), g)
    xp = a.xp
    t, s = saved
    p = t.shape[1]
    gs = g.data * s
    da = xp.empty(a.shape, dtype=t.dtype)
    xp.multiply(gs, 1 - t * t, out=da[:, :p])
    xp.multiply(gs * t, 1 - s, out=da[:, p:])
    return (Tensor(da),)


class VerticalConv(nn.Conv2d):
    """A (k//2 + 1) x k kernel that sees the current row and the k//2 rows above it."""

    def __init__(self, c_in, c_out, k):
        super().__init__(c_in, c_out, (k // 2 + 1, k))
        self.k = k

    def forward(self, x):
        r = self.k // 2
        return conv2d(x, self.weight, self.bias, padding=(r, 0, r, r))   # rows above only


class HorizontalConv(nn.Conv2d):
    """A 1 x (k//2 + 1) kernel that sees the current column and the k//2 columns to its left."""

    def __init__(self, c_in, c_out, k):
        super().__init__(c_in, c_out, (1, k // 2 + 1))
        self.k = k

    def forward(self, x):
        return conv2d(x, self.weight, self.bias, padding=(0, 0, self.k // 2, 0))   # columns to the left only


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

    def forward(self, v, h, y=None, cond=None):
        """cond: an optional pair (v_bias, h_bias) added to the two stacks' gate pre-activations,
        each broadcastable to (N, 2p, H, W): per-channel (N, 2p, 1, 1) or per-pixel maps. It must not
        depend on the image (a latent code's map, as in PixelVAE), or causality is lost."""
        v_pre = self.vertical(v)
        h_conv = self.horizontal(h)
        if self.first:  # the 'A' mask: pixel (i, j) must not see itself
            h_conv = shift_right(h_conv)
        h_pre = h_conv + self.v_to_h(shift_down(v_pre))
        if self.num_classes:
            v_pre = v_pre + (y @ self.v_embed).reshape(y.shape[0], -1, 1, 1)
            h_pre = h_pre + (y @ self.h_embed).reshape(y.shape[0], -1, 1, 1)
        if cond is not None:
            v_pre, h_pre = v_pre + cond[0], h_pre + cond[1]
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

    def features(self, x, y=None, cond=None):
        """The horizontal stack after the last layer: what each pixel's prediction is made from.

        cond: optional per-layer conditioning, one (v_bias, h_bias) pair per layer (GatedLayer.forward)."""
        if self.num_classes and y is None:
            raise ValueError(f"a class-conditional GatedPixelCNN (num_classes={self.num_classes}) needs labels y")
        if cond is not None and len(cond) != len(self.layers):
            raise ValueError(f"cond needs one (v_bias, h_bias) pair per layer ({len(self.layers)}), got {len(cond)}")
        labels = one_hot(y, self.num_classes, x.dtype, like=x) if self.num_classes else None
        v = h = x
        for l, layer in enumerate(self.layers):
            v, h = layer(v, h, labels, None if cond is None else cond[l])
        return h

    def forward(self, x, y=None, cond=None):
        return self.logits(self.hidden(self.features(x, y, cond).relu()).relu())

    def nll(self, x, y=None, cond=None):
        """-log p(x | y) in nats, one value per image."""
        x = _as_images(x, self)
        per_pixel = binary_cross_entropy_with_logits(self(x, y, cond), x, reduction="none")
        return per_pixel.reshape(x.shape[0], -1).sum(axis=1)

    @no_grad()
    def sample(self, n, shape=(28, 28), seed=None, labels=None, cond=None):
        """n images drawn pixel by pixel (labels: one class per image, by default 0, 1, 2, ...;
        cond: per-layer (v_bias, h_bias) pairs for the n images, as in `features`)."""
        if self.num_classes:
            labels = np.arange(n) % self.num_classes if labels is None else np.asarray(labels)
        return cached_sample(GatedRows(self, n, shape, labels, cond), n, (1, *shape), seed)


def naive_sample(model, n, shape=(28, 28), seed=None, labels=None):
    """The reference sampler: one full forward pass per pixel (what `sample` must reproduce)."""
    if model.num_classes:
        labels = np.arange(n) % model.num_classes if labels is None else np.asarray(labels)
        first = next(model.parameters())
        return autoregressive_sample(lambda x: model(x, labels), n, (1, *shape), seed,
                                     dtype=first.dtype, device=first.device)
    return autoregressive_sample(model, n, (1, *shape), seed)


def vertical_taps(conv):
    """RowConv of a VerticalConv: output (i, j) reads rows i - r .. i, columns j - r .. j + r."""
    r = conv.k // 2
    taps = [(a - r, b - r, a, b) for a in range(r + 1) for b in range(conv.k)]
    return RowConv(conv.weight, conv.bias, taps)


def horizontal_taps(conv):
    """RowConv of a HorizontalConv: output (i, j) reads row i, columns j - r .. j."""
    r = conv.k // 2
    return RowConv(conv.weight, conv.bias, [(0, b - r, 0, b) for b in range(r + 1)])


def pointwise(conv):
    """A 1x1 Conv2d as a RowConv (its `pointwise` applies it to (C, n, W) activations)."""
    return RowConv(conv.weight, conv.bias, [(0, 0, 0, 0)])


def array_gate(a):
    """gate() on (2p, n, W) arrays."""
    xp = backend.array_module(a)
    p = a.shape[0] // 2
    return xp.tanh(a[:p]) * _sigmoid(xp, a[p:])


class GatedLayerRows:
    """One GatedLayer's convolutions as RowConvs, its gate biases (class embeddings, and any `cond`
    pair of GatedLayer.forward) as (2p, 1 or H, n, 1 or W) arrays, and the
    caches the rows below need: its vertical input (a RowBuffer) and v_to_h(v_pre) per finished row."""

    def __init__(self, layer, v_in, n, h, w, cond, bias=None):
        like = layer.vertical.weight
        self.first = layer.first
        self.vertical, self.horizontal = vertical_taps(layer.vertical), horizontal_taps(layer.horizontal)
        self.v_to_h, self.h_out = pointwise(layer.v_to_h), pointwise(layer.h_out)
        self.v_in = v_in
        self.h_in = None   # the horizontal conv's input row, for the layers whose input is h
        if not layer.first:
            self.h_in = RowBuffer(like, layer.horizontal.in_channels, n, 1, w, 0, layer.horizontal.k // 2)
        self.v_cond = self.h_cond = 0
        if cond is not None:
            self.v_cond = (cond @ layer.v_embed.data).T[:, None, :, None]
            self.h_cond = (cond @ layer.h_embed.data).T[:, None, :, None]
        if bias is not None:   # (v_bias, h_bias): (n, 2p[, 1 or H, 1 or W]) -> (2p, 1 or H, n, 1 or W)
            vb, hb = (_data(t).reshape(_data(t).shape + (1,) * (4 - _data(t).ndim)) for t in bias)
            self.v_cond = self.v_cond + vb.transpose(1, 2, 0, 3)
            self.h_cond = self.h_cond + hb.transpose(1, 2, 0, 3)
        # above[i] = v_to_h(shift_down(v_pre)) at image row i: row 0 sees shift_down's zero row
        self.above = like.xp.zeros((layer.v_to_h.out_channels, h, n, w), dtype=like.dtype)
        self.above[:, 0] = self.v_to_h.pointwise(like.xp.zeros((layer.v_to_h.in_channels, n, w), like.dtype))

    def h_row(self, x, h, i, j0, j1, h_j0):
        """The horizontal stack's output at row i, columns j0 .. j1 - 1, from its input h there
        (held from column h_j0 on; x: the image buffer, which the first layer's horizontal reads)."""
        if self.first:   # shift_right: column j takes the conv's j - 1, column 0 gets zeros (not the bias)
            h_conv = self.horizontal(x, i, j0 - 1, j1 - 1)
            if j0 == 0:
                h_conv[:, :, 0] = 0
        else:
            self.h_in.write(0, h, h_j0)
            h_conv = self.horizontal(self.h_in, 0, j0, j1)
        h_new = self.h_out.pointwise(array_gate(h_conv + self.above[:, i, :, j0:j1] + _at(self.h_cond, i, j0, j1)))
        return h_new if self.first else h[:, :, j0 - h_j0:] + h_new

    def v_row(self, i):
        """Run the vertical stack on finished row i: cache what row i + 1 reads, return v' there."""
        v_pre = self.vertical(self.v_in, i)
        if i + 1 < self.above.shape[1]:
            self.above[:, i + 1] = self.v_to_h.pointwise(v_pre)
        return array_gate(v_pre + _at(self.v_cond, i))


def _data(t):
    return t.data if isinstance(t, Tensor) else t


def _at(bias, i, j0=0, j1=None):
    """A (2p, 1 or H, n, 1 or W) gate bias at image row i, columns j0 .. j1 - 1 (0: no bias)."""
    if isinstance(bias, int):
        return bias
    row = bias[:, i if bias.shape[1] > 1 else 0]
    return row[:, :, j0:j1] if row.shape[2] > 1 else row


class GatedRows:
    """The Gated PixelCNN's conditionals for one row at a time, for `cached_sample`; array math.

    The horizontal stack at row i reads its own row and the vertical stack's row i - 1 only, and
    the vertical stack at row i reads rows <= i. So while row i is being drawn only the horizontal
    stack runs (on that one row); once the row is complete, `finish_row` runs the vertical stack on
    it, caching per layer its input (for the rows below) and v_to_h of its pre-activation (for the
    next row's horizontal stack)."""

    def __init__(self, model, n, shape, labels=None, cond=None):
        h, w = shape
        like = model.layers[0].vertical.weight
        labels = one_hot(labels, model.num_classes, like.dtype, like=like).data if model.num_classes else None
        self.layers = []
        for l, layer in enumerate(model.layers):
            r = layer.vertical.k // 2
            side = r + 1 if layer.first else r   # the first layer's horizontal reads one column further left
            v_in = RowBuffer(like, layer.vertical.in_channels, n, h, w, r, max(side, layer.horizontal.k // 2 + 1))
            self.layers.append(GatedLayerRows(layer, v_in, n, h, w, labels, None if cond is None else cond[l]))
        self.x = self.layers[0].v_in
        self.hidden, self.out = pointwise(model.hidden), pointwise(model.logits)
        # reach[l]: how many columns left of j layer l's horizontal output is needed at
        radii = [0 if layer.first else layer.horizontal.k // 2 for layer in model.layers]
        self.reach = [sum(radii[l + 1:]) for l in range(len(radii))]

    def logits(self, i, j):
        """(1, n) logits of pixel (i, j): the horizontal stack on the columns of row i it needs."""
        h, h_j0 = None, 0
        for layer, reach in zip(self.layers, self.reach):
            j0 = max(0, j - reach)
            h, h_j0 = layer.h_row(self.x, h, i, j0, j + 1, h_j0), j0
        return self.out.pointwise(relu(self.hidden.pointwise(relu(h[:, :, -1:]))))[:, :, 0]

    def finish_row(self, i):
        for layer, below in zip(self.layers, self.layers[1:] + [None]):
            v = layer.v_row(i)
            if below is not None:
                below.v_in.write(i, v)

    def put(self, k, i, j, values):
        self.x.row(i, j, j + 1)[k, :, 0] = backend.array_module(self.x.data).asarray(values)

    def image(self):
        return self.x.image()
