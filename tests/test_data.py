"""Tests for scratchgen.data. Synthetic-file tests always run; real-data tests run when
$SCRATCHGEN_DATA points at a folder holding mnist/ and binarized_mnist/ (skipped otherwise)."""
import gzip
import hashlib
import importlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from scratchgen import data
from scratchgen.data import amat, binarized, cache, loader, mnist, paths, toy, transforms

dl = importlib.import_module("scratchgen.data.download")  # the module; data.download is the function

FIRST_TRAIN_LABELS = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
FIRST_TEST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


# -- helpers ------------------------------------------------------------------------------------------
def real_root(dataset):
    root = os.environ.get(data.DATA_ENV)
    wanted = [f.removesuffix(".gz") for f, _ in dl.FILES[dataset]]
    if not root or any(data.paths.find_file(Path(root) / dataset, f) is None for f in wanted):
        pytest.skip(f"real {dataset} not available (set ${data.DATA_ENV})")
    return root


def idx_bytes(array, magic=None):
    array = np.asarray(array, np.uint8)
    magic = magic if magic is not None else 0x800 | array.ndim
    dims = np.array(array.shape, ">u4").tobytes()
    return magic.to_bytes(4, "big") + dims + array.tobytes()


def write(path, payload, gz=False):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def amat_bytes(x):
    return "".join(" ".join(str(int(v)) for v in row) + "\n" for row in x).encode()


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets an empty parsed-data cache of its own (never the user's) and no memo."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    cache.clear_memo()
    yield tmp_path / "xdg-cache" / "scratchgen" / "parsed"
    cache.clear_memo()


@pytest.fixture(autouse=True)
def synthetic_files_pass_the_checksum(request, monkeypatch):
    """The tests write small stand-ins under the real file names: only the checksum tests (and the
    real-data ones) keep the published checksums in force."""
    if "published_checksums" not in request.keywords:
        monkeypatch.setattr(paths, "published_sha256", lambda dataset, filename: None)


@pytest.fixture
def empty_root(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    return tmp_path


# -- IDX parsing --------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    path = write(tmp_path / ("x.gz" if gz else "x"), idx_bytes(images), gz)
    np.testing.assert_array_equal(mnist.read_idx(path, mnist.IMAGES_MAGIC), images)
    path = write(tmp_path / "y", idx_bytes(np.arange(7)), gz)
    np.testing.assert_array_equal(mnist.read_idx(path, mnist.LABELS_MAGIC), np.arange(7))


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx_is_an_error_naming_the_file(tmp_path, gz):
    full = idx_bytes(np.zeros((10, 28, 28)))
    path = write(tmp_path / ("t.gz" if gz else "t"), full[:-100], gz)
    with pytest.raises(ValueError, match=r"truncated") as e:
        mnist.read_idx(path, mnist.IMAGES_MAGIC)
    assert str(path) in str(e.value)
    with pytest.raises(ValueError, match="truncated"):      # extra bytes are as wrong as missing ones
        mnist.read_idx(write(tmp_path / "long", full + b"\0"), mnist.IMAGES_MAGIC)


def test_wrong_magic_is_an_error(tmp_path):
    path = write(tmp_path / "labels", idx_bytes(np.arange(5)))
    with pytest.raises(ValueError, match="magic") as e:
        mnist.read_idx(path, mnist.IMAGES_MAGIC)         # a labels file where images are expected
    assert str(path) in str(e.value)


@pytest.mark.parametrize("damage", ["cut", "flip", "not_gzip"])
def test_corrupt_gzip_is_an_error_naming_the_file(tmp_path, damage):
    good = gzip.compress(idx_bytes(np.random.default_rng(1).integers(0, 256, (50, 28, 28))))
    bad = {"cut": good[: len(good) // 2],
           "flip": good[:30] + bytes([good[30] ^ 0xFF]) + good[31:],
           "not_gzip": b"garbage, not gzip"}[damage]
    path = write(tmp_path / "train-images-idx3-ubyte.gz", bad)
    with pytest.raises(ValueError, match="gzip|magic|truncated") as e:
        mnist.read_idx(path, mnist.IMAGES_MAGIC)
    assert str(path) in str(e.value)


# -- load_mnist -----------------------------------------------------------------------------------
def test_missing_files_raise_with_download_command(empty_root):
    with pytest.raises(FileNotFoundError) as e:
        data.load_mnist("train", root=empty_root, fashion=True)
    msg = str(e.value)
    assert "scratchgen data download fashion_mnist" in msg and data.DATA_ENV in msg
    assert str(empty_root / "fashion_mnist" / "train-images-idx3-ubyte") in msg
    with pytest.raises(FileNotFoundError, match="scratchgen data download mnist"):
        data.load_mnist("test", root=empty_root, allow_bundled=False)


def test_partial_mnist_is_an_error_not_a_fallback(empty_root):
    write(empty_root / "mnist" / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(10000)))
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        data.load_mnist("test", root=empty_root)


def test_wrong_item_count_is_an_error_not_a_shorter_dataset(empty_root):
    for img, lab, _ in mnist.FILES.values():
        write(empty_root / "mnist" / (img + ".gz"), idx_bytes(np.zeros((20, 28, 28))), gz=True)
        write(empty_root / "mnist" / lab, idx_bytes(np.zeros(20)))
    with pytest.raises(ValueError, match="holds 20 items, expected 60000"):
        data.load_mnist("train", root=empty_root)


def test_split_slicing(empty_root, monkeypatch):
    # Shrink the expected file sizes so tiny files exercise the split logic.
    monkeypatch.setitem(mnist.FILES, "train", mnist.FILES["train"][:2] + (60,))
    monkeypatch.setitem(mnist.FILES, "test", mnist.FILES["test"][:2] + (10,))
    monkeypatch.setattr(mnist, "SPLITS", {"train": ("train", slice(0, 50)), "valid": ("train", slice(50, 60)),
                                          "train_full": ("train", slice(0, 60)), "test": ("test", slice(0, 10))})
    for which, n in (("train", 60), ("test", 10)):
        img, lab, _ = mnist.FILES[which]
        write(empty_root / "fashion_mnist" / img, idx_bytes(np.arange(n * 784).reshape(n, 28, 28) % 256))
        write(empty_root / "fashion_mnist" / (lab + ".gz"), idx_bytes(np.arange(n) % 10), gz=True)
    sizes = {s: data.load_mnist(s, root=empty_root, fashion=True) for s in mnist.SPLITS}
    assert {s: len(y) for s, (x, y) in sizes.items()} == {"train": 50, "valid": 10, "train_full": 60, "test": 10}
    x, y = sizes["valid"]
    assert x.dtype == np.uint8 and x.shape == (10, 28, 28) and y.dtype == np.int64
    np.testing.assert_array_equal(y, np.arange(50, 60) % 10)
    assert x.flags.writeable


# -- the bundled subset ---------------------------------------------------------------------------
def test_bundle_fallback(empty_root, monkeypatch, caplog):
    monkeypatch.setattr(mnist, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="scratchgen.data.mnist"):
        x, y = data.load_mnist("train", root=empty_root)
    assert "bundled subset" in caplog.text
    assert x.dtype == np.uint8 and x.shape[1:] == (28, 28) and y.dtype == np.int64
    assert len(x) >= 10000
    assert list(y[:10]) == FIRST_TRAIN_LABELS
    xt, yt = data.load_mnist("test", root=empty_root)
    assert list(yt[:10]) == FIRST_TEST_LABELS and len(xt) >= 1000
    xv, _ = data.load_mnist("valid", root=empty_root)
    xf, _ = data.load_mnist("train_full", root=empty_root)
    assert len(xf) == len(x) + len(xv)
    desc = data.describe_mnist_source(root=empty_root)
    assert desc.startswith("mnist: bundled subset") and f"{len(x)} train" in desc


def test_bundle_size_and_sha256(tmp_path, monkeypatch):
    raw = mnist.BUNDLE_PATH.read_bytes()
    assert len(raw) <= 2_000_000
    assert hashlib.sha256(raw).hexdigest() == mnist.BUNDLE_SHA256
    tampered = bytearray(raw)
    tampered[len(raw) // 2] ^= 1
    (tmp_path / "b.npz").write_bytes(bytes(tampered))
    monkeypatch.setattr(mnist, "BUNDLE_PATH", tmp_path / "b.npz")
    mnist._bundle.cache_clear()
    try:
        with pytest.raises(ValueError, match="sha256"):
            mnist.load_bundled_mnist("test")
    finally:
        mnist._bundle.cache_clear()


def test_pack_unpack_is_lossless():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 28, 28)).astype(np.uint8) * (rng.random((20, 28, 28)) < 0.3)
    np.testing.assert_array_equal(mnist.unpack_images(*mnist.pack_images(images)), images)


def test_bundle_matches_real_files():
    root = real_root("mnist")
    for split, real_split in (("train", "train"), ("valid", "valid"), ("test", "test")):
        bx, by = mnist.load_bundled_mnist(split)
        rx, ry = data.load_mnist(real_split, root=root)
        np.testing.assert_array_equal(bx, rx[:len(bx)])
        np.testing.assert_array_equal(by, ry[:len(by)])


# -- real data ------------------------------------------------------------------------------------------
def test_real_mnist():
    root = real_root("mnist")
    loaded = {s: data.load_mnist(s, root=root) for s in ("train", "valid", "train_full", "test")}
    assert {s: len(x) for s, (x, y) in loaded.items()} == {"train": 50000, "valid": 10000,
                                                          "train_full": 60000, "test": 10000}
    assert list(loaded["train"][1][:10]) == FIRST_TRAIN_LABELS
    assert list(loaded["test"][1][:10]) == FIRST_TEST_LABELS
    np.testing.assert_array_equal(loaded["train_full"][0][50000:], loaded["valid"][0])
    assert data.describe_mnist_source(root).startswith(f"mnist: {Path(root).absolute() / 'mnist'}")


def test_real_binarized_mnist():
    root = real_root("binarized_mnist")
    for split, n in binarized.ROWS.items():
        x = data.load_binarized_mnist(split, root=root)
        assert x.shape == (n, 784) and x.dtype == np.float32
        assert ((x == 0) | (x == 1)).all()
        assert abs(x.mean() - 0.13) < 0.01


def test_download_checksums_match_the_shared_files():
    for name in ("mnist", "binarized_mnist"):
        folder = Path(real_root(name)) / name
        for filename, check in dl.FILES[name]:
            assert dl.verify(data.paths.find_file(folder, filename.removesuffix(".gz")), check), filename


# -- binarized MNIST (synthetic) -------------------------------------------------------------------
def test_parse_amat():
    x = (np.random.default_rng(0).random((3, 784)) < 0.2).astype(np.float32)
    text = amat_bytes(x)
    np.testing.assert_array_equal(binarized.parse_amat(text), x)
    np.testing.assert_array_equal(binarized.parse_amat(text.rstrip(b"\n")), x)   # no final newline
    np.testing.assert_array_equal(binarized.parse_amat(text.replace(b"\n", b" \r\n")), x)


@pytest.mark.parametrize("edit, pattern", [
    (lambda t: t.replace(b"0\n", b"\n", 1), r"line 1 has 783 values"),
    (lambda t: t[:1600] + b"2" + t[1601:], r"line 2: unexpected"),
    (lambda t: t.replace(b" ", b"", 1), r"line 1: unexpected"),
    (lambda t: t + b"0 1\n", r"line 4 has 2 values"),
])
def test_parse_amat_rejects_malformed_lines(edit, pattern):
    text = amat_bytes(np.zeros((3, 784)))
    with pytest.raises(ValueError, match=pattern):
        binarized.parse_amat(edit(text), "f.amat")


def test_binarized_row_count_and_missing(empty_root):
    with pytest.raises(FileNotFoundError, match="scratchgen data download binarized_mnist"):
        data.load_binarized_mnist("test", root=empty_root)
    path = write(empty_root / "binarized_mnist" / "binarized_mnist_valid.amat", amat_bytes(np.ones((3, 784))))
    with pytest.raises(ValueError, match="found 3 rows, expected 10000") as e:
        data.load_binarized_mnist("valid", root=empty_root)
    assert str(path) in str(e.value)
    path = write(empty_root / "binarized_mnist" / "binarized_mnist_test.amat.gz",
                 gzip.compress(amat_bytes(np.ones((3, 784))))[:-10])
    with pytest.raises(ValueError, match="gzip") as e:
        data.load_binarized_mnist("test", root=empty_root)
    assert str(path) in str(e.value)


def test_binarize_dynamic_on_bundle(empty_root):
    x = data.binarize_dynamic("test", root=empty_root, seed=0)
    assert x.dtype == np.float32 and x.shape[1] == 784 and set(np.unique(x)) <= {0.0, 1.0}
    assert 0.1 < x.mean() < 0.16
    np.testing.assert_array_equal(x, data.binarize_dynamic("test", root=empty_root, seed=0))


def test_fixed_width_and_exact_parsers_agree(monkeypatch):
    x = (np.random.default_rng(1).random((5, 784)) < 0.3).astype(np.uint8)
    text = amat_bytes(x)
    exact = amat._parse_exact(text, "f.amat")
    np.testing.assert_array_equal(exact, x)
    monkeypatch.setattr(amat, "_parse_exact", lambda *a: pytest.fail("canonical text took the slow path"))
    fast = amat.parse_amat_values(text, "f.amat")
    assert fast.dtype == np.uint8 and fast.shape == (5, 784)
    np.testing.assert_array_equal(fast, x)


@pytest.mark.parametrize("edit", [
    lambda t: t[:-1] + b" ",                       # a separator where the newline belongs
    lambda t: t[:1568 * 2 + 10] + b"2" + t[1568 * 2 + 11:],
    lambda t: t[:1568 * 2 + 11] + b"\t" + t[1568 * 2 + 12:],
    lambda t: t[:7] + b"\n" + t[8:],               # a newline mid-line (the length still fits)
])
def test_fixed_width_path_rejects_what_it_does_not_understand(edit):
    text = edit(amat_bytes(np.ones((3, 784))))
    assert len(text) == 3 * 1568 and amat._parse_fixed_width(text) is None


@pytest.fixture
def small_binarized(empty_root, monkeypatch):
    """A binarized_mnist/ folder of tiny synthetic splits (ROWS shrunk to match)."""
    monkeypatch.setattr(binarized, "ROWS", {"train": 6, "valid": 4, "test": 5})
    rng = np.random.default_rng(2)
    arrays = {s: (rng.random((n, 784)) < 0.2).astype(np.float32) for s, n in binarized.ROWS.items()}
    for split, x in arrays.items():
        write(empty_root / "binarized_mnist" / f"binarized_mnist_{split}.amat.gz", amat_bytes(x), gz=True)
    return empty_root, arrays


def entries(folder):
    return sorted(folder.glob("*.npz")) if folder.is_dir() else []


def test_cache_hit_equals_fresh_parse(small_binarized, private_cache, monkeypatch):
    root, arrays = small_binarized
    first = data.load_binarized_mnist("train", root=root)
    np.testing.assert_array_equal(first, arrays["train"])
    (entry,) = entries(private_cache)
    assert entry.name.startswith("binarized_mnist_train.amat.gz.")
    meta = cache.read_meta(root / "binarized_mnist" / "binarized_mnist_train.amat.gz", binarized.CACHE_TAG)
    assert meta["content_sha256"] == hashlib.sha256(amat_bytes(arrays["train"])).hexdigest()
    cache.clear_memo()
    monkeypatch.setattr(binarized, "parse_amat_values", lambda *a: pytest.fail("parsed despite a cache entry"))
    second = data.load_binarized_mnist("train", root=root)
    assert second.dtype == np.float32 and second.flags.writeable
    np.testing.assert_array_equal(second, first)
    np.testing.assert_array_equal(data.load_binarized_mnist("train", root=root, limit=2), first[:2])
    second[:] = 7                                   # callers own what they get: no shared state
    np.testing.assert_array_equal(data.load_binarized_mnist("train", root=root), first)


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty"])
def test_corrupt_cache_entry_is_rebuilt(small_binarized, private_cache, damage):
    root, arrays = small_binarized
    data.load_binarized_mnist("valid", root=root)
    (entry,) = entries(private_cache)
    good = entry.read_bytes()
    body = bytearray(good)
    at = good.index(bytes(np.packbits(arrays["valid"].astype(np.uint8), axis=1)[0, :8]))
    body[at] ^= 0xFF                                # a bit flip inside the stored rows
    entry.write_bytes({"flip": bytes(body), "truncate": good[:len(good) // 2],
                       "garbage": b"not a cache entry", "empty": b""}[damage])
    cache.clear_memo()
    np.testing.assert_array_equal(data.load_binarized_mnist("valid", root=root), arrays["valid"])
    with np.load(entry) as z:                       # rewritten, and sound again
        np.testing.assert_array_equal(z["data"], np.packbits(arrays["valid"].astype(np.uint8), axis=1))
        assert hashlib.sha256(z["data"]).hexdigest() == json.loads(z["meta"].tobytes())["sha256"]
    assert [p.name for p in private_cache.iterdir()] == [entry.name]       # no temporary files left


@pytest.mark.parametrize("clear_memo", [False, True])
def test_modified_source_invalidates_the_cache(small_binarized, private_cache, clear_memo):
    root, arrays = small_binarized
    path = root / "binarized_mnist" / "binarized_mnist_test.amat"      # uncompressed beside the .gz
    path.write_bytes(amat_bytes(arrays["test"]))
    np.testing.assert_array_equal(data.load_binarized_mnist("test", root=root), arrays["test"])
    st = path.stat()
    flipped = 1 - arrays["test"]
    path.write_bytes(amat_bytes(flipped))           # same size...
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))                # ...and same mtime
    if clear_memo:
        cache.clear_memo()
    np.testing.assert_array_equal(data.load_binarized_mnist("test", root=root), flipped)


