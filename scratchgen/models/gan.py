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

Algorithm 1 itself (k discriminator steps, then one generator step) is training, not model:
`scratchgen.specs.gan.AdversarialSpec.training_step` runs it with `model.discriminator_loss`
and `model.generator_loss` only, so the same loop trains WGAN and WGAN-GP (wgan.py, which
override the two losses) and any G/D architecture.

The MLP GAN for MNIST: G 64 -> 256 -> 256 -> 784, ReLU,
tanh output; D 784 -> 256 -> 256 -> 1, LeakyReLU(0.2); pixels scaled to [-1, 1]; Adam with
lr 2e-4, betas (0.5, 0.999) for both players (Radford et al., 2016's settings); batch 64.
"""
import math

import numpy as np

from .. import nn
from ..creation import randn
from ..grad_mode import no_grad
from ..losses import binary_cross_entropy_with_logits
from ..ops.shape import concatenate
from ..tensor import Tensor, float32

__all__ = ["GAN", "HingeGAN", "Generator", "Discriminator"]

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
        self.net = nn.mlp([latent_dim + num_classes, *hidden, out_dim], activation, output)

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
        self.net = nn.mlp([in_dim + num_classes, *hidden, 1], activation, dropout=dropout, spectral_norm=spectral_norm)

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
    training loop may lower it as training goes.
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
