"""An MNIST classifier for sample scores (Inception Score, FID), trained with scratchgen itself.

The network is scratchgen.models.mlp_classifier's MLP (784-512-256-10, ReLU), trained with the
recipe of `scratchgen train mlp` (Adam 2e-3 with cosine decay, random affine augmentation, 20
epochs on MNIST 'train', 50,000 digits), keeping the epoch with the best validation loss:
99.0% test accuracy on full MNIST, in about 90 s on one core.
Its 256 penultimate ReLU features stand in for Inception-v3's pool features (FID) and its
softmax for Inception's class predictions (IS). The scores are therefore comparable between
models scored with this classifier only, never with published Inception-based numbers.

Cache: <cache>/classifier/mnist_mlp_<data>_<recipe hash>.npz (weights) and .json (recipe,
data, test accuracy, training time), <cache> = $XDG_CACHE_HOME/scratchgen or ~/.cache/scratchgen,
independent of $SCRATCHGEN_DATA (which only says where MNIST is read from). <data> is 'full'
or 'bundled' (the subset shipped with scratchgen, on which the MLP stays below 98% test
accuracy: point $SCRATCHGEN_DATA at full MNIST). A missing file is rebuilt on demand,
reproducibly (seed 0); by hand:

    python -m scratchgen.metrics [--data DIR] [--rebuild]
"""
import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

RECIPE = dict(epochs=20, batch_size=128, lr=2e-3, hidden=[512, 256], augment=True, schedule="cosine",
              seed=0, limit_train=None)
FULL_MNIST_MIN_ACCURACY = 0.98


def classifier_cache_dir(cache_dir=None):
    """<cache>/classifier, where <cache> is the argument, else $XDG_CACHE_HOME/scratchgen, else ~/.cache/scratchgen."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser().absolute()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return (Path(base) / "scratchgen" / "classifier").expanduser().absolute()


def _data_tag():
    from ..data import describe_mnist_source
    return "bundled" if "bundled subset" in describe_mnist_source() else "full"


def _paths(cache_dir, recipe):
    key = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:8]
    stem = classifier_cache_dir(cache_dir) / f"mnist_mlp_{_data_tag()}_{key}"
    return stem.with_suffix(".npz"), stem.with_suffix(".json")


def _as_unit_rows(images):
    """(N, 784) float32 in [0, 1] from uint8 images (0..255) or float images in [0, 1]."""
    x = np.asarray(images)
    x = x.reshape(len(x), -1)
    if x.shape[1] != 784:
        raise ValueError(f"MNIST classifier: expected 28x28 images, got {x.shape[1]} pixels each")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255)
    x = x.astype(np.float32)
    if x.size and (x.min() < -1e-3 or x.max() > 1 + 1e-3):
        raise ValueError(f"MNIST classifier: float images must lie in [0, 1], got [{x.min():.3g}, {x.max():.3g}] "
                         f"(scale [-1, 1] samples with (x + 1) / 2)")
    return x


class MNISTClassifier:
    """The trained MLP with the views of it that the scores need. `meta` holds its recipe,
    data and test accuracy."""

    def __init__(self, model, meta):
        self.model, self.meta = model.eval(), meta
        self._reference = {}

    def embed(self, images, batch_size=2000):
        """(penultimate features (N, 256) float64, class probabilities (N, 10) float64)."""
        import scratchgen as sg
        x = _as_unit_rows(images)
        layers = list(self.model.net)
        body, head = sg.nn.Sequential(*layers[:-1]), layers[-1]
        feats, probs = [], []
        with sg.no_grad():
            for i in range(0, len(x), batch_size):
                h = body(sg.tensor(x[i:i + batch_size]))
                feats.append(h.numpy().astype(np.float64))
                probs.append(head(h).softmax(axis=1).numpy().astype(np.float64))
        if not feats:
            return np.zeros((0, layers[-1].in_features)), np.zeros((0, 10))
        return np.concatenate(feats), np.concatenate(probs)

    def features(self, images):
        return self.embed(images)[0]

    def probs(self, images):
        return self.embed(images)[1]

    def accuracy(self, images, labels):
        return float((self.probs(images).argmax(axis=1) == np.asarray(labels)).mean())

    def reference_stats(self, split):
        """(mu, sigma) of the features of an MNIST split's real images (cached per split)."""
        from ..data import load_mnist
        from .scores import gaussian_stats
        if split not in self._reference:
            images, _ = load_mnist(split)
            self._reference[split] = gaussian_stats(self.features(images))
        return self._reference[split]


def _build_model(recipe):
    from ..models.mlp_classifier import MLPClassifier
    return MLPClassifier(784, tuple(recipe["hidden"]), 10)