def test_truncated_amat_is_an_error_naming_the_file(small_binarized, private_cache):
    root, arrays = small_binarized
    text = amat_bytes(arrays["train"])
    for name, payload in (("binarized_mnist_train.amat", text[:-700]),
                          ("binarized_mnist_train.amat.gz", gzip.compress(text[:1568 * 3 + 100]))):
        for p in (root / "binarized_mnist").glob("binarized_mnist_train*"):
            p.unlink()
        path = write(root / "binarized_mnist" / name, payload)
        with pytest.raises(ValueError, match=r"line \d+ has \d+ values") as e:
            data.load_binarized_mnist("train", root=root)
        assert str(path) in str(e.value)
    path = write(root / "binarized_mnist" / "binarized_mnist_train.amat.gz", text[:1568 * 3], gz=True)
    with pytest.raises(ValueError, match="found 3 rows, expected 6") as e:   # whole lines missing
        data.load_binarized_mnist("train", root=root)
    assert str(path) in str(e.value)
    assert not [p for p in entries(private_cache) if "train" in p.name]   # a bad file is never cached


def test_source_damaged_after_caching_is_still_an_error(small_binarized, private_cache):
    root, _ = small_binarized
    data.load_binarized_mnist("test", root=root)
    path = root / "binarized_mnist" / "binarized_mnist_test.amat.gz"
    path.write_bytes(path.read_bytes()[:-20])
    cache.clear_memo()
    with pytest.raises(ValueError, match="gzip") as e:
        data.load_binarized_mnist("test", root=root)
    assert str(path) in str(e.value)


