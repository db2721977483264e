"""Generative Adversarial Nets (Goodfellow et al., 2014) and conditional GANs (Mirza & Osindero, 2014).

A generator G maps noise z ~ p_z to data space; a discriminator D maps a point x to the
probability that x came from the data rather than from G. They play the two-player game

    min_G max_D V(D, G) = E_{x ~ p_data}[log D(x)] + E_{z ~ p_z}[log(1 - D(G(z)))].      (1)

Algorithm 1 of the paper: every training iteration takes k steps of stochastic gradient
ascent on V for D (k = 1 in the paper's experiments), then one step of descent for G.

Here D outputs a logit a(x) and D(x) = sigmoid(a(x)), so that every log is finite:
log D(x) = -softplus(-a(x)) and log(1 - D(x)) = -softplus(a(x)). The losses minimised are

    discriminator   L_D = -E_x[log D(x)] - E_z[log(1 - D(G(z)))]
                        = BCE(a(x), 1) + BCE(a(G(z)), 0)
        with one-sided label smoothing (Salimans et al., 2016, Sec. 3.4) the real target is
        1 - s instead of 1 (fake targets stay 0): -E_x[(1-s) log D(x) + s log(1 - D(x))] - ...
    generator, saturating (the minimax game (1) itself)
                    L_G = E_z[log(1 - D(G(z)))]  = -BCE(a(G(z)), 0)
    generator, non-saturating (the default; Sec. 3: "rather than training G to minimize
        log(1 - D(G(z))) we can train G to maximize log D(G(z)) ... much stronger gradients
        early in learning")
                    L_G = -E_z[log D(G(z))]      = BCE(a(G(z)), 1)

Conditional GAN: both players also see a label y, "fed into both the discriminator and the
generator as an additional input layer". Here y is one-hot and concatenated to the inputs:
G([z, onehot(y)]) and D([x, onehot(y)]).

HingeGAN swaps both losses for the hinge loss of the SN-GAN paper (Miyato et al., 2018):
L_D = E_x[max(0, 1 - a(x))] + E_z[max(0, 1 + a(G(z)))], L_G = -E_z[a(G(z))].

The training code (`discriminator_steps`, `generator_step`, `train_step`) only uses
`model.discriminator_loss` and `model.generator_loss`, so the same loop trains WGAN and
WGAN-GP (wgan.py, which override the two losses) and any G/D architecture: the MNIST MLPs
below, or the 2-D toy MLPs of the WGAN-GP paper.

MLP GAN for MNIST (the defaults of `scratchgen train gan`): G 64 -> 256 -> 256 -> 784, ReLU,
tanh output; D 784 -> 256 -> 256 -> 1, LeakyReLU(0.2); pixels scaled to [-1, 1]; Adam with
lr 2e-4, betas (0.5, 0.999) for both players (Radford et al., 2016's settings); batch 64.
"""
import math
import os

import numpy as np

from .. import nn
from ..creation import randn
from ..grad_mode import no_grad
from ..losses import binary_cross_entropy_with_logits
from ..ops.shape import concatenate
from ..tensor import Tensor, float32
from .registry import ModelSpec, register

__all__ = ["GAN", "HingeGAN", "Generator", "Discriminator"]

# Evaluation runs the networks on this many examples at a time: a conv layer's window matrix for
# 1000 images is hundreds of MB, which costs fresh pages on every call; 100 stays in the heap.
EVAL_CHUNK = 100
ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "tanh": nn.Tanh,
               "elu": nn.ELU, "softplus": nn.Softplus}


def mlp(sizes, activation="relu", output=None, dropout=0.0, spectral_norm=False):
    """Linear layers between consecutive `sizes`, `activation` (then dropout, if any) after every
    hidden one and `output` ('tanh', 'sigmoid' or None) after the last; spectral_norm wraps
    every Linear in nn.SpectralNorm."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.SpectralNorm(nn.Linear(n_in, n_out)) if spectral_norm else nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
            if dropout:
                layers.append(nn.Dropout(dropout))
    if output == "tanh":
        layers.append(nn.Tanh())
    elif output == "sigmoid":
        layers.append(nn.Sigmoid())
    elif output is not None:
        raise ValueError(f"unknown output activation {output!r}")
    return nn.Sequential(*layers)


def one_hot(labels, num_classes, dtype=float32, like=None):
    """(N,) integer labels -> (N, num_classes) Tensor of 0s and 1s (on like's device)."""
    y = labels.data if isinstance(labels, Tensor) else labels
    xp = like.xp if like is not None else np
    y = xp.asarray(y)
    if y.ndim != 1 or (y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes)):
        raise ValueError(f"one_hot: expected labels of shape (N,) in [0, {num_classes}), got shape {y.shape}")
    return Tensor(xp.eye(num_classes, dtype=dtype)[y])