def train_classifier(cache_dir=None, log=print, threads=None, **recipe_overrides):
    """Train the classifier with RECIPE (updated with recipe_overrides), save it in the cache and
    return it as an MNISTClassifier. Uses `threads` BLAS/Numba threads (None: the policy in force)."""
    import contextlib

    from .. import serialization
    from ..data import DataLoader, describe_mnist_source
    from ..specs import create
    from ..train import EarlyStopping, fit, seed_everything
    recipe = {**RECIPE, **recipe_overrides}
    weights, meta_path = _paths(cache_dir, recipe)
    source = describe_mnist_source()
    log(f"training the MNIST classifier for FID/IS ({recipe['epochs']} epochs on {source}) -> {weights}")
    t0 = time.perf_counter()
    limit = contextlib.nullcontext()
    if threads:
        from ..threads import limit as thread_limit
        limit = thread_limit(threads)
    # It may be asked for inside a no_grad validation pass (a GAN's first FID): training needs the
    # graph back on whatever mode the caller is in.
    from ..grad_mode import enable_grad
    with limit, enable_grad():
        seed_everything(recipe["seed"])
        spec = create("mlp", {k: v for k, v in recipe.items()})
        model = spec.build()
        optimizer = spec.make_optimizer(model)
        loader = DataLoader(spec.train_dataset(), batch_size=recipe["batch_size"], shuffle=True, seed=recipe["seed"])
        fit(model, optimizer, loader, spec.loss, recipe["epochs"], valid_fn=lambda m: spec.evaluate(m, "valid"),
            early_stopping=EarlyStopping("valid_loss", "min", patience=None),
            scheduler=spec.make_scheduler(optimizer), progress=False, log=log)
        test = spec.evaluate(model, "test")
    meta = {"recipe": recipe, "data": source, "data_tag": _data_tag(), "test_acc": test["test_acc"],
            "test_loss": test["test_loss"], "train_seconds": round(time.perf_counter() - t0, 1),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    weights.parent.mkdir(parents=True, exist_ok=True)
    serialization.save({"model": model.state_dict(), "meta": meta}, weights)
    tmp = meta_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, meta_path)
    log(f"MNIST classifier: test accuracy {test['test_acc']:.4f} ({meta['train_seconds']} s); saved {weights}")
    _warn_if_weak(meta, log)
    return MNISTClassifier(model, meta)


def _warn_if_weak(meta, log):
    if meta["test_acc"] < FULL_MNIST_MIN_ACCURACY:
        log(f"warning: the MNIST classifier reaches only {meta['test_acc']:.2%} test accuracy "
            f"(trained on {meta['data']}); FID/IS from it are not comparable with full-MNIST ones. "
            f"Point $SCRATCHGEN_DATA at full MNIST and rebuild.")


_LOADED = {}


def mnist_classifier(cache_dir=None, rebuild=False, train_if_missing=True, log=print, **recipe_overrides):
    """The cached classifier for the MNIST that load_mnist sees (full or bundled), trained now
    if it is missing (or if rebuild=True). Kept in memory after the first call. The global random
    streams are left as they were (fork_rng), so a score never perturbs the run that asks for it."""
    from .. import serialization
    from ..random import fork_rng
    recipe = {**RECIPE, **recipe_overrides}
    weights, _ = _paths(cache_dir, recipe)
    if not rebuild and str(weights) in _LOADED:
        return _LOADED[str(weights)]
    if rebuild or not weights.exists():
        if not train_if_missing and not rebuild:
            raise FileNotFoundError(f"no MNIST classifier at {weights}; build it with "
                                    f"`python -m scratchgen.metrics`")
    # Training seeds the global generators and building the model draws its initial weights:
    # neither may change the random streams of the run that asks for a score.
    with fork_rng():
        if rebuild or not weights.exists():
            clf = train_classifier(cache_dir, log=log, **recipe_overrides)
        else:
            saved = serialization.load(weights)
            model = _build_model(saved["meta"]["recipe"])
            model.load_state_dict(saved["model"])
            clf = MNISTClassifier(model, saved["meta"])
            _warn_if_weak(clf.meta, log)
    _LOADED[str(weights)] = clf
    return clf


def mnist_inception_score(images, classifier=None, splits=10):
    """(mean, std) Inception Score of MNIST images (uint8, or floats in [0, 1]) under the MNIST classifier."""
    from .scores import inception_score
    clf = classifier or mnist_classifier()
    return inception_score(clf.probs(images), splits=splits)


def mnist_fid(images, reference="test", classifier=None):
    """FID between MNIST images and `reference`: a split name ('test', 'valid', 'train') of the
    MNIST load_mnist sees, or an array of images, in the MNIST classifier's 256 features."""
    from .scores import frechet_distance, gaussian_stats
    clf = classifier or mnist_classifier()
    ref = clf.reference_stats(reference) if isinstance(reference, str) else gaussian_stats(clf.features(reference))
    return frechet_distance(*gaussian_stats(clf.features(images)), *ref)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m scratchgen.metrics",
                                description="Train (or check) the cached MNIST classifier used for FID and IS.")
    p.add_argument("--data", metavar="DIR", help="data root holding mnist/ (default $SCRATCHGEN_DATA)")
    p.add_argument("--cache-dir", metavar="DIR", help="where to keep it (default ~/.cache/scratchgen/classifier)")
    p.add_argument("--rebuild", action="store_true", help="train again even if it is cached")
    p.add_argument("--threads", type=int, default=None, help="BLAS/Numba threads while training (default: the policy's)")
    args = p.parse_args(argv)
    if args.data:
        os.environ["SCRATCHGEN_DATA"] = os.path.abspath(os.path.expanduser(args.data))
    weights, meta_path = _paths(args.cache_dir, RECIPE)
    if args.rebuild or not weights.exists():
        clf = train_classifier(args.cache_dir, threads=args.threads)
    else:
        clf = mnist_classifier(args.cache_dir)
        print(f"cached: {weights} (test accuracy {clf.meta['test_acc']:.4f}, {clf.meta['data']})")
    return 0 if clf.meta["test_acc"] >= FULL_MNIST_MIN_ACCURACY else 1


if __name__ == "__main__":
    sys.exit(main())