def test_unwritable_cache_dir_still_loads(small_binarized, tmp_path, monkeypatch):
    root, arrays = small_binarized
    blocker = write(tmp_path / "not-a-dir", b"a file where the cache folder should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    for _ in range(2):
        cache.clear_memo()
        np.testing.assert_array_equal(data.load_binarized_mnist("valid", root=root), arrays["valid"])


def test_cache_location_honours_xdg_cache_home(small_binarized, tmp_path, monkeypatch):
    root, _ = small_binarized
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "elsewhere"))
    data.load_binarized_mnist("valid", root=root)
    assert len(entries(tmp_path / "elsewhere" / "scratchgen" / "parsed")) == 1
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "scratchgen" / "parsed"


def test_idx_cache_and_one_read_per_process(empty_root, private_cache, monkeypatch):
    monkeypatch.setitem(mnist.FILES, "train", mnist.FILES["train"][:2] + (60,))
    monkeypatch.setitem(mnist.FILES, "test", mnist.FILES["test"][:2] + (10,))
    monkeypatch.setattr(mnist, "SPLITS", {"train": ("train", slice(0, 50)), "valid": ("train", slice(50, 60)),
                                          "train_full": ("train", slice(0, 60)), "test": ("test", slice(0, 10))})
    rng = np.random.default_rng(3)
    files = {}
    for which, n in (("train", 60), ("test", 10)):
        img, lab, _ = mnist.FILES[which]
        files[which] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)
        write(empty_root / "mnist" / (img + ".gz"), idx_bytes(files[which][0]), gz=True)
        write(empty_root / "mnist" / (lab + ".gz"), idx_bytes(files[which][1]), gz=True)
    reads = []
    real_parse = mnist.parse_idx
    monkeypatch.setattr(mnist, "parse_idx", lambda *a: reads.append(a[2]) or real_parse(*a))
    for split in ("train", "valid", "train", "test", "valid"):
        x, y = data.load_mnist(split, root=empty_root)
        which, rows = mnist.SPLITS[split]
        np.testing.assert_array_equal(x, files[which][0][rows])
        np.testing.assert_array_equal(y, files[which][1][rows])
        assert x.flags.writeable
    assert len(reads) == 4 and len(entries(private_cache)) == 4           # each file parsed once
    cache.clear_memo()                                                      # a new process: cache hits
    np.testing.assert_array_equal(data.load_mnist("train_full", root=empty_root)[0], files["train"][0])
    assert len(reads) == 4


