"""Headless plotting helpers (matplotlib, Agg backend): every function writes a PNG and returns its path.

    image_grid(images, path, nrow)                 a grid of images (N,H,W), (N,H,W,C) or (N,784)
    curves(metrics, path, keys)                    training curves from a metrics.jsonl file or records
    scatter_2d(points, labels, path)               2-D points, coloured by label
    interpolation_strip(rows, path)                rows of images, e.g. latent interpolations
    density_2d(fn, path, xlim, ylim, points)       contours of fn(xy) over a grid, optional scatter overlay
    combine(pngs, path, title)                     several PNGs stacked into one picture (e.g. for a README)

Inputs may be NumPy arrays, scratchgen Tensors or lists. Figures are always closed.
"""
import json
import math
import os

import matplotlib

matplotlib.use("Agg")  # headless: must come before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["image_grid", "curves", "scatter_2d", "interpolation_strip", "density_2d", "combine", "read_jsonl"]


def _array(x):
    """A NumPy array from an array, a Tensor (on any device) or a list."""
    if hasattr(x, "detach") and hasattr(x, "data") and not isinstance(x, np.ndarray):
        x = x.detach()
        return x.numpy() if hasattr(x, "numpy") else np.asarray(x.data)
    return np.asarray(x)


def _prepare_path(path):
    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    return path


