"""Binarized MNIST: Larochelle & Murray's fixed binarization (the NADE/MADE/PixelCNN/IWAE benchmark).

    x = load_binarized_mnist("train")   # float32 (50000, 784) of 0/1

Files: <data root>/binarized_mnist/binarized_mnist_{train,valid,test}.amat[.gz], text with one
image per line: 784 space-separated 0/1 values. There is no bundled fallback; without the files,
`binarize_dynamic` gives a (stochastically) binarized MNIST from the regular loader instead.
"""
import numpy as np

from .mnist import load_mnist
from .paths import dataset_dir, find_file, missing_error, read_bytes
from .transforms import dynamic_binarize, to_unit

ROWS = {"train": 50000, "valid": 10000, "test": 10000}
PIXELS = 784
_ZERO, _ONE, _SPACE, _TAB, _CR, _LF = b"01 \t\r\n"


def parse_amat(data, path="<bytes>"):
    """Parse .amat text of 0/1 values into float32 (rows, 784), validating every line.

    Vectorised over the raw bytes instead of np.loadtxt (~50x faster): after checking that only
    '0', '1' and whitespace occur and that no two digits touch (so every token is one digit),
    the digits in order are the values, and counting them per line checks the line lengths."""
    a = np.frombuffer(data, np.uint8)
    digit = (a == _ZERO) | (a == _ONE)
    bad = ~(digit | (a == _SPACE) | (a == _TAB) | (a == _CR) | (a == _LF))
    bad[:-1] |= digit[:-1] & digit[1:]          # a multi-digit token such as "10" or "11"
    if bad.any():
        at = int(np.argmax(bad))
        line = int(np.count_nonzero(a[:at] == _LF)) + 1
        raise ValueError(f"{path}: line {line}: unexpected {bytes(a[at:at + 2])!r}; "
                         "expected only 0/1 values separated by spaces")
    # Lines are a[start:end+1]; a last line may lack its newline.
    ends = np.flatnonzero(a == _LF)
    if len(a) and a[-1] != _LF:
        ends = np.append(ends, len(a) - 1)
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.intp)
    per_line = np.add.reduceat(digit, starts, dtype=np.int64) if len(a) else np.zeros(0, np.int64)
    wrong = np.flatnonzero((per_line != PIXELS) & (per_line != 0))   # blank lines are allowed
    if len(wrong):
        raise ValueError(f"{path}: line {wrong[0] + 1} has {per_line[wrong[0]]} values, "
                         f"expected {PIXELS}")
    return (a[digit] - _ZERO).astype(np.float32).reshape(-1, PIXELS)


def load_binarized_mnist(split, root=None):
    """float32 (N, 784) of 0/1 for split in train (50000) / valid (10000) / test (10000)."""
    if split not in ROWS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(ROWS)}")
    folder = dataset_dir("binarized_mnist", root)
    name = f"binarized_mnist_{split}.amat"
    path = find_file(folder, name)
    if path is None:
        raise missing_error(folder / name, "binarized_mnist")
    x = parse_amat(read_bytes(path), path)
    if len(x) != ROWS[split]:
        raise ValueError(f"{path}: found {len(x)} rows, expected {ROWS[split]} "
                         "(truncated or wrong file)")
    return x


def binarize_dynamic(split, root=None, seed=None):
    """MNIST (the regular loader, so the bundled subset works offline) binarized by sampling each
    pixel as Bernoulli(intensity / 255): float32 (N, 784) of 0/1. A fresh sample per seed; for
    training, re-binarize each epoch with transforms.dynamic_binarize instead."""
    images, _ = load_mnist(split, root)
    return dynamic_binarize(to_unit(images).reshape(len(images), PIXELS), np.random.default_rng(seed))