def test_real_binarized_cache_matches_fresh_parse():
    root = real_root("binarized_mnist")
    path = data.paths.find_file(Path(root) / "binarized_mnist", "binarized_mnist_valid.amat")
    fresh = binarized.parse_amat(data.paths.read_bytes(path), path)
    np.testing.assert_array_equal(data.load_binarized_mnist("valid", root=root), fresh)   # builds the entry
    cache.clear_memo()
    np.testing.assert_array_equal(data.load_binarized_mnist("valid", root=root), fresh)   # reads it



# -- transforms -------------------------------------------------------------------------------------
def test_unit_and_symmetric_scaling():
    x = np.array([0, 128, 255], np.uint8)
    assert transforms.to_unit(x).dtype == np.float32
    np.testing.assert_allclose(transforms.to_unit(x), [0, 128 / 255, 1], rtol=1e-6)
    np.testing.assert_allclose(transforms.to_symmetric(x), [-1, 128 / 127.5 - 1, 1], rtol=1e-6)


def test_dequantize_range():
    x = np.repeat(np.array([0, 1, 254, 255], np.uint8), 100_000)
    y = transforms.dequantize(x, np.random.default_rng(0))
    assert y.dtype == np.float32 and y.min() >= 0 and y.max() < 1
    np.testing.assert_array_equal(np.floor(y.astype(np.float64) * 256), x)   # stays in its bin
    assert abs((y[:100_000] * 256).mean() - 0.5) < 0.01                     # uniform in the bin


