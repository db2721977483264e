"""`scratchgen train gan` and `cgan`: the GANs of scratchgen.models.gan on MNIST, with Algorithm 1's
alternating training, FID/IS/Parzen evaluation and the adversarial pictures. wgan.py, dcgan.py and
infogan.py build on the classes here.

Algorithm 1 (Goodfellow et al., 2014): each iteration takes k = n_critic discriminator steps, each
on m real examples and m fresh samples G(z), then one generator step on m fresh samples. It only
calls the model's `discriminator_loss` and `generator_loss`, so the same loop trains the WGAN and
WGAN-GP objectives and any pair of networks.
"""
import math
import os

import numpy as np

from ..grad_mode import no_grad
from ..models.gan import GAN, Discriminator, Generator, HingeGAN
from ..ops.shape import concatenate
from ..train import gradient_step
from .registry import ModelSpec, register

# Evaluation runs the networks on this many examples at a time: a conv layer's window matrix for
# 1000 images is hundreds of MB, which costs fresh pages on every call; 100 stays in the heap.
EVAL_CHUNK = 100


class AdversarialOptimizer:
    """The two players' optimizers as one object for `fit` and the checkpoints: `training_step`
    steps each through `.generator` and `.discriminator`; `zero_grad`, `param_groups`,
    `state_dict` and `load_state_dict` cover both, so checkpoints resume exactly."""

    def __init__(self, generator, discriminator):
        self.generator, self.discriminator = generator, discriminator

    @property
    def param_groups(self):
        return self.generator.param_groups + self.discriminator.param_groups

    def zero_grad(self, set_to_none=True):
        self.generator.zero_grad(set_to_none)
        self.discriminator.zero_grad(set_to_none)

    def step(self, closure=None):
        raise TypeError("an AdversarialOptimizer has no single step: step .generator and .discriminator "
                        "(AdversarialSpec.training_step does, with scratchgen.train.gradient_step)")

    def state_dict(self):
        return {"generator": self.generator.state_dict(), "discriminator": self.discriminator.state_dict()}

    def load_state_dict(self, state):
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])


def _chunks(n, parts):
    """Boundaries splitting n rows into min(parts, n) nearly equal consecutive chunks."""
    parts = max(1, min(int(parts), n))
    edges = np.linspace(0, n, parts + 1).round().astype(int)
    return list(zip(edges[:-1], edges[1:]))


def discriminator_steps(model, d_optimizer, real, labels=None):
    """The inner loop of Algorithm 1: one discriminator (critic) step per chunk of `real`,
    model.n_critic chunks, each against fresh samples G(z) of the same size. Returns the last
    step's stats as floats, and the size m of the chunks."""
    model.generator.requires_grad_(False)
    model.discriminator.requires_grad_(True)
    stats = {}
    for a, b in _chunks(len(real), model.n_critic):
        x, y = real[a:b], None if labels is None else labels[a:b]
        with no_grad():
            fake = model(model.noise(b - a, like=x), y)
        loss, stats = model.discriminator_loss(x, fake, y)
        gradient_step(d_optimizer, loss)
        model.after_discriminator_step()
    return {k: float(v.item()) if hasattr(v, "item") else float(v) for k, v in stats.items()}, b - a


def generator_loss(model, n, labels=None, like=None):
    """L_G on n fresh samples, with the discriminator frozen (no gradients into its weights)."""
    model.discriminator.requires_grad_(False)
    model.generator.requires_grad_(True)
    fake = model(model.noise(n, like=like), labels)
    return model.generator_loss(fake, labels)


def train_step(model, optimizer, real, labels=None):
    """One iteration of Algorithm 1: model.n_critic discriminator steps on the chunks of `real`
    (so pass n_critic * m rows), then one generator step on m fresh samples.
    `optimizer` is an AdversarialOptimizer. Returns {'g_loss', 'd_loss', ...} as floats."""
    stats, m = discriminator_steps(model, optimizer.discriminator, real, labels)
    y = None if labels is None else labels[len(real) - m:]
    return {"g_loss": gradient_step(optimizer.generator, generator_loss(model, m, y, like=real)), **stats}