class Generator(nn.Module):
    """G(z) or, with num_classes > 0, G(z | y) = net([z, onehot(y)]): an MLP from noise to data."""

    def __init__(self, latent_dim=64, hidden=(256, 256), out_dim=784, num_classes=0, activation="relu",
                 output="tanh"):
        super().__init__()
        self.latent_dim, self.out_dim, self.num_classes = latent_dim, out_dim, num_classes
        self.net = mlp([latent_dim + num_classes, *hidden, out_dim], activation, output)

    def forward(self, z, y=None):
        return self.net(_condition(z, y, self.num_classes))


class Discriminator(nn.Module):
    """D(x) or D(x | y) = net([x, onehot(y)]): an MLP from data to one real number per example
    (a logit for the GAN, the critic's value for WGAN). Returns shape (N,). `dropout` after each
    hidden layer, as in Goodfellow et al.'s and Mirza & Osindero's discriminators (GAN only: it
    would make a WGAN-GP critic's gradient penalty random). `spectral_norm`: every layer runs
    with W / sigma(W) (Miyato et al. 2018)."""

    def __init__(self, in_dim=784, hidden=(256, 256), num_classes=0, activation="leaky_relu", dropout=0.0,
                 spectral_norm=False):
        super().__init__()
        self.in_dim, self.num_classes = in_dim, num_classes
        self.net = mlp([in_dim + num_classes, *hidden, 1], activation, dropout=dropout, spectral_norm=spectral_norm)

    def forward(self, x, y=None):
        out = self.net(_condition(x, y, self.num_classes))
        return out.reshape(out.shape[0])


def _condition(x, y, num_classes):
    if not num_classes:
        if y is not None:
            raise ValueError("labels given to an unconditional network (num_classes=0)")
        return x
    if y is None:
        raise ValueError(f"a conditional network (num_classes={num_classes}) needs labels")
    return concatenate([x, one_hot(y, num_classes, x.dtype, like=x)], axis=1)


# -- the game ------------------------------------------------------------------------------------
def gan_discriminator_loss(real_logits, fake_logits, label_smoothing=0.0):
    """L_D = BCE(a(x), 1 - s) + BCE(a(G(z)), 0), each averaged over its batch."""
    real_target = Tensor(real_logits.xp.full(real_logits.shape, 1.0 - label_smoothing, real_logits.dtype))
    fake_target = Tensor(fake_logits.xp.zeros(fake_logits.shape, fake_logits.dtype))
    return (binary_cross_entropy_with_logits(real_logits, real_target)
            + binary_cross_entropy_with_logits(fake_logits, fake_target))


def gan_generator_loss(fake_logits, saturating=False):
    """Non-saturating -E log D(G(z)) (default), or the minimax game's E log(1 - D(G(z)))."""
    if saturating:
        return -(fake_logits.softplus().mean())         # log(1 - sigmoid(a)) = -softplus(a)
    return (-fake_logits).softplus().mean()             # -log sigmoid(a) = softplus(-a)


def most_realistic(fake_logits, fraction):
    """The ceil(fraction * N) largest of the N logits (all of them when fraction is 1)."""
    if fraction >= 1.0:
        return fake_logits
    k = max(1, math.ceil(fraction * fake_logits.shape[0]))
    return fake_logits[fake_logits.xp.argsort(-fake_logits.data)[:k]]