def test_dynamic_binarize():
    p = np.full((200, 100), 0.3, np.float32)
    b = transforms.dynamic_binarize(p, np.random.default_rng(0))
    assert b.dtype == np.float32 and set(np.unique(b)) == {0.0, 1.0}
    assert abs(b.mean() - 0.3) < 0.01
    assert not transforms.dynamic_binarize(np.zeros(10), 0).any()
    assert transforms.dynamic_binarize(np.ones(10), 0).all()


def test_logit_transform_inverse_and_logdet():
    rng = np.random.default_rng(0)
    x = rng.random((4, 3))
    y, logdet = transforms.logit_transform(x, alpha=0.05)
    assert y.dtype == np.float32 and logdet.shape == (4,)
    np.testing.assert_allclose(transforms.logit_inverse(y, alpha=0.05), x, atol=1e-5)
    s = 0.05 + 0.9 * x
    np.testing.assert_allclose(y, np.log(s / (1 - s)), rtol=1e-5)
    # logdet vs the slogdet of a central-difference Jacobian of the whole per-example map.
    h = 1e-4
    for i in range(len(x)):
        f = lambda v: np.log(0.05 + 0.9 * v) - np.log(1 - 0.05 - 0.9 * v)   # float64 reference
        jac = np.stack([(f(x[i] + h * e) - f(x[i] - h * e)) / (2 * h) for e in np.eye(3)], axis=1)
        np.testing.assert_allclose(logdet[i], np.linalg.slogdet(jac)[1], rtol=1e-5)
        jac32 = np.stack([(transforms.logit_transform((x[i] + 1e-3 * e)[None])[0][0].astype(np.float64) -
                           transforms.logit_transform((x[i] - 1e-3 * e)[None])[0][0]) / 2e-3
                          for e in np.eye(3)], axis=1)
        np.testing.assert_allclose(logdet[i], np.linalg.slogdet(jac32)[1], atol=5e-3)


