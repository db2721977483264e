"""Plots: each helper writes a real PNG with non-trivial content and returns its path."""
import json

import matplotlib
import numpy as np
import pytest

import scratchgen as sg
from scratchgen import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(path, min_std=0.02):
    """A PNG file that is not one flat colour; returns the image array."""
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 20 and img.shape[1] > 20
    assert img[..., :3].std() > min_std, "the picture is (almost) blank"
    return img


def test_backend_is_agg():
    assert matplotlib.get_backend().lower() == "agg"


def test_image_grid(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((20, 28, 28)).astype(np.float32)
    out = plots.image_grid(images, tmp_path / "grid.png", nrow=5)
    assert out == str(tmp_path / "grid.png")
    img = _check_png(out)
    assert img.shape[0] < img.shape[1]  # 4 rows of 5: wider than tall


def test_image_grid_accepts_tensors_flat_rows_uint8_and_titles(tmp_path):
    flat = sg.tensor(np.linspace(0, 1, 6 * 784, dtype=np.float32).reshape(6, 784))
    _check_png(plots.image_grid(flat, tmp_path / "flat.png", nrow=3))
    u8 = (np.arange(4 * 28 * 28) % 256).astype(np.uint8).reshape(4, 28, 28)
    _check_png(plots.image_grid(u8, tmp_path / "u8.png", nrow=2, titles=["1", "2", "!3 (4)", "5"]))


def test_curves_from_jsonl_and_records(tmp_path):
    records = [{"epoch": e, "train_loss": 1.0 / e, "valid_loss": 1.2 / e, "valid_acc": 1 - 0.5 / e,
                "time_s": 1.0} for e in range(1, 6)]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"epoch": 6, "trunc')
    _check_png(plots.curves(path, tmp_path / "c1.png"))
    _check_png(plots.curves(records, tmp_path / "c2.png", keys=["train_loss"]))


def test_scatter_2d(tmp_path):
    rng = np.random.default_rng(1)
    pts = np.concatenate([rng.normal(-2, 0.5, (100, 2)), rng.normal(2, 0.5, (100, 2))])
    labels = np.repeat([0, 1], 100)
    _check_png(plots.scatter_2d(pts, labels, tmp_path / "s.png"))
    _check_png(plots.scatter_2d(sg.tensor(pts), None, tmp_path / "s2.png"))
    with pytest.raises(ValueError):
        plots.scatter_2d(np.zeros((5, 3)), None, tmp_path / "bad.png")


def test_interpolation_strip(tmp_path):
    a, b = np.zeros((28, 28)), np.ones((28, 28))
    rows = [np.stack([a * (1 - t) + b * t for t in np.linspace(0, 1, 8)]) for _ in range(3)]
    _check_png(plots.interpolation_strip(rows, tmp_path / "i.png", row_labels=["a", "b", "c"]))


def test_density_2d(tmp_path):
    def log_density(xy):
        return -0.5 * (xy ** 2).sum(axis=1)

    pts = np.random.default_rng(2).normal(size=(200, 2))
    _check_png(plots.density_2d(log_density, tmp_path / "d.png", (-3, 3), (-3, 3), points=pts, resolution=60))


def test_figures_are_closed(tmp_path):
    import matplotlib.pyplot as plt
    before = len(plt.get_fignums())
    for i in range(3):
        plots.image_grid(np.random.rand(4, 8, 8), tmp_path / f"g{i}.png", nrow=2)
    assert len(plt.get_fignums()) == before


def test_combine_stacks_pictures(tmp_path):
    a = plots.image_grid(np.random.default_rng(3).random((8, 28, 28)), tmp_path / "a.png", nrow=4)
    b = plots.curves([{"epoch": e, "train_loss": 1 / e} for e in range(1, 4)], tmp_path / "b.png")
    out = plots.combine([a, b], tmp_path / "ab.png", title="run", captions=["samples", "curves"])
    img = _check_png(out)
    assert img.shape[0] > matplotlib.image.imread(b).shape[0]
