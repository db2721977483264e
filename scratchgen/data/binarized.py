"""Binarized MNIST: Larochelle & Murray's fixed binarization (the NADE/MADE/PixelCNN/IWAE benchmark).

    x = load_binarized_mnist("train")   # float32 (50000, 784) of 0/1

Files: <data root>/binarized_mnist/binarized_mnist_{train,valid,test}.amat[.gz], text with one
image per line: 784 space-separated 0/1 values. There is no bundled fallback; without the files,
`binarize_dynamic` gives a (stochastically) binarized MNIST from the regular loader instead.
"""
import numpy as np

from .amat import PIXELS, parse_amat_values
from .cache import load_parsed
from .mnist import load_mnist
from .paths import dataset_dir, find_file, missing_error
from .transforms import dynamic_binarize, to_unit

ROWS = {"train": 50000, "valid": 10000, "test": 10000}
CACHE_TAG = "amat-packbits-1"     # the cached form: np.packbits of each row, (rows, 98) uint8


def parse_amat(data, path="<bytes>"):
    """Parse .amat text of 0/1 values into float32 (rows, 784), validating every line (see amat.py)."""
    return parse_amat_values(data, path).astype(np.float32)


def load_binarized_mnist(split, root=None, limit=None):
    """float32 (N, 784) of 0/1 for split in train (50000) / valid (10000) / test (10000); with
    `limit`, only the first `limit` rows (the whole file is still validated once).

    The file is parsed once and then served from the parsed-data cache (cache.py), bit-packed at
    98 bytes an image (the text takes 1568), so a later load hashes the source, reads the packed
    rows and unpacks only the rows it returns."""
    if split not in ROWS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(ROWS)}")
    folder = dataset_dir("binarized_mnist", root)
    name = f"binarized_mnist_{split}.amat"
    path = find_file(folder, name)
    if path is None:
        raise missing_error(folder / name, "binarized_mnist")

    def parse(text):        # a file of the wrong length is an error, so it is never cached
        return _check_rows(np.packbits(parse_amat_values(text, path), axis=1), split, path)

    bits = _check_rows(load_parsed(path, parse, CACHE_TAG), split, path)
    bits = bits[:limit] if limit else bits
    return np.unpackbits(bits, axis=1, count=PIXELS).astype(np.float32)


def _check_rows(bits, split, path):
    if len(bits) != ROWS[split]:
        raise ValueError(f"{path}: found {len(bits)} rows, expected {ROWS[split]} "
                         "(truncated or wrong file)")
    return bits


def binarize_dynamic(split, root=None, seed=None):
    """MNIST (the regular loader, so the bundled subset works offline) binarized by sampling each
    pixel as Bernoulli(intensity / 255): float32 (N, 784) of 0/1. A fresh sample per seed; for
    training, re-binarize each epoch with transforms.dynamic_binarize instead."""
    images, _ = load_mnist(split, root)
    return dynamic_binarize(to_unit(images).reshape(len(images), PIXELS), np.random.default_rng(seed))