# -- toy sets -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(toy.TOY_DATASETS))
def test_toy_shapes_and_seeding(name):
    fn = data.TOY_DATASETS[name]
    x, y = fn(500, seed=3)
    assert x.shape == (500, 2) and x.dtype == np.float32 and y.shape == (500,) and y.dtype == np.int64
    assert np.isfinite(x).all()
    x2, y2 = fn(500, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, fn(500, seed=4)[0])


@pytest.mark.parametrize("name, k, std", [("eight_gaussians", 8, 0.02), ("twentyfive_gaussians", 25, 0.05)])
def test_toy_mixture_modes(name, k, std):
    centers, s = data.mode_centers(name)
    assert centers.shape == (k, 2) and s == std
    x, y = data.TOY_DATASETS[name](4000, seed=0)
    assert set(np.unique(y)) == set(range(k))
    assert np.linalg.norm(x - centers[y], axis=1).max() < 6 * std           # each point by its mode
    if k == 8:
        np.testing.assert_allclose(np.linalg.norm(centers, axis=1), 2.0)
    else:
        assert set(map(tuple, centers)) == {(a, b) for a in (-4, -2, 0, 2, 4) for b in (-4, -2, 0, 2, 4)}
    with pytest.raises(ValueError):
        data.mode_centers("swiss_roll")


def test_toy_supports():
    x, y = data.checkerboard(2000, seed=0)
    assert np.abs(x).max() <= 4 and ((np.floor(x[:, 0] / 2) + np.floor(x[:, 1] / 2)) % 2 == 0).all()
    x, y = data.two_moons(2000, seed=0)
    assert set(np.unique(y)) == {0, 1} and x[y == 0, 1].mean() > x[y == 1, 1].mean()
    x, y = data.swiss_roll(2000, seed=0)
    assert (y == 0).all() and np.abs(x).max() < 5


# -- DataLoader -----------------------------------------------------------------------------------------
def epoch_rows(ld):
    return [xb for xb, _ in ld._batches()]


def test_loader_covers_each_index_once_per_epoch():
    x = np.arange(103)
    ld = data.DataLoader((x, 2 * x), batch_size=10, shuffle=True, seed=0)
    assert len(ld) == 11
    orders = []
    for _ in range(3):
        batches = list(ld._batches())
        assert [len(b[0]) for b in batches] == [10] * 10 + [3]
        for xb, yb in batches:
            np.testing.assert_array_equal(yb, 2 * xb)                       # rows stay paired
        order = np.concatenate([b[0] for b in batches])
        np.testing.assert_array_equal(np.sort(order), x)
        orders.append(order)
    assert not np.array_equal(orders[0], orders[1])                         # reshuffled each epoch
    plain = data.DataLoader(data.ArrayDataset(x), batch_size=10)            # no shuffle: in order
    np.testing.assert_array_equal(np.concatenate([b[0] for b in plain._batches()]), x)