class AdversarialSpec(ModelSpec):
    """A ModelSpec for adversarial training: `make_optimizer` returns an AdversarialOptimizer and
    `training_step` runs one iteration of Algorithm 1 on each loader batch.

    One loader batch feeds one generator iteration: batch_size = n_critic * m real examples
    (the critic sees m at a time), so an epoch is one pass of the critic over the data."""

    n_samples = 64
    # settings the code falls back on when a model's defaults leave them out
    options = dict(optimizer="adam", betas=[0.5, 0.999], clip_value=0.01, gp_weight=10.0)

    def make_optimizer(self, model):
        from .. import optim
        c = self.config
        betas = tuple(c.get("betas", (0.5, 0.999)))
        if c.get("optimizer", "adam") == "rmsprop":
            make = lambda params: optim.RMSProp(params, lr=c["lr"])  # noqa: E731
        else:
            make = lambda params: optim.Adam(params, lr=c["lr"], betas=betas)  # noqa: E731
        return AdversarialOptimizer(make(model.generator.parameters()), make(model.discriminator.parameters()))

    def averaged_parameters(self, model):
        return model.generator.parameters()  # the critic keeps its live weights: it is not sampled

    def training_step(self, model, batch, optimizer):
        real, labels = batch[0], (batch[1] if model.num_classes and len(batch) > 1 else None)
        stats = train_step(model, optimizer, real, labels)
        return {"loss": stats.pop("g_loss"), **stats}

    def loss(self, model, batch):
        """The generator's loss on fresh samples (what the epoch's train_loss reports); training
        goes through `training_step`, which also steps the discriminator."""
        labels = batch[1] if model.num_classes and len(batch) > 1 else None
        return generator_loss(model, len(batch[0]), labels, like=batch[0])


def _mnist_symmetric(split, limit=None):
    from ..data import load_mnist, to_symmetric
    images, labels = load_mnist(split, limit=limit)
    return to_symmetric(images).reshape(len(images), -1), np.asarray(labels, np.int64)