def _save(fig, path, dpi=100):
    path = _prepare_path(path)
    try:
        fig.savefig(path, dpi=dpi, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
    return path


def _as_images(images):
    """(N,H,W) or (N,H,W,C) floats; flat (N,D) rows with a square D become (N,s,s)."""
    a = _array(images)
    if a.ndim == 2:
        side = math.isqrt(a.shape[1])
        if side * side != a.shape[1]:
            raise ValueError(f"image_grid: flat images need a square number of pixels, got {a.shape[1]}")
        a = a.reshape(len(a), side, side)
    if a.ndim == 4 and a.shape[1] in (1, 3) and a.shape[-1] not in (1, 3):  # NCHW -> NHWC
        a = a.transpose(0, 2, 3, 1)
    if a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (3, 4):
        raise ValueError(f"image_grid: expected images of shape (N,H,W), (N,H,W,C) or (N,D), got {a.shape}")
    a = a.astype(np.float64)
    if a.size and (a.min() < 0 or a.max() > 1):
        lo, hi = (0.0, 255.0) if a.min() >= 0 and a.max() <= 255 and a.max() > 1 else (a.min(), a.max())
        a = (a - lo) / max(hi - lo, 1e-12)
    return a


def _tile(images, nrow, pad=2, pad_value=0.5, top=0):
    """Tile (N,H,W[,C]) images into one array, `nrow` images per row (torchvision's make_grid);
    `top` extra pixels above each row leave room for captions."""
    n, h, w = images.shape[:3]
    ncol = max(1, min(nrow, n))
    nrows = math.ceil(n / ncol)
    shape = (nrows * (h + pad + top) + pad, ncol * (w + pad) + pad) + images.shape[3:]
    grid = np.full(shape, pad_value, dtype=np.float64)
    for i, img in enumerate(images):
        r, c = divmod(i, ncol)
        y, x = pad + top + r * (h + pad + top), pad + c * (w + pad)
        grid[y:y + h, x:x + w] = img
    return grid


def image_grid(images, path, nrow=8, titles=None, title=None, cmap="gray", scale=1.0):
    """Save images as a grid with `nrow` images per row. `titles` (one string per image) puts a
    caption over each image; a caption starting with '!' is drawn in red (e.g. a wrong label)."""
    imgs = _as_images(images)
    n = len(imgs)
    if n == 0:
        raise ValueError("image_grid: no images to draw")
    if titles is not None and len(titles) != n:
        raise ValueError(f"image_grid: {n} images but {len(titles)} titles")
    h, w = imgs.shape[1:3]
    ncol = max(1, min(nrow, n))
    top = max(6, h // 3) if titles is not None else 0
    grid = _tile(imgs, ncol, top=top, pad_value=1.0 if titles is not None else 0.5)
    gh, gw = grid.shape[:2]
    inch = 0.9 * scale / 28  # inches per pixel: a 28-pixel digit is 0.9 inch wide
    head = 0.35 if title else 0.0
    fig = plt.figure(figsize=(max(2.0, gw * inch), max(1.0, gh * inch) + head))
    ax = fig.add_axes([0, 0, 1, 1 - head / (max(1.0, gh * inch) + head)])
    ax.imshow(grid, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    for i, t in enumerate(titles or []):
        r, c = divmod(i, ncol)
        text = str(t)
        red = text.startswith("!")
        ax.text(2 + c * (w + 2) + w / 2, 2 + r * (h + 2 + top) + top - 1, text.lstrip("!"),
                ha="center", va="bottom", fontsize=8 * scale, color="red" if red else "black")
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.05 / (max(1.0, gh * inch) + head))
    return _save(fig, path)


def read_jsonl(path):
    """Records (dicts) from a JSON-lines file; blank or truncated trailing lines are skipped."""
    records = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def _numeric_keys(records, x):
    keys = []
    for r in records:
        for k, v in r.items():
            if k != x and k not in keys and isinstance(v, (int, float)) and not isinstance(v, bool):
                keys.append(k)
    return keys


def curves(metrics, path, keys=None, x="epoch", title=None):
    """Plot metrics against `x` (default 'epoch'). `metrics` is a JSONL path or a list of dicts.

    `keys` names the metrics to draw; by default the loss-like and accuracy-like ones.
    Metrics sharing a suffix (train_loss / valid_loss) share a panel."""
    records = read_jsonl(metrics) if isinstance(metrics, (str, os.PathLike)) else list(metrics)
    if keys is None:
        keys = [k for k in _numeric_keys(records, x)
                if any(s in k for s in ("loss", "acc", "nll", "elbo", "bpd", "error"))]
        keys = keys or [k for k in _numeric_keys(records, x) if k not in ("time_s", "examples_per_s", "lr")]
    if isinstance(keys, str):
        keys = [keys]
    panels = {}
    for k in keys:
        panels.setdefault(k.split("_", 1)[-1] if "_" in k else k, []).append(k)
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.2), squeeze=False)
    for ax, (name, members) in zip(axes[0], panels.items()):
        for k in members:
            pts = [(r.get(x, i + 1), r[k]) for i, r in enumerate(records)
                   if isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o" if len(pts) < 30 else None, markersize=3, label=k)
        ax.set_xlabel(x)
        ax.set_title(name)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if not keys:
        axes[0][0].text(0.5, 0.5, "no metrics", ha="center", va="center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def scatter_2d(points, labels=None, path="scatter.png", title=None, s=4, alpha=0.7, cmap="tab10"):
    """Scatter plot of (N, 2) points, coloured by integer `labels` (with a legend) if given."""
    pts = _array(points)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"scatter_2d: points must have shape (N, 2), got {pts.shape}")
    fig, ax = plt.subplots(figsize=(5, 5))
    if labels is None:
        ax.scatter(pts[:, 0], pts[:, 1], s=s, alpha=alpha)
    else:
        lab = _array(labels).reshape(-1)
        if len(lab) != len(pts):
            raise ValueError(f"scatter_2d: {len(pts)} points but {len(lab)} labels")
        colors = plt.get_cmap(cmap)
        for i, value in enumerate(np.unique(lab)):
            m = lab == value
            ax.scatter(pts[m, 0], pts[m, 1], s=s, alpha=alpha, color=colors(i % colors.N), label=str(value))
        if len(np.unique(lab)) <= 20:
            ax.legend(markerscale=3, fontsize=8, loc="best")
    ax.set_aspect("equal", adjustable="datalim")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def interpolation_strip(rows, path, row_labels=None, title=None):
    """Draw each row of images (a list of (K,H,W) arrays or one (R,K,H,W) array) as one strip."""
    if not isinstance(rows, (list, tuple)):
        rows = list(_array(rows))
    rows = [_as_images(r) for r in rows]
    if not rows:
        raise ValueError("interpolation_strip: no rows")
    k = max(len(r) for r in rows)
    h, w = rows[0].shape[1:3]
    blank = np.ones((1,) + rows[0].shape[1:])
    padded = [np.concatenate([r, np.repeat(blank, k - len(r), 0)]) if len(r) < k else r for r in rows]
    grid = _tile(np.concatenate(padded), k)
    fig = plt.figure(figsize=(max(2.0, grid.shape[1] / w * 0.9), max(1.0, grid.shape[0] / h * 0.9)))
    ax = fig.add_axes([0.08 if row_labels else 0, 0, 0.92 if row_labels else 1, 0.9 if title else 1])
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([2 + (h + 2) * i + h / 2 for i in range(len(rows))] if row_labels else [])
    if row_labels:
        ax.set_yticklabels([str(s) for s in row_labels], fontsize=8)
        ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def density_2d(fn, path, xlim=(-4, 4), ylim=(-4, 4), points=None, resolution=200, levels=30,
               title=None, log=False):
    """Filled contours of fn over a grid; fn maps an (M, 2) array of points to M values
    (a NumPy array, Tensor or list), e.g. a model's density or log-density. `points` (N, 2)
    are scattered on top (e.g. data or samples)."""
    xs = np.linspace(xlim[0], xlim[1], resolution)
    ys = np.linspace(ylim[0], ylim[1], resolution)
    gx, gy = np.meshgrid(xs, ys)
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    values = _array(fn(grid)).astype(np.float64).reshape(resolution, resolution)
    if log:
        values = np.log(np.clip(values, 1e-300, None))
    values = np.where(np.isfinite(values), values, np.nanmin(np.where(np.isfinite(values), values, np.nan)))
    fig, ax = plt.subplots(figsize=(5, 5))
    cs = ax.contourf(gx, gy, values, levels=levels, cmap="viridis")
    fig.colorbar(cs, ax=ax, shrink=0.8)
    if points is not None:
        p = _array(points)
        ax.scatter(p[:, 0], p[:, 1], s=3, c="white", alpha=0.6, edgecolors="none")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def combine(pngs, path, title=None, captions=None):
    """Stack PNG files vertically into one picture (each scaled to the same width)."""
    images = [plt.imread(os.fspath(p)) for p in pngs]
    if not images:
        raise ValueError("combine: no pictures")
    width = max(im.shape[1] for im in images)
    heights = [im.shape[0] * width / im.shape[1] for im in images]
    dpi = 100
    cap = 0.3 if captions else 0.0
    head = 0.4 if title else 0.0
    total = sum(h / dpi + cap for h in heights) + head
    fig = plt.figure(figsize=(width / dpi, total), dpi=dpi)
    top = 1 - head / total
    for i, (im, h) in enumerate(zip(images, heights)):
        frac = (h / dpi) / total
        ax = fig.add_axes([0, top - frac - cap / total, 1, frac])
        ax.imshow(im, interpolation="lanczos" if im.shape[1] != width else "nearest")
        ax.axis("off")
        if captions:
            fig.text(0.01, top - cap / total * 0.5, captions[i], fontsize=11, va="center", ha="left")
        top -= frac + cap / total
    if title:
        fig.text(0.5, 1 - head / total * 0.5, title, fontsize=13, ha="center", va="center", weight="bold")
    return _save(fig, path, dpi=dpi)
