"""One task of the study: train one family with one digit held out, then score the test set.

A task is a plain, picklable `Task` and `run_task(task)` does all of its work, in whatever process
runs it (the study's own, or a Dask worker): it trains in its run folder
OUT/<family>/digit_<K>/<role>/ (config.json, metrics.jsonl, checkpoint.npz, best.npz), resuming
from checkpoint.npz when a killed attempt left one, and writes that folder's scores.npz
atomically, last. A task whose scores.npz exists is done: running it again only reads the file.

The family's registered spec builds the model, its optimizer and its training step (the same
objective `scratchgen train` uses); the task supplies the data, so no spec needs a filtering
hook. The data (every family: labelled MNIST, the full set under the data root or the bundled
subset offline):
  binary      for likelihood models (vae, pixelcnn, pixelvae): MNIST binarized once per split
              with a fixed seed; the very draw `load_binarized` makes when Larochelle's files are
              absent (his binarized MNIST has no labels, so it cannot be filtered by digit);
  symmetric   for the DCGAN: MNIST pixels in [-1, 1], as `scratchgen train dcgan` uses.
Train and validation sets leave out the held-out digit (validation picks the best epoch, so it
must be in-distribution too); the test set keeps all ten digits.

Roles: 'main' trains on the data as it is; 'background' (Ren et al. 2019) trains the same model
on inputs with a fraction `perturb` of pixels replaced by random bits (one fixed draw per task),
with L2 weight decay, for the likelihood-ratio score.
"""
import dataclasses
import functools
import inspect
import json
import math
import os
import socket
import time

import numpy as np

from .. import threads

SCORES_NAME = "scores.npz"
TASK_NAME = "task.json"
EVAL_BATCH = 100   # images per scoring pass: a conv layer's window matrix for 1000 images is hundreds of MB


@dataclasses.dataclass
class Family:
    """How the study trains and scores one model of the registry."""
    model: str                 # registry name
    kind: str                  # 'likelihood' (scores from -log p(x)) or 'discriminator' (D's logit)
    data: str                  # 'binary' or 'symmetric'
    shape: tuple = None        # one example's shape for the model (None: asked of the spec's own data)
    settings: dict = dataclasses.field(default_factory=dict)   # model settings for the study
    epochs: int = 1            # default budget: epochs ...
    limit_train: int = None    # ... on at most this many training images (None: all)
    cost: float = 1.0          # rough relative cost of a task, to start the long ones first
    arity: int = None          # arrays per training example (1: images; 2: images and labels)


# The study's families.
FAMILIES = {
    "vae": Family("vae", "likelihood", "binary", (784,), dict(binarization="fixed"), epochs=10, cost=1.0, arity=1),
    # the pixelcnn_small recipe's size (19,649 parameters): the paper's 64x7 takes hours per epoch on a CPU
    "pixelcnn": Family("pixelcnn", "likelihood", "binary", (1, 28, 28), dict(channels=32, blocks=5, out_channels=32),
                       epochs=1, cost=20.0, arity=1),
    # free bits: without them the latent collapses within an epoch and the model is a Gated PixelCNN
    "pixelvae": Family("pixelvae", "likelihood", "binary", None, dict(free_bits=0.25), epochs=1, cost=20.0),
    "dcgan": Family("dcgan", "discriminator", "symmetric", (784,), {}, epochs=2, cost=8.0, arity=2),
}
DEFAULT_FAMILIES = ("vae", "pixelcnn", "pixelvae", "dcgan")
BACKGROUND_WEIGHT_DECAY = 1e-4   # Ren et al.'s L2 on the background model


def family(name):
    """The Family for a study family name: the table above, or for another registered model the
    one inferred from its spec (a GAN-family spec: its discriminator; a binarized-MNIST model:
    its likelihood). Raises the registry's UnknownModelError for an unregistered name."""
    from ..specs import create
    from ..specs.gan import AdversarialSpec
    fam = FAMILIES.get(name)
    spec = create(fam.model if fam else name, dict(fam.settings) if fam else {})
    if fam is None:
        if isinstance(spec, AdversarialSpec):
            fam = Family(name, "discriminator", "symmetric", (784,), {}, epochs=1, cost=8.0, arity=2)
        elif spec.dataset == "binarized_mnist":
            fam = Family(name, "likelihood", "binary", None, {}, epochs=1, cost=5.0)
        else:
            raise ValueError(f"model {name!r} trains on {spec.dataset}; the study takes binarized-MNIST likelihood "
                             f"models and MNIST GANs (e.g. {', '.join(DEFAULT_FAMILIES)})")
    else:
        fam = dataclasses.replace(fam)
    if fam.shape is None or fam.arity is None:   # ask the spec's own loader for one example
        spec.config["limit_train"] = 1
        arrays = spec.train_dataset()
        arrays = arrays if isinstance(arrays, (tuple, list)) else (arrays,)
        fam.shape, fam.arity = tuple(np.shape(arrays[0])[1:]), len(arrays)
    return fam