class MNISTAdversarialSpec(AdversarialSpec):
    """GAN-family models on MNIST (pixels in [-1, 1]). Each epoch is scored with the FID of
    `eval_samples` samples against the validation digits, in the features of a scratchgen MNIST
    classifier (sg.metrics.mnist_classifier: loaded from the cache, trained once if missing);
    the test split adds the Inception Score and a Parzen-window log-likelihood (sigma chosen on
    the validation digits, `parzen_samples` samples). `--set metric=none` leaves out FID and IS
    (no classifier is needed; best.npz is then the last epoch)."""

    dataset = "mnist"
    conditional = False

    def __init__(self, config=None):
        super().__init__(config)
        if self.config.get("metric", "fid") == "none":
            self.monitor = ("epoch", "max")
        self._data = {}

    def build(self):
        c = self.config
        k = 10 if self.conditional else 0
        G = Generator(c["latent_dim"], c["g_hidden"], 784, num_classes=k, activation="relu", output="tanh")
        D = Discriminator(784, c["d_hidden"], num_classes=k, activation="leaky_relu", dropout=c.get("d_dropout", 0.0),
                          spectral_norm=c.get("d_spectral_norm", False))
        return self.objective(G, D, k)

    def objective(self, G, D, num_classes):
        c = self.config
        if c.get("loss", "bce") == "hinge":
            if c["label_smoothing"] or c["generator_loss"] != "non_saturating":
                raise ValueError("loss=hinge replaces both losses: leave label_smoothing at 0 and generator_loss "
                                 f"at non_saturating (got {c['label_smoothing']}, {c['generator_loss']!r})")
            return HingeGAN(G, D, c["latent_dim"], num_classes, c["n_critic"])
        if c.get("loss", "bce") != "bce":
            raise ValueError(f"loss must be 'bce' (the paper's game) or 'hinge', got {c['loss']!r}")
        return GAN(G, D, c["latent_dim"], num_classes, c["generator_loss"], c["label_smoothing"], c["n_critic"])

    def data(self, split):
        limit = self.config.get("limit_train") if split == "train" else self.config.get("limit_eval")
        if (split, limit) not in self._data:
            self._data[split, limit] = _mnist_symmetric(split, limit)
        return self._data[split, limit]

    def train_dataset(self):
        return self.data("train")

    def samples_unit(self, model, n):
        """n samples as (n, 784) pixels in [0, 1], classes evenly spread for a conditional model."""
        out = []
        for i in range(0, n, EVAL_CHUNK):
            k = min(EVAL_CHUNK, n - i)
            labels = (np.arange(i, i + k) % 10) if model.num_classes else None
            out.append(model.sample(k, labels).cpu().numpy())
        return (np.clip(np.concatenate(out), -1, 1) + 1) / 2

    @no_grad()
    def evaluate(self, model, split):
        from .. import metrics
        c = self.config
        x, _ = self.data(split)
        out = self._discriminator_scores(model, split)
        reference = (x + 1) / 2
        if c.get("metric", "fid") == "fid":
            samples = self.samples_unit(model, int(c["eval_samples"]))
            clf = metrics.mnist_classifier()
            out[f"{split}_fid"] = metrics.mnist_fid(samples, reference, classifier=clf)
            if split == "test":
                out["test_inception_score"], out["test_inception_score_std"] = metrics.mnist_inception_score(
                    samples, classifier=clf)
        if split == "test" and c.get("parzen_samples"):
            valid = (self.data("valid")[0] + 1) / 2
            parzen = metrics.parzen_window(self.samples_unit(model, int(c["parzen_samples"])), valid, reference)
            out.update({"test_parzen_ll": parzen["mean"], "test_parzen_sem": parzen["sem"],
                        "test_parzen_sigma": parzen["sigma"]})
        return out

    @no_grad()
    def _discriminator_scores(self, model, split):
        """Mean discriminator output on real digits of the split and on as many samples."""
        from ..tensor import tensor
        x, y = self.data(split)
        x, y = x[:1000], (y[:1000] if model.num_classes else None)
        like = next(model.generator.parameters())
        real, fake = [], []
        for i in range(0, len(x), EVAL_CHUNK):
            yi = None if y is None else y[i:i + EVAL_CHUNK]
            real.append(model.critic(tensor(x[i:i + EVAL_CHUNK], device=like.device), yi))
            fake.append(model.critic(model(model.noise(len(real[-1]), like=like), yi), yi))
        scores = model.readouts(concatenate(real), concatenate(fake))
        return {f"{split}_{k}": v for k, v in scores.items()}

    def sample(self, model, n, path):
        from ..plots import image_grid
        if model.num_classes:
            rows = 10
            per = max(1, n // rows)
            labels = np.repeat(np.arange(rows), per)
            images = (model.sample(len(labels), labels).cpu().numpy() + 1) / 2
            return image_grid(images.reshape(-1, 28, 28), path, nrow=per,
                              title=f"{self.name}: one row per class 0-9")
        images = self.samples_unit(model, n)
        return image_grid(images.reshape(-1, 28, 28), path, nrow=int(math.ceil(math.sqrt(n))),
                          title=f"{self.name}: samples")

    def visualize(self, model, out_dir, n=None):
        """samples.png, nearest_neighbours.png (samples next to their closest training digits)
        and, after training, adversarial_curves.png (D scores and both losses per epoch)."""
        from .. import metrics
        path = self.sample(model, n or self.n_samples, os.path.join(out_dir, "samples.png"))
        train = (self.data("train")[0] + 1) / 2
        metrics.nearest_neighbour_grid(self.samples_unit(model, 8), train,
                                       os.path.join(out_dir, "nearest_neighbours.png"),
                                       k=5, title="samples (left) and their 5 nearest training digits (L2)")
        log = os.path.join(out_dir, "metrics.jsonl")
        if os.path.exists(log):
            adversarial_curves(log, os.path.join(out_dir, "adversarial_curves.png"), title=self.name)
        return path


def adversarial_curves(metrics, path, title=None):
    """Per-epoch curves from a metrics.jsonl (or records): D(x) and D(G(z)) in one panel, the
    losses of G and D in another, and the FID and IS when logged."""
    from .. import plots
    records = plots.read_jsonl(metrics) if isinstance(metrics, (str, os.PathLike)) else list(metrics)
    panels = [("discriminator outputs", ["train_d_real", "train_d_fake", "valid_d_real", "valid_d_fake"]),
              ("losses", ["train_loss", "train_d_loss"]),
              ("critic's Wasserstein estimate", ["train_wasserstein"]),
              ("FID (validation)", ["valid_fid"]),
              ("Inception Score (validation samples)", ["valid_is"])]
    panels = [(t, [k for k in keys if any(k in r for r in records)]) for t, keys in panels]
    panels = [(t, keys) for t, keys in panels if keys]
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.2 * max(1, len(panels)), 3.2), squeeze=False)
    names = {"train_loss": "G loss", "train_d_loss": "D loss"}
    for ax, (t, keys) in zip(axes[0], panels):
        for k in keys:
            pts = [(r["epoch"], r[k]) for r in records if k in r]
            ax.plot(*zip(*pts), marker="o" if len(pts) < 30 else None, markersize=3, label=names.get(k, k))
        ax.set_title(t)
        ax.set_xlabel("epoch")
        if t.startswith("FID"):
            ax.set_yscale("log")   # from hundreds to single digits
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return plots._save(fig, path)


MNIST_DEFAULTS = dict(epochs=100, batch_size=64, lr=2e-4, betas=[0.5, 0.999], latent_dim=64,
                      g_hidden=[256, 256], d_hidden=[256, 256], d_dropout=0.0, d_spectral_norm=False,
                      loss="bce", generator_loss="non_saturating",
                      label_smoothing=0.0, n_critic=1, metric="fid", eval_samples=5000, parzen_samples=10000,
                      limit_train=None, limit_eval=None)


@register("gan")
class GANSpec(MNISTAdversarialSpec):
    description = "MLP GAN on MNIST (Goodfellow et al. 2014; non-saturating G loss, Adam 2e-4, b1 0.5)"
    defaults = dict(MNIST_DEFAULTS)
    monitor = ("valid_fid", "min")


@register("cgan")
class CGANSpec(MNISTAdversarialSpec):
    description = "conditional MLP GAN on MNIST (Mirza & Osindero 2014; one-hot label concatenated to G and D)"
    defaults = dict(MNIST_DEFAULTS)
    monitor = ("valid_fid", "min")
    conditional = True