def test_loader_drop_last():
    ld = data.DataLoader((np.arange(103), np.arange(103)), batch_size=10, shuffle=True, drop_last=True, seed=1)
    assert len(ld) == 10
    batches = epoch_rows(ld)
    assert [len(b) for b in batches] == [10] * 10 and len(np.unique(np.concatenate(batches))) == 100


def test_loader_is_deterministic_given_seed():
    x = np.arange(50)
    a, b, c = (data.DataLoader((x, x), batch_size=7, shuffle=True, seed=s) for s in (5, 5, 6))
    for _ in range(2):
        ea, eb, ec = (np.concatenate(epoch_rows(ld)) for ld in (a, b, c))
        np.testing.assert_array_equal(ea, eb)
        assert not np.array_equal(ea, ec)


def test_loader_state_dict_resumes_exactly():
    x = np.arange(45)
    ref = data.DataLoader((x, x), batch_size=4, shuffle=True, seed=None)
    expected = [epoch_rows(ref) for _ in range(3)]
    ld = data.DataLoader((x, x), batch_size=4, shuffle=True, seed=ref.seed)
    epoch_rows(ld)                                                          # epoch 0
    assert ld.state_dict() == {"seed": ref.seed, "epoch": 1, "batch": 0}
    it = ld._batches()
    head = [next(it)[0] for _ in range(5)]                                  # 5 batches of epoch 1
    state = ld.state_dict()
    assert state == {"seed": ref.seed, "epoch": 1, "batch": 5}
    resumed = data.DataLoader((x, x), batch_size=4, shuffle=True)          # a different seed...
    resumed.load_state_dict(state)                                          # ...replaced by the saved one
    rest = epoch_rows(resumed)
    for got, want in zip(head + rest, expected[1]):
        np.testing.assert_array_equal(got, want)
    assert len(head + rest) == len(expected[1])
    for got, want in zip(epoch_rows(resumed), expected[2]):
        np.testing.assert_array_equal(got, want)


