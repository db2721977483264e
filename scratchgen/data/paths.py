"""Where datasets live on disk.

The data root is, in order: the `root` argument, $SCRATCHGEN_DATA, ~/.cache/scratchgen.
Under it each dataset has its own folder: mnist/, fashion_mnist/, binarized_mnist/.
Derived files (parsed-data caches) go under the user cache, $XDG_CACHE_HOME/scratchgen else
~/.cache/scratchgen, which is separate from the data root so that a read-only data folder works.
"""
import gzip
import os
import zlib
from pathlib import Path

DATA_ENV = "SCRATCHGEN_DATA"
DEFAULT_ROOT = Path("$XDG_CACHE_HOME/scratchgen, else ~/.cache/scratchgen")  # how errors name the default


def data_root(root=None):
    """The data root as an absolute Path (it need not exist)."""
    root = root or os.environ.get(DATA_ENV) or cache_root()
    return Path(os.path.abspath(os.path.expanduser(root)))   # normalized: "a/../b" and "b" are one root


def cache_root():
    """The user cache for derived files: $XDG_CACHE_HOME/scratchgen, else ~/.cache/scratchgen."""
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return (Path(base) / "scratchgen").expanduser().absolute()


def dataset_dir(name, root=None):
    return data_root(root) / name


def find_file(folder, filename):
    """`folder/filename` or `folder/filename.gz`, whichever exists (uncompressed first), else None."""
    for candidate in (Path(folder) / filename, Path(folder) / (filename + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def candidates(folder, filename):
    """The copies of a data file that exist: `filename`, then `filename.gz`."""
    return [c for c in (Path(folder) / filename, Path(folder) / (filename + ".gz")) if c.is_file()]


def published_sha256(dataset, filename):
    """The published sha256 of the file's uncompressed content, where one is known, else None."""
    from .download import FILES
    for name, (kind, digest) in FILES.get(dataset, []):
        if kind == "sha256" and name.removesuffix(".gz") == filename:
            return digest
    return None


def load_verified(folder, filename, dataset, load):
    """load(path, expected_sha256) on the first copy of the file whose content verifies; a copy
    that fails is skipped with a warning naming it, and if none passes the error names each."""
    import logging
    from .cache import ChecksumError
    found = candidates(folder, filename)
    if not found:
        raise missing_error(Path(folder) / filename, dataset)
    expected = published_sha256(dataset, filename)
    failures = []
    for path in found:
        try:
            return load(path, expected)
        except (ChecksumError, ValueError) as e:
            failures.append(str(e))
            if path is not found[-1]:
                logging.getLogger(__name__).warning("%s; trying %s", e, found[found.index(path) + 1])
    raise ValueError("; ".join(failures) + f". Delete the damaged file(s) and run `scratchgen data download {dataset}`")


def missing_error(path, dataset):
    """The FileNotFoundError for a missing dataset file: what was searched and how to fix it."""
    return FileNotFoundError(
        f"{path}[.gz] not found (data root from the root argument, ${DATA_ENV}, or "
        f"{DEFAULT_ROOT}; ${DATA_ENV}={os.environ.get(DATA_ENV, '<unset>')}). "
        f"Fetch it with `scratchgen data download {dataset}` or point ${DATA_ENV} at a folder "
        f"holding {dataset}/.")


def read_bytes(path):
    """The file's bytes, gunzipped if it is gzip. A damaged gzip stream is a ValueError naming the
    file (never a silently shorter result)."""
    return decode_bytes(Path(path).read_bytes(), path)


def decode_bytes(data, path):
    """`data` (the bytes of the file at `path`) gunzipped if it is gzip; errors name `path`."""
    path = Path(path)
    if data[:2] != b"\x1f\x8b":
        if path.suffix == ".gz":
            raise ValueError(f"{path}: not a gzip file (bad magic bytes); delete it and download again")
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ValueError(f"{path}: corrupt or truncated gzip file ({e}); "
                         "delete it and download again") from e