@dataclasses.dataclass
class Task:
    out: str                   # the study folder (absolute)
    family: str
    digit: int                 # the held-out digit
    role: str                  # 'main' or 'background'
    spec: Family
    epochs: int
    limit_train: int = None
    limit_valid: int = None
    limit_test: int = None
    settings: dict = dataclasses.field(default_factory=dict)   # model settings (family's, then the user's)
    seed: int = 0
    threads: int = 1
    iwae_k: int = 10           # importance samples for a model with an IWAE bound (VAE) as its NLL
    compressors: tuple = ("png", "context")
    perturb: float = 0.2       # background role: share of pixels replaced by random bits
    typical_n: int = 2000      # training images whose mean NLL estimates the entropy (typicality)
    data_root: str = None
    data_source: str = ""

    @property
    def folder(self):
        return os.path.join(self.out, self.family, f"digit_{self.digit}", self.role)

    @property
    def scores_path(self):
        return os.path.join(self.folder, SCORES_NAME)

    @property
    def label(self):
        return f"{self.family} digit {self.digit}{'' if self.role == 'main' else ' ' + self.role}"

    def signature(self):
        """What determines the task's result: a rerun must ask for exactly this to reuse it."""
        keys = ("family", "digit", "role", "epochs", "limit_train", "limit_valid", "limit_test", "seed",
                "iwae_k", "compressors", "perturb", "typical_n", "data_source")
        sig = {k: getattr(self, k) for k in keys}
        sig["model"], sig["settings"] = self.spec.model, dict(sorted(self.settings.items()))
        if self.role == "main":
            sig.pop("perturb")
        if self.spec.kind != "likelihood" or self.role != "main":
            sig.pop("compressors"), sig.pop("typical_n")
        if self.spec.kind != "likelihood":
            sig.pop("iwae_k")
        return json.loads(json.dumps(sig))   # tuples as lists, as they read back from task.json


def recorded_signature(task):
    """The signature in the task folder's task.json (None when the task never started)."""
    path = os.path.join(task.folder, TASK_NAME)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def mismatch(task):
    """A one-line description of how the recorded task differs from `task`, or None."""
    old = recorded_signature(task)
    if old is None or old == task.signature():
        return None
    new = task.signature()
    diff = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return f"{task.folder} was started with other settings ({'; '.join(diff)})"


def is_done(task):
    return os.path.exists(task.scores_path) and mismatch(task) is None


# -- data -------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=6)
def _labelled(kind, split, data_root):
    """(x float32 (N, 784), labels) of a whole MNIST split in the representation `kind`."""
    from ..data import load_mnist, to_symmetric, to_unit
    from ..data.binarized import FALLBACK_SEED, ROWS
    images, labels = load_mnist(split)
    if kind == "binary":   # load_binarized's fallback draw: one Bernoulli sample per split, fixed seed
        unit = to_unit(images).reshape(len(images), -1)
        x = (np.random.default_rng([FALLBACK_SEED, sorted(ROWS).index(split)]).random(unit.shape) < unit)
        x = x.astype(np.float32)
    elif kind == "symmetric":
        x = to_symmetric(images).reshape(len(images), -1)
    else:
        raise ValueError(f"unknown data kind {kind!r}")
    x.flags.writeable = False
    labels = np.asarray(labels, np.int64)
    labels.flags.writeable = False
    return x, labels


def split_data(kind, split, exclude=None, limit=None):
    """(x, labels) of a split without the digit `exclude`, then its first `limit` examples."""
    x, y = _labelled(kind, split, os.environ.get("SCRATCHGEN_DATA"))
    if exclude is not None:
        keep = y != exclude
        x, y = x[keep], y[keep]
    if limit:
        x, y = x[:int(limit)], y[:int(limit)]
    return x, y


def perturb(x, rate, seed):
    """Ren et al.'s input perturbation for binary images: each pixel replaced, with probability
    `rate`, by a random bit (one fixed draw)."""
    rng = np.random.default_rng(seed)
    replace = rng.random(x.shape) < rate
    return np.where(replace, (rng.random(x.shape) < 0.5).astype(x.dtype), x)


def describe_data():
    """One line naming the MNIST the tasks use (the full files, or the bundled subset)."""
    from ..data import describe_mnist_source
    return describe_mnist_source()


# -- scoring ----------------------------------------------------------------------------------------------
def _call(fn, x, **kwargs):
    accepted = inspect.signature(fn).parameters
    return fn(x, **{k: v for k, v in kwargs.items() if k in accepted})