def test_loader_validates_inputs():
    with pytest.raises(ValueError, match=r"\(5, 2\), \(4,\)"):
        data.ArrayDataset(np.zeros((5, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="batch_size"):
        data.DataLoader((np.zeros(3),), batch_size=0)
    with pytest.raises(TypeError):
        data.DataLoader({"x": np.zeros(3)}, batch_size=1)


def test_loader_yields_tensors():
    sg = pytest.importorskip("scratchgen")
    if not hasattr(sg, "tensor"):
        pytest.skip("engine has no sg.tensor yet")
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.arange(6, dtype=np.int64)
    batches = list(data.DataLoader(loader.ArrayDataset(x, y), batch_size=4))
    assert len(batches) == 2
    xb, yb = batches[0]
    assert isinstance(xb, sg.Tensor) and not xb.requires_grad
    assert xb.numpy().dtype == np.float32 and yb.numpy().dtype == np.int64
    np.testing.assert_array_equal(xb.numpy(), x[:4])


# -- download (no network: file:// URLs) ------------------------------------------------------------
def test_fetch_verifies_then_renames(tmp_path):
    src = write(tmp_path / "mirror" / "f.gz", b"payload" * 1000, gz=True)
    good = ("sha256", hashlib.sha256(b"payload" * 1000).hexdigest())        # of the uncompressed bytes
    dest = tmp_path / "out" / "f.gz"
    dl.fetch(src.as_uri(), dest, good, progress=False)
    assert dest.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.gz"]       # no temp files left


def test_fetch_rejects_bad_checksum_and_leaves_nothing(tmp_path):
    src = write(tmp_path / "mirror" / "f", b"payload")
    dest = tmp_path / "out" / "f"
    with pytest.raises(ValueError, match="md5 check failed"):
        dl.fetch(src.as_uri(), dest, ("md5", "0" * 32), progress=False)
    assert list(dest.parent.iterdir()) == []


def test_download_from_local_mirror(empty_root, monkeypatch):
    rows = amat_bytes(np.ones((2, 784)))
    mirror = write(empty_root / "mirror" / "binarized_mnist_valid.amat", rows).parent
    monkeypatch.setitem(dl.FILES, "binarized_mnist",
                        [("binarized_mnist_valid.amat", ("sha256", hashlib.sha256(rows).hexdigest()))])
    root = empty_root / "root"
    folder = data.download("binarized_mnist", root=root, mirror=mirror.as_uri(), progress=False)
    assert (Path(folder) / "binarized_mnist_valid.amat").read_bytes() == rows
    shutil.rmtree(mirror)                                       # verified files are not fetched again
    data.download("binarized_mnist", root=root, mirror=mirror.as_uri(), progress=False)
    monkeypatch.setitem(dl.FILES, "binarized_mnist", [("binarized_mnist_valid.amat", ("sha256", "0" * 64))])
    with pytest.raises(Exception):                              # would re-fetch: the mirror is gone
        data.download("binarized_mnist", root=root, mirror=mirror.as_uri(), progress=False)


def test_list_datasets(empty_root):
    rows = {name: (where, bundled) for name, where, bundled in data.list_datasets(empty_root)}
    assert rows["mnist"] == ("missing", True) and rows["fashion_mnist"] == ("missing", False)
    write(empty_root / "binarized_mnist" / "binarized_mnist_test.amat.gz", b"", gz=True)
    rows = {name: where for name, where, _ in data.list_datasets(empty_root)}
    assert rows["binarized_mnist"].startswith("incomplete") and "binarized_mnist_train.amat" in rows["binarized_mnist"]


# -- published checksums: verified on whatever copy is loaded -----------------------------------------
def _publish(monkeypatch, **digests):
    monkeypatch.setattr(paths, "published_sha256", lambda dataset, filename: digests.get(filename))


@pytest.mark.published_checksums
def test_a_corrupt_uncompressed_copy_gives_way_to_the_good_gz(empty_root, monkeypatch, caplog):
    good = amat_bytes((np.arange(3 * 784).reshape(3, 784) % 3 == 0).astype(int))
    folder = empty_root / "binarized_mnist"
    write(folder / "binarized_mnist_valid.amat.gz", good, gz=True)
    write(folder / "binarized_mnist_valid.amat", good.replace(b"1", b"0", 5))   # damaged, still parses
    _publish(monkeypatch, **{"binarized_mnist_valid.amat": hashlib.sha256(good).hexdigest()})
    monkeypatch.setitem(binarized.ROWS, "valid", 3)
    with caplog.at_level(logging.WARNING):
        x = binarized.load_binarized_mnist("valid", root=empty_root)
    np.testing.assert_array_equal(x, binarized.parse_amat(good))
    assert "not the published file" in caplog.text and "binarized_mnist_valid.amat.gz" in caplog.text


@pytest.mark.published_checksums
def test_no_copy_passing_the_checksum_is_an_error_naming_each(empty_root, monkeypatch):
    folder = empty_root / "binarized_mnist"
    text = amat_bytes(np.ones((3, 784), int))
    write(folder / "binarized_mnist_valid.amat", text)
    write(folder / "binarized_mnist_valid.amat.gz", text, gz=True)
    _publish(monkeypatch, **{"binarized_mnist_valid.amat": "0" * 64})
    monkeypatch.setitem(binarized.ROWS, "valid", 3)
    with pytest.raises(ValueError, match=r"valid\.amat:.*valid\.amat\.gz:.*scratchgen data download binarized_mnist"):
        binarized.load_binarized_mnist("valid", root=empty_root)


@pytest.mark.published_checksums
def test_the_published_checksums_pass_on_the_real_files():
    root = real_root("binarized_mnist")
    assert len(binarized.load_binarized_mnist("valid", root=root)) == 10000
    assert paths.published_sha256("binarized_mnist", "binarized_mnist_valid.amat")


def test_an_mnist_path_that_is_a_file_is_an_error_not_a_fallback(empty_root):
    (empty_root / "mnist").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="is a file"):
        data.load_mnist("train", root=empty_root)


def test_download_moves_a_damaged_copy_aside_so_it_cannot_shadow_the_good_one(empty_root, monkeypatch):
    rows = amat_bytes(np.ones((2, 784), int))
    mirror = write(empty_root / "mirror" / "binarized_mnist_valid.amat", rows).parent
    monkeypatch.setitem(dl.FILES, "binarized_mnist",
                        [("binarized_mnist_valid.amat", ("sha256", hashlib.sha256(rows).hexdigest()))])
    folder = empty_root / "root" / "binarized_mnist"
    write(folder / "binarized_mnist_valid.amat", b"0 1 garbage\n")
    write(folder / "binarized_mnist_valid.amat.gz", rows, gz=True)       # a good copy already there
    data.download("binarized_mnist", root=empty_root / "root", mirror=mirror.as_uri(), progress=False)
    assert (folder / "binarized_mnist_valid.amat.corrupt").exists()
    assert not (folder / "binarized_mnist_valid.amat").exists()
