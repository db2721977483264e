"""Pixel transforms for generative models: NumPy in, float32 NumPy out.

    to_unit(x)            x / 255                               uint8 -> [0, 1]
    to_symmetric(x)       x / 127.5 - 1                         uint8 -> [-1, 1]
    dequantize(x, rng)    (x + u) / 256,  u ~ U[0, 1)           uint8 -> [0, 1)
    dynamic_binarize(p, rng)   b ~ Bernoulli(p)                 [0, 1] -> {0, 1}
    logit_transform(x, alpha)  y = logit(alpha + (1 - 2 alpha) x), with log|dy/dx| per example
    logit_inverse(y, alpha)    x = (sigmoid(y) - alpha) / (1 - 2 alpha)
    random_affine(x, rng)      each image rotated, scaled and shifted at random (augmentation)

`rng` is a np.random.Generator (or a seed for np.random.default_rng).
"""
import numpy as np

_BELOW_ONE = np.nextafter(np.float32(1), np.float32(0))


def to_unit(x):
    return np.asarray(x, np.float32) / np.float32(255)


def to_symmetric(x):
    # (2x - 255) / 255 == x / 127.5 - 1, with one rounding instead of two (exact 0 stays exact).
    return (np.float32(2) * np.asarray(x, np.float32) - np.float32(255)) / np.float32(255)


def dequantize(x, rng):
    """Uniform dequantization of 8-bit data: (x + u) / 256 with u ~ U[0, 1), so a continuous
    density on [0, 1)^D gives a lower bound on the discrete log-likelihood (minus D log 256)."""
    rng = np.random.default_rng(rng)
    y = (np.asarray(x, np.float64) + rng.random(np.shape(x))) / 256.0
    # float32 rounding can turn 255.99999... / 256 into exactly 1.0; keep the interval half-open.
    return np.minimum(y.astype(np.float32), _BELOW_ONE)


def dynamic_binarize(p, rng):
    """Sample each pixel as Bernoulli(p) (p = intensities in [0, 1]), a fresh draw per call."""
    rng = np.random.default_rng(rng)
    p = np.asarray(p)
    return (rng.random(p.shape) < p).astype(np.float32)


def logit_transform(x, alpha=0.05):
    """RealNVP's pre-processing: s = alpha + (1 - 2 alpha) x, y = log s - log(1 - s).

    Returns (y float32 same shape as x, logdet float32 (N,)), where
    logdet = sum over all but the first axis of log|dy/dx| = log(1 - 2 alpha) - log s - log(1 - s).
    Add logdet to a flow's log-likelihood of y to get the density of x."""
    x = np.asarray(x, np.float64)
    s = alpha + (1 - 2 * alpha) * x
    y = np.log(s) - np.log1p(-s)
    log_jac = np.log1p(-2 * alpha) - np.log(s) - np.log1p(-s)
    logdet = log_jac.reshape(len(x), -1).sum(axis=1)
    return y.astype(np.float32), logdet.astype(np.float32)


def logit_inverse(y, alpha=0.05):
    """Inverse of logit_transform: x = (sigmoid(y) - alpha) / (1 - 2 alpha), float32.
    (Its log-determinant is minus the forward one.)"""
    sigmoid = 0.5 * (1 + np.tanh(0.5 * np.asarray(y, np.float64)))   # overflow-free sigmoid
    return ((sigmoid - alpha) / (1 - 2 * alpha)).astype(np.float32)


def random_affine(x, rng, max_rotation=12.0, max_scale=0.1, max_shift=2.5, side=28):
    """Randomly rotate, scale and shift each image of x (N, side*side) in [0, 1]: bilinear
    resampling about the image centre, zeros outside. Returns float32 (N, side*side)."""
    n, w = len(x), side + 3  # padded width: 1 zero column before, 2 after
    padded = np.pad(np.asarray(x, np.float32).reshape(n, side, side), ((0, 0), (1, 2), (1, 2))).reshape(-1)
    angle = np.deg2rad(rng.uniform(-max_rotation, max_rotation, n))
    scale = 1 + rng.uniform(-max_scale, max_scale, n)
    shift = rng.uniform(-max_shift, max_shift, (n, 2))
    cos = (np.cos(angle) / scale).astype(np.float32)[:, None, None]
    sin = (np.sin(angle) / scale).astype(np.float32)[:, None, None]
    grid = np.arange(side, dtype=np.float32) - np.float32((side - 1) / 2)
    dy = grid[None, :, None] - shift[:, 0, None, None].astype(np.float32)  # output pixel -> source:
    dx = grid[None, None, :] - shift[:, 1, None, None].astype(np.float32)  # undo shift, then rotation
    centre = np.float32((side - 1) / 2 + 1)  # +1: the padding
    sy = np.clip(cos * dy - sin * dx + centre, 0, side + 1)
    sx = np.clip(sin * dy + cos * dx + centre, 0, side + 1)
    y0, x0 = np.minimum(np.floor(sy), side), np.minimum(np.floor(sx), side)
    wy, wx = sy - y0, sx - x0  # float32 weights
    top = (np.arange(n) * (w * w))[:, None, None] + (y0 * w + x0).astype(np.int64)  # top-left neighbour
    row0 = padded[top] * (1 - wx) + padded[top + 1] * wx
    row1 = padded[top + w] * (1 - wx) + padded[top + w + 1] * wx
    return (row0 * (1 - wy) + row1 * wy).reshape(n, side * side)
