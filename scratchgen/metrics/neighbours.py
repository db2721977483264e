"""Nearest neighbours in pixel space, for checking that samples are not copies of training images.

Distances come from matrix products, ||a - b||^2 = ||a||^2 - 2 a.b + ||b||^2, one block of
queries at a time (a (block, M) matrix), so 50,000 training digits are searched in seconds.
"""
import numpy as np


def _rows(x):
    x = np.asarray(x)
    if x.dtype.kind not in "f":
        x = x.astype(np.float32)
    return x.reshape(len(x), -1)


def squared_distances(a, b, b_sq=None):
    """(len(a), len(b)) squared Euclidean distances between rows (images are flattened), >= 0.
    Computed in the inputs' precision (float32 inputs: float32 matmul)."""
    a, b = _rows(a), _rows(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"squared_distances: {a.shape[1]} and {b.shape[1]} features")
    dtype = np.result_type(a.dtype, b.dtype)
    a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)
    b_sq = (b * b).sum(axis=1) if b_sq is None else b_sq
    d2 = (a * a).sum(axis=1)[:, None] - 2 * (a @ b.T) + b_sq[None, :]
    return np.maximum(d2, 0, out=d2)


def nearest_neighbours(queries, reference, k=1, batch_size=512):
    """(indices (Q, k), distances (Q, k)): the k rows of `reference` closest to each query
    (Euclidean), nearest first."""
    q, ref = _rows(queries), _rows(reference)
    k = int(k)
    if not 1 <= k <= len(ref):
        raise ValueError(f"nearest_neighbours: k must be in [1, {len(ref)}], got {k}")
    ref_sq = (ref * ref).sum(axis=1)
    idx = np.empty((len(q), k), np.int64)
    dist = np.empty((len(q), k), np.float64)
    for start in range(0, len(q), batch_size):
        d2 = squared_distances(q[start:start + batch_size], ref, ref_sq)
        part = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < len(ref) else np.tile(np.arange(len(ref)), (len(d2), 1))
        rows = np.arange(len(d2))[:, None]
        order = np.argsort(d2[rows, part], axis=1, kind="stable")
        idx[start:start + len(d2)] = part[rows, order]
        dist[start:start + len(d2)] = np.sqrt(d2[rows, idx[start:start + len(d2)]])
    return idx, dist


def nearest_neighbour_grid(samples, train, path, k=5, title=None, shape=(28, 28)):
    """A picture with one row per sample: the sample, then its k nearest training images,
    each captioned with its distance. Returns the PNG path."""
    from ..plots import image_grid
    s, t = _rows(samples), _rows(train)
    idx, dist = nearest_neighbours(s, t, k)
    images, titles = [], []
    for i in range(len(s)):
        images.append(s[i])
        titles.append("sample")
        for j in range(k):
            images.append(t[idx[i, j]])
            titles.append(f"{dist[i, j]:.2f}")
    images = np.stack(images).reshape((-1,) + tuple(shape))
    return image_grid(images, path, nrow=k + 1, titles=titles, title=title)
