"""MNIST and Fashion-MNIST from IDX files, with a small MNIST subset bundled for offline use.

    images, labels = load_mnist("train")    # uint8 (50000, 28, 28), int64 (50000,)

Splits: 'train' = first 50000 images of the 60k training file, 'valid' = its last 10000,
'train_full' = all 60000, 'test' = the 10k test file.

Files are looked up under <data root>/mnist/ (or fashion_mnist/) by their canonical names,
gzipped or not. If none of the four MNIST files is there, plain MNIST falls back to the subset
bundled in scratchgen/data/bundled/ (built by tools/make_bundle.py) and says so once via logging.
"""
import functools
import hashlib
import io
import logging
from pathlib import Path

import numpy as np

from .cache import load_parsed
from .paths import data_root, dataset_dir, find_file, load_verified, missing_error, read_bytes

log = logging.getLogger(__name__)

IMAGES_MAGIC = 0x00000803   # unsigned bytes, 3 dims
LABELS_MAGIC = 0x00000801   # unsigned bytes, 1 dim
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}
# split -> (file, rows of that file)
SPLITS = {
    "train": ("train", slice(0, 50000)),
    "valid": ("train", slice(50000, 60000)),
    "train_full": ("train", slice(0, 60000)),
    "test": ("test", slice(0, 10000)),
}

BUNDLE_PATH = Path(__file__).parent / "bundled" / "mnist_subset.npz"
# sha256 of the bundle file's bytes, printed by tools/make_bundle.py; checked on every load.
BUNDLE_SHA256 = "ead0a332270dac341b10cb118128b530c9c5823ca682ed736be678290d165f48"


# -- IDX files --------------------------------------------------------------------------------------
def read_idx(path, magic):
    """Parse an IDX file (gzipped or not) whose magic number must be `magic`; returns a uint8
    array (a read-only view) shaped as its header says. Any mismatch with the header is a
    ValueError naming the file."""
    return parse_idx(read_bytes(path), magic, path)


def load_idx(path, magic):
    """read_idx through the parsed-data cache (cache.py): a later load skips the gunzip. Returns a
    read-only array shared by all loads of the file in this process."""
    return load_parsed(path, lambda data: parse_idx(data, magic, path), f"idx-{magic:08x}")


def parse_idx(data, magic, path="<bytes>"):
    """The IDX file content `data` (already gunzipped) as a read-only uint8 array; see read_idx."""
    found = int.from_bytes(data[:4], "big")
    if len(data) < 4 or found != magic:
        raise ValueError(f"{path}: bad IDX magic number 0x{found:08x}, expected 0x{magic:08x} "
                         "(wrong or corrupt file)")
    ndim = magic & 0xFF
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes)")
    dims = [int(d) for d in np.frombuffer(data, ">u4", ndim, 4)]
    expected = offset + int(np.prod(dims))
    if len(data) != expected:
        raise ValueError(f"{path}: {len(data)} bytes, but its header {dims} implies {expected} "
                         "(truncated or corrupt file; delete it and download again)")
    return np.frombuffer(data, np.uint8, offset=offset).reshape(dims)


def _mnist_files(folder):
    """{'train': (images_path, labels_path), ...} with None for files that are absent."""
    return {k: (find_file(folder, img), find_file(folder, lab)) for k, (img, lab, _) in FILES.items()}


def _read_pair(folder, which, name):
    img_name, lab_name, count = FILES[which]
    found = {}

    def loader(magic):
        def load(path, expected_sha256):
            found[magic] = path
            return load_parsed(path, lambda data: parse_idx(data, magic, path), f"idx-{magic:08x}", expected_sha256)
        return load

    # the first copy (uncompressed, then .gz) whose content is the published file's
    images = load_verified(folder, img_name, name, loader(IMAGES_MAGIC))
    labels = load_verified(folder, lab_name, name, loader(LABELS_MAGIC))
    img_path, lab_path = found[IMAGES_MAGIC], found[LABELS_MAGIC]
    # A file with a valid header but fewer rows is not MNIST's split; refuse rather than shrink.
    for path, arr in ((img_path, images), (lab_path, labels)):
        if len(arr) != count:
            raise ValueError(f"{path}: holds {len(arr)} items, expected {count}")
    if images.shape[1:] != (28, 28) or labels.max(initial=0) > 9:
        raise ValueError(f"{img_path}: not 28x28 digit images with labels 0-9 ({images.shape})")
    return images, labels


def first_rows(limit, *arrays):
    """The first `limit` rows of each array (all of them when limit is None or 0): how every
    `--limit-train` / `--limit-eval` shortens a data set, so a limited run sees the same examples
    as the head of a full one."""
    if limit is not None and (isinstance(limit, bool) or int(limit) < 0):
        raise ValueError(f"limit must be a number of examples >= 0 (or None for all), got {limit!r}")
    return tuple(a[:int(limit)] if limit else a for a in arrays)


