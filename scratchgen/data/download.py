"""Fetch datasets from their public mirrors into <data root>/<name>/, verified.

    download("mnist")              # also "fashion_mnist", "binarized_mnist"
    list_datasets()                # [(name, folder | 'missing' | 'incomplete: ...', bundled?)]

Each file goes to a temporary name in the target folder, is checked, and only then renamed into
place (atomic), so an interrupted or corrupted download never looks like data.
Checks: MNIST and binarized MNIST by the sha256 of their *uncompressed* content (so a file
re-gzipped elsewhere still verifies); Fashion-MNIST by the published md5 of its .gz files.
"""
import hashlib
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from .mnist import BUNDLE_PATH
from .paths import dataset_dir, find_file, read_bytes

MIRRORS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "binarized_mnist": "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",
}
# name -> [(file name on the mirror, (check kind, hex digest))]
FILES = {
    "mnist": [
        ("train-images-idx3-ubyte.gz", ("sha256", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db")),
        ("train-labels-idx1-ubyte.gz", ("sha256", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5")),
        ("t10k-images-idx3-ubyte.gz", ("sha256", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7")),
        ("t10k-labels-idx1-ubyte.gz", ("sha256", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2")),
    ],
    "fashion_mnist": [
        ("train-images-idx3-ubyte.gz", ("md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d")),
        ("train-labels-idx1-ubyte.gz", ("md5", "25c81989df183df01b3e8a0aad5dffbe")),
        ("t10k-images-idx3-ubyte.gz", ("md5", "bef4ecab320f06d8554ea6380940ec79")),
        ("t10k-labels-idx1-ubyte.gz", ("md5", "bb300cfdad3c16e7a12a480ee83cd310")),
    ],
    "binarized_mnist": [
        ("binarized_mnist_train.amat", ("sha256", "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d")),
        ("binarized_mnist_valid.amat", ("sha256", "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2")),
        ("binarized_mnist_test.amat", ("sha256", "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c")),
    ],
}


def verify(path, check):
    """True if the file passes check = ('sha256', hex of the uncompressed content) or
    ('md5', hex of the file's bytes). A corrupt gzip fails."""
    kind, expected = check
    try:
        data = read_bytes(path) if kind == "sha256" else Path(path).read_bytes()
    except ValueError:
        return False
    return hashlib.new(kind, data).hexdigest() == expected


def fetch(url, dest, check, progress=True):
    """Download url to dest via a temporary file in dest's folder; rename only if it verifies."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = _progress_bar(total, dest.name, progress)
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
            bar.close()
        if not verify(tmp, check):
            raise ValueError(f"{url}: {check[0]} check failed (expected {check[1]}); not saved")
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return dest


class _Lines:
    """Download progress for a log: a plain line every 10 s (tqdm's carriage returns are for terminals)."""

    def __init__(self, total, desc, enabled):
        self.total, self.desc, self.enabled, self.done = total, desc, enabled, 0
        self.start = self.last = time.perf_counter()

    def update(self, n):
        self.done += n
        now = time.perf_counter()
        if self.enabled and now - self.last >= 10:
            self.last = now
            share = f" of {self.total / 2**20:.1f}" if self.total else ""
            print(f"{self.desc}: {self.done / 2**20:.1f}{share} MiB, {now - self.start:.0f}s", file=sys.stderr, flush=True)

    def close(self):
        pass


def _progress_bar(total, desc, enabled):
    if not (enabled and sys.stderr.isatty()):
        return _Lines(total, desc, enabled)
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024)


def download(name, root=None, mirror=None, progress=True):
    """Fetch dataset `name` into <root>/<name>/ (files already there and verified are kept).
    `mirror` overrides the base URL. Returns the folder as a string."""
    if name not in FILES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(FILES)}")
    folder = dataset_dir(name, root)
    base = mirror or MIRRORS[name]
    for filename, check in FILES[name]:
        existing = [p for p in dict.fromkeys((folder / filename, folder / filename.removesuffix(".gz"),
                                              folder / (filename + ".gz"))) if p.is_file()]
        good = [p for p in existing if verify(p, check)]
        for p in existing:
            if p not in good:  # a damaged copy would shadow the good one: move it aside, and say so
                aside = p.with_name(p.name + ".corrupt")
                os.replace(p, aside)
                print(f"{p} failed its {check[0]} check; moved to {aside}")
        if good:
            continue
        fetch(base.rstrip("/") + "/" + filename, folder / filename, check, progress)
    return str(folder)


def list_datasets(root=None):
    """[(name, where, bundled)]: where is the folder if all files are present, 'missing' if none
    is, else 'incomplete: <folder> lacks <files>'; bundled says whether a packaged subset exists."""
    rows = []
    for name, files in FILES.items():
        folder = dataset_dir(name, root)
        wanted = [f.removesuffix(".gz") for f, _ in files]
        absent = [f for f in wanted if find_file(folder, f) is None]
        where = ("missing" if len(absent) == len(wanted) else
                 f"incomplete: {folder} lacks {', '.join(absent)}" if absent else str(folder))
        rows.append((name, where, name == "mnist" and BUNDLE_PATH.is_file()))
    return rows