def nll_estimate(model, iwae_k):
    """How negative_log_likelihood estimates -log p(x) for `model`, in words."""
    if hasattr(model, "nll"):
        return "exact"
    if hasattr(model, "log_likelihood"):
        if "k" not in inspect.signature(model.log_likelihood).parameters:
            return "exact"
        return "the ELBO (IWAE k = 1)" if iwae_k == 1 else f"the IWAE bound, k = {iwae_k}"
    return "exact" if hasattr(model, "log_prob") else "the ELBO"


def negative_log_likelihood(model, x, shape, iwae_k=10, seed=0, batch=EVAL_BATCH):
    """-log p(x) in nats per example, from the first method the model has: nll(x) (exact, e.g.
    PixelCNN), log_likelihood(x, k) (an IWAE bound, e.g. the VAE's), log_prob(x), elbo(x)."""
    from ..grad_mode import no_grad
    from ..random import Generator
    from ..tensor import tensor
    g = Generator(seed)
    out = []
    with no_grad():
        for i in range(0, len(x), batch):
            xb = tensor(np.ascontiguousarray(x[i:i + batch]).reshape((-1,) + tuple(shape)))
            if hasattr(model, "nll"):
                v = model.nll(xb)
            elif hasattr(model, "log_likelihood"):
                v = -_call(model.log_likelihood, xb, k=iwae_k, generator=g)
            elif hasattr(model, "log_prob"):
                v = -_call(model.log_prob, xb)
            elif hasattr(model, "elbo"):
                v = -_call(model.elbo, xb, generator=g)
            else:
                raise TypeError(f"{type(model).__name__} has no nll, log_likelihood, log_prob or elbo to score with")
            out.append(_numpy(v))
    return np.concatenate(out)


def _numpy(v):
    """A Tensor (on any device) or an array as a flat float64 NumPy array."""
    if hasattr(v, "detach") and not isinstance(v, np.ndarray):
        v = v.detach()
        v = v.cpu() if hasattr(v, "cpu") else v
        v = v.numpy()
    return np.asarray(v, np.float64).reshape(-1)


def discriminator_logits(model, x, batch=EVAL_BATCH):
    """D's pre-sigmoid output on each example (high: looks like training data)."""
    from ..grad_mode import no_grad
    from ..tensor import tensor
    out = []
    with no_grad():
        for i in range(0, len(x), batch):
            out.append(_numpy(model.critic(tensor(np.ascontiguousarray(x[i:i + batch])))))
    return np.concatenate(out)


# -- the task ---------------------------------------------------------------------------------------------
def write_json(path, obj):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=str)
        f.write("\n")
    os.replace(tmp, path)


def save_scores(path, arrays, meta):
    """arrays and meta (as JSON) into `path`, atomically: a reader sees the whole file or none."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta, default=str)), **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_scores(path):
    """(arrays dict, meta dict) of a scores.npz."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
        meta = json.loads(str(z["meta"]))
    return arrays, meta


def _train(task, x_train, y_train, x_valid):
    """Train the family's model in task.folder (resuming from its checkpoint); return
    (model, spec, fit result, start epoch)."""
    from ..data import DataLoader
    from ..specs import create
    from ..train import EarlyStopping, fit, resume, seed_everything
    fam = task.spec
    config = {**task.settings, "epochs": task.epochs, "seed": task.seed, "limit_train": task.limit_train,
              "limit_eval": task.limit_valid}
    if task.role == "background":
        config["weight_decay"] = BACKGROUND_WEIGHT_DECAY
    spec = create(fam.model, config)
    cfg = spec.config
    seed_everything(int(cfg["seed"]))
    model = spec.build()
    optimizer = spec.make_optimizer(model)
    scheduler = spec.make_scheduler(optimizer)
    ema = spec.make_ema(model)
    arrays = (x_train.reshape((-1,) + fam.shape),) + ((y_train,) if fam.arity == 2 else ())
    loader = DataLoader(arrays, batch_size=int(cfg["batch_size"]), shuffle=True, drop_last=False, seed=int(cfg["seed"]))
    if fam.kind == "likelihood":
        monitor = ("valid_nll", "min")

        def valid_fn(m):
            return {"valid_nll": float(negative_log_likelihood(m, x_valid, fam.shape, task.iwae_k, task.seed).mean())}
    else:   # a GAN's losses say little about its discriminator as a detector: keep the last epoch
        monitor = ("epoch", "max")

        def valid_fn(m):
            return {"valid_d_real": float((1 / (1 + np.exp(-discriminator_logits(m, x_valid)))).mean())}
    stopper = EarlyStopping(*monitor, patience=cfg.get("patience", spec.patience) or None)
    start = 0
    if os.path.exists(os.path.join(task.folder, "checkpoint.npz")):
        start = resume(task.folder, model, optimizer, scheduler, loader, stopper, ema=ema,
                       load_extra=lambda extra: spec.load_training_state(model, extra.get("spec") or {}))
    write_json(os.path.join(task.folder, "config.json"),
                {"model": fam.model, **cfg, "ood_task": task.signature(), "data_source": task.data_source})
    result = fit(model, optimizer, loader, epochs=int(cfg["epochs"]), training_step=spec.training_step,
                 valid_fn=valid_fn, metrics_path=os.path.join(task.folder, "metrics.jsonl"), early_stopping=stopper,
                 checkpoint_dir=task.folder, start_epoch=start, scheduler=scheduler, progress=False, log=None,
                 ema=ema, extra_state=lambda: {"spec": spec.training_state(model)})
    return model, spec, result, stopper, start


