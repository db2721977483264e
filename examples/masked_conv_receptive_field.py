"""PixelCNN's masked convolutions, seen through a gradient: what can one output pixel depend on?

PixelCNN (van den Oord et al. 2016) models p(x) = prod_i p(x_i | x_<i) in raster order with one
convolutional network, made causal by zeroing kernel taps: the first layer's mask 'A' hides the
centre pixel and everything after it, later layers' mask 'B' show the centre (it now holds
features of earlier pixels, not the pixel itself).

The receptive field of output (i, j) is exactly where d logit_ij / d x is nonzero, so autograd
draws it: it must lie strictly before (i, j) in raster order. Stacking 3x3 'B' layers also leaves
a *blind spot*: a triangle above-right that is causal but never reached. Gated PixelCNN (van den
Oord et al. 2016b) removes it with separate vertical and horizontal stacks; we show both.

    python examples/masked_conv_receptive_field.py [--out FOLDER]   (PNG there; default a temp dir)
"""
import argparse
import tempfile
from pathlib import Path

import numpy as np

import scratchgen as sg
from scratchgen.models import GatedPixelCNN, PixelCNN

parser = argparse.ArgumentParser(description="PixelCNN receptive field from a gradient")
parser.add_argument("--out", default=None, help="folder for receptive_field.png (default: a new temp dir)")
args = parser.parse_args()

sg.manual_seed(0)
H = W = 13
I, J = 8, 6                                   # the output pixel we differentiate


def show(mask):
    return "\n".join("    " + " ".join("#" if v else "." for v in row) for row in mask)


pixelcnn = PixelCNN(channels=16, blocks=3, first_kernel=5, kernel_size=3, out_channels=16)
print("mask 'A' (first layer, 5x5): the centre is hidden\n" + show(pixelcnn.first.mask[0, 0]))
print("mask 'B' (later layers, 3x3): the centre is shown\n" + show(pixelcnn.blocks[0].conv.mask[0, 0]))

# Before (i, j) in raster order: every row above, and the pixels to the left in row i.
rows, cols = np.indices((H, W))
causal = (rows < I) | ((rows == I) & (cols < J))

fields = {}
models = {"PixelCNN": pixelcnn, "Gated PixelCNN": GatedPixelCNN(channels=8, layers=4, first_kernel=5, kernel_size=3)}
for name, model in models.items():
    # A few random binary images: a ReLU that is off for one image cannot hide a dependency in all.
    x = sg.tensor((np.random.default_rng(0).random((4, 1, H, W)) < 0.5).astype(np.float32), requires_grad=True)
    g, = sg.grad(model(x)[:, 0, I, J].sum(), x)     # image n's logit depends on image n only
    seen = np.abs(g.numpy()).sum(axis=(0, 1)) > 0
    fields[name] = seen
    print(f"\n{name}: pixels that logit ({I}, {J}) depends on (# seen, . not seen, X the pixel itself)")
    print("\n".join("    " + " ".join("X" if (r, c) == (I, J) else "#" if seen[r, c] else "." for c in range(W))
                    for r in range(H)))
    assert not seen[I, J], "a pixel must not see itself"
    assert not np.any(seen & ~causal), "a pixel sees a later one"

    # In every row above, how far left and how far right does the field reach?
    reach = [(J - c.min(), c.max() - J) for c in (np.flatnonzero(seen[r]) for r in range(I)) if c.size]
    blind = sum(left - right for left, right in reach)
    print(f"    {seen.sum()} pixels seen, all causal; causal pixels above-right never seen (blind spot): {blind}")
    fields[name + " blind"] = blind

assert fields["PixelCNN blind"] > 0          # the stacked 3x3 'B' masks cannot reach up and right
assert fields["Gated PixelCNN blind"] == 0   # two stacks: as far right as left in every row above

try:
    import matplotlib.pyplot as plt
except ImportError:
    print("(matplotlib not installed: no PNG)")
else:
    out = Path(args.out or tempfile.mkdtemp(prefix="receptive_field_"))
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.5))
    for ax, name in zip(axes, models):
        picture = fields[name] + 2.0 * (causal & ~fields[name])   # seen 1, causal but unseen 2
        picture[I, J] = 3
        ax.imshow(picture, cmap="viridis", vmin=0, vmax=3)
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(f"logit ({I}, {J}), yellow: blue pixels seen; green causal but not seen")
    fig.savefig(out / "receptive_field.png", dpi=100)
    plt.close(fig)
    print(f"wrote {out / 'receptive_field.png'}")
print("receptive fields are causal; PixelCNN has a blind spot, Gated PixelCNN has none: OK")
