"""Build the bundled MNIST subset, scratchgen/data/bundled/mnist_subset.npz, from the full IDX files.

    python tools/make_bundle.py [--src ../shared/data/mnist] [--max-bytes 1900000]
                                [--valid 1000] [--test 2000]

The bundle holds the first N training images (N as large as fits in --max-bytes), the first
--valid images of the last 10000 training images, and the first --test test images, stored
losslessly (see pack_images in scratchgen/data/mnist.py); each zip member gets whichever of
deflate / bzip2 / LZMA is smallest. The zip is byte-for-byte reproducible (fixed timestamps).
Afterwards paste the printed sha256 into BUNDLE_SHA256 in scratchgen/data/mnist.py.
"""
import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from scratchgen.data.mnist import (BUNDLE_PATH, FILES, IMAGES_MAGIC, LABELS_MAGIC,  # noqa: E402
                                   pack_images, read_idx, unpack_images)
from scratchgen.data.paths import find_file  # noqa: E402

METHODS = {"deflate": zipfile.ZIP_DEFLATED, "bzip2": zipfile.ZIP_BZIP2, "lzma": zipfile.ZIP_LZMA}


def npy_bytes(array):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def zip_members(members):
    """Zip {name: (bytes, method)} reproducibly; returns the zip's bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, (data, method) in members.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            z.writestr(info, data, compress_type=method, compresslevel=9)
    return buf.getvalue()


def build(train, test, n_train, n_valid, n_test, report=False):
    images = np.concatenate([train[0][:n_train], train[0][50000:50000 + n_valid], test[0][:n_test]])
    labels = np.concatenate([train[1][:n_train], train[1][50000:50000 + n_valid], test[1][:n_test]])
    mask, values = pack_images(images)
    arrays = {"mask": mask, "values": values, "labels": labels,
              "splits": np.array([[0, n_train], [50000, n_valid], [0, n_test]], np.int64)}
    members = {}
    for name, array in arrays.items():
        data = npy_bytes(array)
        sizes = {m: len(zip_members({name: (data, METHODS[m])})) for m in METHODS}
        best = min(sizes, key=sizes.get)
        members[name] = (data, METHODS[best])
        if report:
            print(f"  {name:7s} {array.dtype}{list(array.shape)}: " +
                  ", ".join(f"{m} {s:,}" for m, s in sizes.items()) + f" -> {best}")
    return zip_members(members), images, labels


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", default=str(REPO.parent / "shared" / "data" / "mnist"))
    p.add_argument("--out", default=str(BUNDLE_PATH))
    p.add_argument("--max-bytes", type=int, default=1_900_000)
    p.add_argument("--valid", type=int, default=1000)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--step", type=int, default=100, help="granularity of the training-image count")
    args = p.parse_args()

    def load(which):
        img, lab, _ = FILES[which]
        return (read_idx(find_file(args.src, img), IMAGES_MAGIC),
                read_idx(find_file(args.src, lab), LABELS_MAGIC))
    train, test = load("train"), load("test")

    # Binary search on the number of training images (in units of --step) that fits.
    lo, hi = 0, 50000 // args.step + 1        # lo fits, hi does not (or is past the end)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        size = len(build(train, test, mid * args.step, args.valid, args.test)[0])
        print(f"{mid * args.step:6d} train images: {size:,} bytes", flush=True)
        lo, hi = (mid, hi) if size <= args.max_bytes else (lo, mid)
    n_train = lo * args.step
    print(f"\nfinal bundle, {n_train} train / {args.valid} valid / {args.test} test:")
    data, images, labels = build(train, test, n_train, args.valid, args.test, report=True)

    # Round trip: the stored data decode to exactly the source images.
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        assert np.array_equal(unpack_images(z["mask"], z["values"]), images)
        assert np.array_equal(z["labels"], labels)
    plain = io.BytesIO()
    np.savez_compressed(plain, images=images, labels=labels)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_bytes(data)
    print(f"wrote {args.out}: {len(data):,} bytes ({len(data) / len(images):.1f} bytes/image; "
          f"np.savez_compressed of the same images: {len(plain.getvalue()):,} bytes)")
    print(f'BUNDLE_SHA256 = "{hashlib.sha256(data).hexdigest()}"')


if __name__ == "__main__":
    main()