def load_mnist(split, root=None, fashion=False, allow_bundled=True, limit=None):
    """(images uint8 (N, 28, 28), labels int64 (N,)) for split in train/valid/train_full/test;
    with `limit`, its first `limit` examples only.

    Plain MNIST with no files under <root>/mnist/ uses the bundled subset unless
    allow_bundled=False (then, as for Fashion-MNIST, a FileNotFoundError says how to fetch it)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    name = "fashion_mnist" if fashion else "mnist"
    folder = dataset_dir(name, root)
    which, rows = SPLITS[split]
    if not fashion and allow_bundled and not _has_any(folder):
        _warn_bundled_once(folder)
        return first_rows(limit, *load_bundled_mnist(split))
    images, labels = _read_pair(folder, which, name)
    log.info("%s %s: %d images from %s", name, split, len(images[rows]), folder)
    images, labels = first_rows(limit, images[rows], labels[rows])
    return np.array(images), labels.astype(np.int64)


def _has_any(folder):
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a folder of MNIST files: move it away (the "
                                 f"bundled subset is used when the folder is absent or empty)")
    return any(p is not None for pair in _mnist_files(folder).values() for p in pair)


_warned = False


def _warn_bundled_once(folder):
    global _warned
    if not _warned:
        log.warning("MNIST not found in %s; using the bundled subset (%s). Run "
                    "`scratchgen data download mnist` or set $SCRATCHGEN_DATA for the full set.",
                    folder, _bundle_counts())
        _warned = True


def describe_mnist_source(root=None, fashion=False):
    """One line saying which data load_mnist(..., root, fashion) would use, for logs and CLIs."""
    name = "fashion_mnist" if fashion else "mnist"
    folder = dataset_dir(name, root)
    files = _mnist_files(folder)
    missing = [FILES[k][i] for k, pair in files.items() for i, p in enumerate(pair) if p is None]
    if not missing:
        return f"{name}: {folder} (60000 train, 10000 test)"
    if not fashion and len(missing) == 4:
        return f"{name}: bundled subset ({_bundle_counts()}); no files in {folder}"
    return f"{name}: missing {', '.join(missing)} in {folder} (scratchgen data download {name})"


# -- the bundled subset -----------------------------------------------------------------------------
# Storage: a .npz (np.load-able zip) holding the nonzero-pixel mask and the nonzero pixel values,
# the values grouped by how many of the pixel's 8 neighbours are nonzero (derivable from the mask
# at load time). Grouping puts similar values together (stroke interiors are ~253, edges vary),
# which lets LZMA/bzip2 store ~15% more images in the same bytes. Lossless.
BUNDLE_SPLITS = ("train", "valid", "test")


def _neighbour_count(mask):
    p = np.pad(mask, ((0, 0), (1, 1), (1, 1))).astype(np.uint8)
    h, w = mask.shape[1:]
    return sum(p[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
               for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)


def pack_images(images):
    """uint8 (N, H, W) -> (mask bool (N, H, W), values uint8 (K,)); inverse of unpack_images."""
    mask = images > 0
    order = np.argsort(_neighbour_count(mask)[mask], kind="stable")
    return mask, images[mask][order]


def unpack_images(mask, values):
    order = np.argsort(_neighbour_count(mask)[mask], kind="stable")
    flat = np.empty_like(values)
    flat[order] = values
    images = np.zeros(mask.shape, np.uint8)
    images[mask] = flat
    return images


def _check_sha256(data, path=BUNDLE_PATH):
    digest = hashlib.sha256(data).hexdigest()
    if digest != BUNDLE_SHA256:
        raise ValueError(f"{path}: sha256 {digest} does not match the expected {BUNDLE_SHA256} "
                         "(corrupt or stale bundle; rebuild with tools/make_bundle.py)")


@functools.lru_cache(maxsize=1)
def _bundle():
    """{'train'|'valid'|'test': (images, labels)} decoded from the verified bundle file."""
    if not BUNDLE_PATH.is_file():
        raise FileNotFoundError(f"the bundled MNIST subset {BUNDLE_PATH} is missing from the install; "
                                "run `scratchgen data download mnist`")
    data = BUNDLE_PATH.read_bytes()
    _check_sha256(data)
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        images = unpack_images(z["mask"], z["values"])
        labels, counts = z["labels"].astype(np.int64), z["splits"][:, 1]
    ends = np.cumsum(counts)
    return {s: (images[e - c:e], labels[e - c:e]) for s, c, e in zip(BUNDLE_SPLITS, counts, ends)}


def _bundle_counts():
    b = _bundle()
    return ", ".join(f"{len(b[s][1])} {s}" for s in BUNDLE_SPLITS)


def load_bundled_mnist(split):
    """The bundled subset's split: 'train' = the first N training images, 'valid' = the first of
    the last 10000, 'train_full' = both, 'test' = the first test images. Returns copies."""
    b = _bundle()
    if split == "train_full":
        return tuple(np.concatenate(parts) for parts in zip(b["train"], b["valid"]))
    if split not in b:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    return b[split][0].copy(), b[split][1].copy()