def run_task(task):
    """Train and score one task (or read its finished scores); returns
    {'family', 'digit', 'role', 'arrays', 'meta', 'reused'}. Safe to run again after a kill."""
    from ..data import DATA_ENV
    from .scores import complexity
    if os.path.exists(task.scores_path) and mismatch(task) is None:
        arrays, meta = load_scores(task.scores_path)
        return {"family": task.family, "digit": task.digit, "role": task.role, "arrays": arrays, "meta": meta,
                "reused": True}
    problem = mismatch(task)
    if problem:
        raise ValueError(f"{problem}: use another study folder")
    saved_root = os.environ.get(DATA_ENV)
    if task.data_root:
        os.environ[DATA_ENV] = task.data_root
    t0, cpu0 = time.perf_counter(), time.process_time()
    try:
        with threads.limit(task.threads):   # from a Dask executor thread too (threads takes OpenBLAS's control)
            os.makedirs(task.folder, exist_ok=True)
            write_json(os.path.join(task.folder, TASK_NAME), task.signature())
            fam = task.spec
            x_train, y_train = split_data(fam.data, "train", exclude=task.digit, limit=task.limit_train)
            x_valid, _ = split_data(fam.data, "valid", exclude=task.digit, limit=task.limit_valid)
            if task.role == "background":
                if fam.data != "binary":
                    raise ValueError(f"{task.family}: a background model needs binary data")
                x_train = perturb(x_train, task.perturb, [task.seed, task.digit, 1])
                x_valid = perturb(x_valid, task.perturb, [task.seed, task.digit, 2])
            model, spec, result, stopper, start = _train(task, x_train, y_train, x_valid)
            train_s = time.perf_counter() - t0
            model.eval()
            x_test, y_test = split_data(fam.data, "test", limit=task.limit_test)
            arrays = {"labels": y_test}
            if fam.kind == "likelihood":
                arrays["nll"] = negative_log_likelihood(model, x_test, fam.shape, task.iwae_k, task.seed)
                if task.role == "main":
                    typical = x_train[:task.typical_n]
                    arrays["train_nll_mean"] = np.array(
                        negative_log_likelihood(model, typical, fam.shape, task.iwae_k, task.seed).mean())
                    for method in task.compressors:
                        arrays[f"bits_{method}"] = complexity(x_test, method)
            else:
                arrays["logit"] = discriminator_logits(model, x_test)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        if saved_root is None:
            os.environ.pop(DATA_ENV, None)
        else:
            os.environ[DATA_ENV] = saved_root
    epochs_run = int(result.last_epoch)
    meta = {"task": task.signature(), "model": fam.model, "epochs_run": epochs_run, "resumed_after_epoch": start,
            "best_epoch": stopper.best_epoch, "train_images": int(len(x_train)), "valid_images": int(len(x_valid)),
            "test_images": int(len(y_test)), "examples_seen": epochs_run * int(len(x_train)),
            "parameters": int(sum(p.data.size for p in model.parameters())),
            "train_s": round(train_s, 3), "score_s": round(wall - train_s, 3), "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3), "threads": task.threads, "host": socket.gethostname(), "pid": os.getpid(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if fam.kind == "likelihood":
        meta["nll_estimate"] = nll_estimate(model, task.iwae_k)
    if fam.kind == "likelihood" and task.role == "main":
        meta["train_nll_mean"] = float(arrays["train_nll_mean"])
        meta["test_nll_mean"] = float(arrays["nll"].mean())
    if not math.isfinite(float(np.sum(arrays.get("nll", arrays.get("logit", 0.0))))):
        meta["warning"] = "non-finite scores"
    save_scores(task.scores_path, arrays, meta)
    return {"family": task.family, "digit": task.digit, "role": task.role, "arrays": arrays, "meta": meta,
            "reused": False}
