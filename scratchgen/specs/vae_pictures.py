"""The VAE's pictures (Kingma & Welling's figures and the usual checks), for `scratchgen train vae`: samples, reconstructions, interpolations between posterior means,
the latent codes of labelled test digits (PCA to 2-D when the latent space is larger) and, for a
2-D latent space, the learned manifold over a grid of Gaussian quantiles (K&W Figure 4)."""
import os

import numpy as np

from ..grad_mode import no_grad
from ..random import Generator


def pca_2d(z):
    """The first two principal components of the rows of z, and the share of variance they hold."""
    zc = z - z.mean(axis=0)
    _, s, vt = np.linalg.svd(zc, full_matrices=False)
    return zc @ vt[:2].T, (s[:2] ** 2).sum() / (s ** 2).sum()


@no_grad()
def draw_vae_pictures(model, test, labelled, out, seed=0):
    """Write samples, reconstructions, interpolations, latent_scatter (and manifold) PNGs into out.

    test: (N, 784) model inputs; labelled: (inputs, labels) of MNIST test digits. Returns the paths."""
    from ..plots import image_grid, interpolation_strip, scatter_2d
    paths = {}
    g = Generator(seed + 100)
    paths["samples"] = image_grid(model.sample(100, generator=g, mean=True).numpy(), os.path.join(out, "samples.png"),
                                  nrow=10, title="VAE samples: E[x|z], z ~ N(0, I)")
    x = test[:20]
    recon = model.reconstruct(x).numpy()
    half = len(x) // 2
    paths["reconstructions"] = interpolation_strip([x[:half], recon[:half], x[half:2 * half], recon[half:2 * half]],
                                                   os.path.join(out, "reconstructions.png"),
                                                   row_labels=["data", "recon", "data", "recon"])
    # Interpolations between the codes of pairs of test digits.
    rng = np.random.default_rng(seed)
    pairs = rng.choice(len(test), size=(8, 2), replace=False)
    mu = model.encode(test[pairs.reshape(-1)]).loc.numpy().reshape(8, 2, -1)
    t = np.linspace(0, 1, 10)[None, :, None]
    z = (1 - t) * mu[:, :1] + t * mu[:, 1:]                       # (8 pairs, 10 steps, latent)
    images = model.decode_mean(z.reshape(-1, model.latent_dim).astype(np.float32)).numpy()
    paths["interpolations"] = interpolation_strip(list(images.reshape(8, 10, 28, 28)),
                                                  os.path.join(out, "interpolations.png"),
                                                  title="linear interpolation between posterior means")
    # Latent codes of labelled test digits.
    xl, labels = labelled
    codes = np.concatenate([model.encode(xl[i:i + 1000]).loc.numpy() for i in range(0, len(xl), 1000)])
    if model.latent_dim == 2:
        pts, title = codes, "posterior means mu(x) of MNIST test digits"
    else:
        pts, explained = pca_2d(codes)
        title = f"mu(x) of MNIST test digits, first 2 principal components ({explained:.0%} of variance)"
    paths["latent_scatter"] = scatter_2d(pts, labels, os.path.join(out, "latent_scatter.png"), title=title)
    if model.latent_dim == 2:
        from scipy.stats import norm
        q = norm.ppf(np.linspace(0.05, 0.95, 20))
        grid = np.stack(np.meshgrid(q, q[::-1]), axis=-1).reshape(-1, 2).astype(np.float32)
        paths["manifold"] = image_grid(model.decode_mean(grid).numpy(), os.path.join(out, "manifold.png"), nrow=20,
                                       title="learned manifold: E[x|z] over z = Phi^-1(quantiles)")
    return paths