class GAN(nn.Module):
    """The two players and the value function. `generator` and `discriminator` are any
    modules called as G(z[, y]) and D(x[, y]) (D returning one logit per example).

    generator_loss: 'non_saturating' (default) or 'saturating'. label_smoothing: one-sided
    (real targets 1 - s). n_critic: discriminator steps per generator step (k, Algorithm 1).
    top_k: the fraction of each generator batch that L_G averages over, the samples D rates
    most realistic (Sinha et al., 2020, "Top-k training of GANs"); 1.0 uses them all. A
    training loop may lower it as training goes (`examples/gan_mnist.py --top-k-min`).
    """
    n_critic = 1

    def __init__(self, generator, discriminator, latent_dim, num_classes=0, generator_loss="non_saturating",
                 label_smoothing=0.0, n_critic=1, top_k=1.0):
        super().__init__()
        if generator_loss not in ("non_saturating", "saturating"):
            raise ValueError(f"generator_loss must be 'non_saturating' or 'saturating', got {generator_loss!r}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.generator, self.discriminator = generator, discriminator
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.saturating = generator_loss == "saturating"
        self.label_smoothing, self.n_critic = label_smoothing, int(n_critic)
        self.top_k = top_k

    @property
    def top_k(self):
        return self._top_k

    @top_k.setter
    def top_k(self, fraction):
        if not 0 < fraction <= 1:
            raise ValueError(f"top_k is the fraction of the generator's batch to keep, in (0, 1]; got {fraction}")
        self._top_k = float(fraction)

    def noise(self, n, like=None):
        """z ~ N(0, I), from scratchgen's global generator (seeded, checkpointed)."""
        dtype = like.dtype if like is not None else float32
        return randn(n, self.latent_dim, dtype=dtype, device=None if like is None else like.device)

    def forward(self, z, y=None):
        return self.generator(z, y) if self.num_classes else self.generator(z)

    def critic(self, x, y=None):
        return self.discriminator(x, y) if self.num_classes else self.discriminator(x)

    @no_grad()
    def sample(self, n, labels=None):
        """n samples G(z) (N, data dims); a conditional model cycles through the labels 0..K-1
        unless `labels` are given."""
        if self.num_classes and labels is None:
            labels = np.arange(n) % self.num_classes
        like = next(self.generator.parameters())
        return self(self.noise(n, like), labels)

    # Subclasses (WGAN, WGAN-GP) override these two and after_discriminator_step.
    def discriminator_loss(self, real, fake, labels=None):
        """(L_D, stats) for real and generated batches; stats: mean D(x) and D(G(z)) as probabilities."""
        real_logits, fake_logits = self.critic(real, labels), self.critic(fake, labels)
        loss = gan_discriminator_loss(real_logits, fake_logits, self.label_smoothing)
        return loss, {"d_loss": loss, **self.readouts(real_logits, fake_logits)}

    def readout(self, a):
        """What to report of the discriminator's output: D(x) = sigmoid(a(x)), a probability."""
        return a.sigmoid()

    def readouts(self, real_out, fake_out):
        """Mean reported output on the real and on the generated batch (floats, no graph)."""
        with no_grad():
            return {"d_real": float(self.readout(Tensor(real_out.data)).mean().item()),
                    "d_fake": float(self.readout(Tensor(fake_out.data)).mean().item())}

    def generator_loss(self, fake, labels=None):
        return gan_generator_loss(most_realistic(self.critic(fake, labels), self.top_k), self.saturating)

    def after_discriminator_step(self):
        pass


def hinge_discriminator_loss(real_out, fake_out):
    """L_D = E max(0, 1 - D(x)) + E max(0, 1 + D(G(z))): D stops pushing once a margin is met."""
    return (1.0 - real_out).relu().mean() + (1.0 + fake_out).relu().mean()


class HingeGAN(GAN):
    """The hinge game of Lim & Ye (2017) and the SN-GAN paper (Miyato et al. 2018):
    L_D = E max(0, 1 - D(x)) + E max(0, 1 + D(G(z))), L_G = -E D(G(z)). D's output is a raw
    score (no sigmoid), so the curves report it as it is."""

    def __init__(self, generator, discriminator, latent_dim, num_classes=0, n_critic=1, top_k=1.0):
        super().__init__(generator, discriminator, latent_dim, num_classes, n_critic=n_critic, top_k=top_k)

    def readout(self, a):
        return a

    def discriminator_loss(self, real, fake, labels=None):
        real_out, fake_out = self.critic(real, labels), self.critic(fake, labels)
        loss = hinge_discriminator_loss(real_out, fake_out)
        return loss, {"d_loss": loss, **self.readouts(real_out, fake_out)}

    def generator_loss(self, fake, labels=None):
        return -most_realistic(self.critic(fake, labels), self.top_k).mean()


# -- training ------------------------------------------------------------------------------------
class AdversarialOptimizer:
    """Two optimizers behind one optimizer's interface, for the single-optimizer training loop
    (`scratchgen.train.fit`): `step()` steps the generator (fit backpropagates the generator's
    loss), the discriminator is stepped inside `discriminator_steps`; `zero_grad`,
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
        return self.generator.step(closure)

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
        d_optimizer.zero_grad()
        loss, stats = model.discriminator_loss(x, fake, y)
        loss.backward()
        d_optimizer.step()
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
    optimizer.generator.zero_grad()
    loss = generator_loss(model, m, y, like=real)
    loss.backward()
    optimizer.generator.step()
    return {"g_loss": float(loss.item()), **stats}


# -- what the command line trains ------------------------------------------------------------------
class AdversarialSpec(ModelSpec):
    """A ModelSpec for adversarial training through `fit`'s one-loss loop: `make_optimizer`
    returns an AdversarialOptimizer (kept as self.optimizer), `loss` takes the discriminator
    steps itself and returns the generator's loss, which fit backpropagates and steps.

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
        self.optimizer = AdversarialOptimizer(make(model.generator.parameters()),
                                              make(model.discriminator.parameters()))
        return self.optimizer

    def averaged_parameters(self, model):
        return model.generator.parameters()  # the critic keeps its live weights: it is not sampled

    def loss(self, model, batch):
        if getattr(self, "optimizer", None) is None:
            raise RuntimeError("call make_optimizer(model) first: the discriminator's steps need its optimizer")
        real, labels = batch[0], (batch[1] if model.num_classes and len(batch) > 1 else None)
        stats, m = discriminator_steps(model, self.optimizer.discriminator, real, labels)
        y = None if labels is None else labels[len(real) - m:]
        return {"loss": generator_loss(model, m, y, like=real), **stats}


def _mnist_symmetric(split, limit=None):
    from ..data import load_mnist, to_symmetric
    images, labels = load_mnist(split)
    if limit:
        images, labels = images[:limit], labels[:limit]
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
