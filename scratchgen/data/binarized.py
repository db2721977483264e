"""Binarized MNIST: Larochelle & Murray's fixed binarization (the NADE/MADE/PixelCNN/IWAE benchmark).

    x = load_binarized_mnist("train")   # float32 (50000, 784) of 0/1

Files: <data root>/binarized_mnist/binarized_mnist_{train,valid,test}.amat[.gz], text with one
image per line: 784 space-separated 0/1 values.

Without the files, `load_binarized` (what the models use) falls back, once and out loud, to one
fixed Bernoulli draw of the MNIST that `load_mnist` finds (the full set, or the bundled subset
offline): every binarized-MNIST model then trains on a fresh install, and its run records which
data it used (`describe_binarized_mnist_source`). Its likelihoods are not comparable with
published ones, which are on Larochelle's binarization.
"""
import logging

import numpy as np

from .amat import PIXELS, parse_amat_values
from .cache import load_parsed
from .mnist import first_rows, load_mnist
from .paths import dataset_dir, find_file, load_verified
from .transforms import dynamic_binarize, to_unit

ROWS = {"train": 50000, "valid": 10000, "test": 10000}
FALLBACK_SEED = 784  # the fallback's fixed binarization: one draw per split from [seed, split index]
log = logging.getLogger(__name__)
_announced = set()
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

    def load(path, expected_sha256):
        def parse(text):    # a file of the wrong length is an error, so it is never cached
            return _check_rows(np.packbits(parse_amat_values(text, path), axis=1), split, path)
        return _check_rows(load_parsed(path, parse, CACHE_TAG, expected_sha256), split, path)

    # the first copy (.amat, then .amat.gz) whose content is the published file's
    bits = load_verified(folder, f"binarized_mnist_{split}.amat", "binarized_mnist", load)
    bits, = first_rows(limit, bits)
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


def has_binarized_mnist(root=None):
    """Whether Larochelle's three files are under <root>/binarized_mnist/."""
    folder = dataset_dir("binarized_mnist", root)
    return all(find_file(folder, f"binarized_mnist_{s}.amat") is not None for s in ROWS)


def load_binarized(split, root=None, limit=None):
    """Larochelle's binarized MNIST where its files are (`load_binarized_mnist`); otherwise the
    fallback described at the top, announced once per process."""
    if has_binarized_mnist(root):
        return load_binarized_mnist(split, root, limit)
    if split not in ROWS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(ROWS)}")
    folder = dataset_dir("binarized_mnist", root)
    if folder not in _announced:
        _announced.add(folder)
        log.warning("binarized MNIST not found in %s; using %s. Fetch Larochelle's with "
                    "`scratchgen data download binarized_mnist`.", folder, _fallback_words(root))
    images, _ = load_mnist(split, root, limit=limit)
    unit = to_unit(images).reshape(len(images), PIXELS)
    draw = np.random.default_rng([FALLBACK_SEED, sorted(ROWS).index(split)])
    return (draw.random(unit.shape) < unit).astype(np.float32)


def _fallback_words(root=None):
    from .mnist import describe_mnist_source
    return f"{describe_mnist_source(root)}, binarized once with a fixed seed (not Larochelle's split)"


def describe_binarized_mnist_source(root=None):
    """One line saying which binarized MNIST `load_binarized` uses (the CLI prints and records it)."""
    from .paths import data_root
    if has_binarized_mnist(root):
        return f"binarized MNIST (Larochelle's fixed binarization) from {data_root(root)}"
    return f"fallback: {_fallback_words(root)}; no binarized MNIST in {dataset_dir('binarized_mnist', root)}"
