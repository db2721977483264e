"""Wasserstein GAN (Arjovsky, Chintala & Bottou, 2017) and WGAN with gradient penalty
(Gulrajani, Ahmed, Arjovsky, Dumoulin & Courville, 2017).

WGAN. The critic f (no sigmoid) estimates the Earth-Mover distance through the
Kantorovich-Rubinstein duality

    W(P_r, P_g) = sup_{||f||_L <= 1}  E_{x ~ P_r}[f(x)] - E_{x ~ P_g}[f(x)].

Algorithm 1 (WGAN): n_critic = 5 critic steps of RMSProp (lr 5e-5), each minimising

    L_critic = E_z[f(G(z))] - E_x[f(x)]

and then clipping every critic parameter to [-c, c], c = 0.01 ("so that f is K-Lipschitz
for some K"); then one generator step on L_G = -E_z[f(G(z))].

WGAN-GP. Clipping biases the critic towards very simple functions and makes its gradients
explode or vanish (Section 3 of Gulrajani et al.); Algorithm 1 there replaces it with a
penalty on the critic's gradient norm at random points between real and generated samples:

    L_critic = E[f(x~)] - E[f(x)] + lambda * E_{x^}[(||grad_{x^} f(x^)||_2 - 1)^2],
    x^ = eps * x + (1 - eps) * x~,   eps ~ U[0, 1], one eps per sample,

with lambda = 10, n_critic = 5, Adam (lr 1e-4, beta1 = 0, beta2 = 0.9 in the paper's
Algorithm 1; beta1 = 0.5 in the released code, the default here). The penalty is two-sided
(it pulls the norm towards 1 from both sides), and it is differentiated w.r.t. the critic's
weights through grad_{x^} f, computed with create_graph=True (double backprop). The critic
must not use batch normalisation, which would couple the examples the penalty treats apart.

The toy experiments (Figure 1; `scratchgen train wgan_gp_toy`, the wgan_gp_toy recipe):
2-D data (8 Gaussians, 25 Gaussians, Swiss roll), G: 2 -> 512 -> 512 -> 512 -> 2 and
critic 2 -> 512 -> 512 -> 512 -> 1, ReLU, noise z ~ N(0, I_2), batch 256, as in the
released gan_toy.py (which uses lambda = 0.1 for the toy sets; the paper's 10 is the default
here, `--set gp_weight=0.1` gives theirs).
"""
import numpy as np

from .. import nn
from ..autograd import grad
from ..creation import rand
from ..ops.elementwise import where
from ..tensor import Tensor, tensor
from .gan import GAN, Discriminator, Generator, HingeGAN

__all__ = ["WGAN", "WGANGP"]


def gradient_penalty(critic, real, fake, labels=None, epsilon=None):
    """E[(||grad_{x^} f(x^)||_2 - 1)^2] over x^ = eps * real + (1 - eps) * fake, and x^.

    `critic(x)` (or critic(x, labels)) returns one value per example. `epsilon` has one value
    per example (shape (N,) or broadcastable, e.g. (N, 1)); by default it is drawn U[0, 1) from
    scratchgen's global generator. The result is differentiable w.r.t. the critic's weights
    (and w.r.t. real, fake and epsilon when they require grad)."""
    n = real.shape[0]
    per_example = (n,) + (1,) * (real.ndim - 1)
    if epsilon is None:
        epsilon = rand(*per_example, dtype=real.dtype, device=real.device)
    elif not isinstance(epsilon, Tensor):
        epsilon = tensor(np.asarray(epsilon, dtype=real.dtype), device=real.device)
    if epsilon.ndim == 1:
        epsilon = epsilon.reshape(per_example)
    x_hat = epsilon * real + (1 - epsilon) * fake
    if not x_hat.requires_grad:  # the usual case: real and detached fakes are constants
        x_hat = x_hat.detach().requires_grad_()
    out = critic(x_hat) if labels is None else critic(x_hat, labels)
    g, = grad(out.sum(), x_hat, create_graph=True)
    norm = _norm_rows(g.reshape(n, -1))
    return ((norm - 1) ** 2).mean(), x_hat


