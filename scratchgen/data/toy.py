"""Toy 2-D datasets for GANs and flows. Each is fn(n, seed=None) -> (points float32 (n, 2),
labels int64 (n,)), drawn with np.random.default_rng(seed).

    eight_gaussians       8 modes on a circle of radius 2, std 0.02; label = mode
    twentyfive_gaussians  5x5 grid at {-4,-2,0,2,4}^2, std 0.05; label = mode (row-major)
    swiss_roll            2-D swiss roll (FFJORD's: sklearn's roll, noise 1, x/5); label 0
    two_moons             two interleaved half circles (FFJORD's: noise 0.1, 2x - (1, 0.2)); label = moon
    checkerboard          uniform on the dark squares of a 4x4 board on [-4, 4]^2; label 0

The Gaussian mixtures use the WGAN-GP toy code's centres and stds, before that code's final
rescaling (it divides the points by 1.414 and 2.828). Mode centres: mode_centers(name) or
eight_gaussians.centers / .std.
"""
import numpy as np


def _mixture(centers, std, n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(len(centers), size=n)
    points = centers[labels] + std * rng.standard_normal((n, 2))
    return points.astype(np.float32), labels.astype(np.int64)


def eight_gaussians(n, seed=None):
    return _mixture(eight_gaussians.centers, eight_gaussians.std, n, seed)


def twentyfive_gaussians(n, seed=None):
    return _mixture(twentyfive_gaussians.centers, twentyfive_gaussians.std, n, seed)


_angles = np.arange(8) * np.pi / 4
eight_gaussians.centers = 2.0 * np.stack([np.cos(_angles), np.sin(_angles)], axis=1)
eight_gaussians.std = 0.02
_grid = np.arange(-4.0, 5.0, 2.0)
twentyfive_gaussians.centers = np.stack(np.meshgrid(_grid, _grid, indexing="ij"), -1).reshape(-1, 2)
twentyfive_gaussians.std = 0.05


def swiss_roll(n, seed=None):
    rng = np.random.default_rng(seed)
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))
    points = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) + rng.standard_normal((n, 2))
    return (points / 5).astype(np.float32), np.zeros(n, np.int64)


def two_moons(n, seed=None):
    rng = np.random.default_rng(seed)
    labels = rng.integers(2, size=n)
    theta = np.pi * rng.random(n)
    # moon 0: upper half circle at the origin; moon 1: lower half circle shifted to (1, 0.5).
    x = np.where(labels == 0, np.cos(theta), 1 - np.cos(theta))
    y = np.where(labels == 0, np.sin(theta), 0.5 - np.sin(theta))
    points = np.stack([x, y], axis=1) + 0.1 * rng.standard_normal((n, 2))
    return (2 * points - np.array([1.0, 0.2])).astype(np.float32), labels.astype(np.int64)


def checkerboard(n, seed=None):
    rng = np.random.default_rng(seed)
    x1 = 4 * rng.random(n) - 2
    x2 = rng.random(n) - 2 * rng.integers(2, size=n) + np.floor(x1) % 2
    return (2 * np.stack([x1, x2], axis=1)).astype(np.float32), np.zeros(n, np.int64)


TOY_DATASETS = {f.__name__: f for f in
                (eight_gaussians, twentyfive_gaussians, swiss_roll, two_moons, checkerboard)}


def mode_centers(name):
    """(centers float64 (K, 2), std) of a Gaussian-mixture toy set, for mode-coverage metrics."""
    fn = TOY_DATASETS.get(name)
    if fn is None or not hasattr(fn, "centers"):
        modal = [k for k, f in TOY_DATASETS.items() if hasattr(f, "centers")]
        raise ValueError(f"{name!r} has no modes; mixtures are {modal}")
    return fn.centers.copy(), fn.std