def _norm_rows(g):
    """||g_i||_2 per row, with gradient 0 (not 0 * inf = nan) where g_i = 0, as torch.norm:
    a ReLU critic can be flat around a point (every unit dead), so a zero gradient does occur."""
    sq = (g * g).sum(axis=1)
    nonzero = sq.data > 0
    return where(nonzero, where(nonzero, sq, 1.0).sqrt(), 0.0)


class WGAN(GAN):
    """WGAN with weight clipping: critic loss E f(G(z)) - E f(x), every critic parameter
    clipped to [-clip_value, clip_value] after each critic step; generator loss -E f(G(z))."""

    def __init__(self, generator, critic, latent_dim, num_classes=0, clip_value=0.01, n_critic=5):
        super().__init__(generator, critic, latent_dim, num_classes, n_critic=n_critic)
        self.clip_value = clip_value

    def readout(self, a):
        return a  # the critic's value itself

    def discriminator_loss(self, real, fake, labels=None):
        f_real, f_fake = self.critic(real, labels), self.critic(fake, labels)
        loss = f_fake.mean() - f_real.mean()
        stats = self.readouts(f_real, f_fake)
        return loss, {"d_loss": loss, **stats, "wasserstein": stats["d_real"] - stats["d_fake"]}

    def generator_loss(self, fake, labels=None):
        return -self.critic(fake, labels).mean()

    def after_discriminator_step(self):
        if self.clip_value is None:
            return
        c = self.clip_value
        for p in self.discriminator.parameters():
            p.xp.clip(p.data, -c, c, out=p.data)  # in place: the arrays the optimizer and the user hold stay the same


class WGANGP(WGAN):
    """WGAN-GP: critic loss E f(G(z)) - E f(x) + gp_weight * gradient_penalty, no clipping."""

    def __init__(self, generator, critic, latent_dim, num_classes=0, gp_weight=10.0, n_critic=5):
        super().__init__(generator, critic, latent_dim, num_classes, clip_value=None, n_critic=n_critic)
        self.gp_weight = gp_weight

    def discriminator_loss(self, real, fake, labels=None):
        f_real, f_fake = self.critic(real, labels), self.critic(fake, labels)
        wasserstein_loss = f_fake.mean() - f_real.mean()
        penalty, _ = gradient_penalty(self.critic, real, fake, labels if self.num_classes else None)
        loss = wasserstein_loss + self.gp_weight * penalty
        stats = self.readouts(f_real, f_fake)
        return loss, {"d_loss": loss, **stats, "wasserstein": stats["d_real"] - stats["d_fake"],
                      "gp": float(penalty.item())}


def make_objective(kind, generator, critic, latent_dim, num_classes=0, n_critic=None, clip_value=0.01,
                   gp_weight=10.0, generator_loss="non_saturating", label_smoothing=0.0):
    """'gan', 'hinge' (the GAN with SN-GAN's hinge loss), 'wgan' (weight clipping) or 'wgan_gp'
    around the given networks."""
    if kind == "gan":
        return GAN(generator, critic, latent_dim, num_classes, generator_loss, label_smoothing, n_critic or 1)
    if kind == "hinge":
        return HingeGAN(generator, critic, latent_dim, num_classes, n_critic or 1)
    if kind == "wgan":
        return WGAN(generator, critic, latent_dim, num_classes, clip_value, n_critic or 5)
    if kind == "wgan_gp":
        if any(isinstance(m, nn.Dropout) and m.p > 0 for m in critic.modules()):
            raise ValueError("WGAN-GP's critic must be deterministic (its gradient penalty would see a random "
                             "function): build it without dropout (d_dropout=0)")
        return WGANGP(generator, critic, latent_dim, num_classes, gp_weight, n_critic or 5)
    raise ValueError(f"unknown objective {kind!r}; expected 'gan', 'hinge', 'wgan' or 'wgan_gp'")


# Optimizers of the papers: WGAN's RMSProp 5e-5; WGAN-GP's Adam 1e-4 (0.5, 0.9) (its released code),
# used here for the toy GAN too, so that the three objectives differ in the objective only.
def toy_networks(hidden=(512, 512, 512), latent_dim=2):
    """The WGAN-GP toy code's players: G latent_dim -> hidden -> 2, critic 2 -> hidden -> 1, ReLU."""
    G = Generator(latent_dim, hidden, 2, activation="relu", output=None)
    D = Discriminator(2, hidden, activation="relu")
    return G, D
