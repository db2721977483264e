"""InfoGAN (Chen, Duan, Houthooft, Schulman, Sutskever, Abbeel 2016): a GAN whose noise carries
a categorical code c that the generator must make readable from its samples.

    z = [z_noise, onehot(c)],   c ~ Cat(K) uniform,   x = G(z)

    min_{G,Q} max_D  V(D, G) - lambda * L_I(G, Q)                                   (5)
    L_I(G, Q) = E_{c, x ~ G(z)}[log Q(c | x)] + H(c)  <=  I(c; G(z))                (4)

Q(c | x) shares D's hidden layers and adds one linear head of K logits (Sec. 6). Both players
minimise lambda * CE(Q(G(z)), c) on top of their GAN losses (H(c) is a constant), lambda = 1
for discrete codes. No labels are used; the paper's MNIST code picks up the digit class (with
convolutional networks), which would give G ten separate regions of z instead of one connected
one. With the MLPs here it only half does (docs/models/gan.md).
"""
from .. import nn
from ..creation import randn
from ..losses import cross_entropy
from ..ops.shape import concatenate
from ..random import rng
from .gan import GAN, gan_discriminator_loss, gan_generator_loss, most_realistic, one_hot

__all__ = ["InfoGAN"]


class InfoDiscriminator(nn.Module):
    """D(x) and Q(c | x) on one body: the Discriminator's MLP with `codes` more outputs on its last
    layer, column 0 D's logit and the rest Q's logits. Called as D(x) it returns D's logits (N,),
    so it plays the discriminator of a plain GAN; `heads(x)` returns both."""

    def __init__(self, in_dim=784, hidden=(256, 256), codes=10, activation="leaky_relu", dropout=0.0,
                 spectral_norm=False):
        super().__init__()
        self.net = nn.mlp([in_dim, *hidden, 1 + codes], activation, dropout=dropout, spectral_norm=spectral_norm)

    def heads(self, x):
        out = self.net(x)
        return out[:, 0], out[:, 1:]

    def forward(self, x):
        return self.heads(x)[0]


class InfoGAN(GAN):
    """A GAN with a categorical code in the last `codes` entries of its latent_dim-dimensional z.

    `noise(n)` draws the codes and keeps them (`last_codes`); the two losses, which the
    training loop calls right after generating from that noise, read them back. So any loop
    that trains a GAN (train_step, the examples) trains an InfoGAN unchanged.
    """

    def __init__(self, generator, discriminator, latent_dim, codes=10, info_weight=1.0, **gan_options):
        super().__init__(generator, discriminator, latent_dim, **gan_options)
        if not 2 <= codes < latent_dim:
            raise ValueError(f"codes must be in [2, latent_dim={latent_dim}), got {codes}")
        if not hasattr(discriminator, "heads"):
            raise TypeError(f"InfoGAN needs a discriminator with a Q head (InfoDiscriminator), "
                            f"got {type(discriminator).__name__}")
        self.codes, self.info_weight = codes, float(info_weight)
        self.last_codes = None

    def noise(self, n, like=None, codes=None):
        """z = [N(0, I) noise of latent_dim - K entries, onehot(c)], c uniform unless given."""
        dtype = like.dtype if like is not None else self.generator_dtype()
        device = None if like is None else like.device
        c = rng().integers(0, self.codes, n) if codes is None else codes
        noise = randn(n, self.latent_dim - self.codes, dtype=dtype, device=device)
        self.last_codes = noise.xp.asarray(c).astype("int64")
        return concatenate([noise, one_hot(self.last_codes, self.codes, dtype, like=noise)], axis=1)

    def generator_dtype(self):
        return next(self.generator.parameters()).dtype

    def info_loss(self, q_logits):
        """-E log Q(c | G(z)) for the codes of the last noise drawn: L_I up to the constant H(c)."""
        if self.last_codes is None or len(self.last_codes) != q_logits.shape[0]:
            raise RuntimeError("InfoGAN's losses read the codes of the last noise(n) call: generate the "
                               "fake batch from model.noise(n) right before the loss")
        return cross_entropy(q_logits, self.last_codes)

    def discriminator_loss(self, real, fake, labels=None):
        real_logits = self.discriminator(real)
        fake_logits, q_logits = self.discriminator.heads(fake)
        gan_loss = gan_discriminator_loss(real_logits, fake_logits, self.label_smoothing)
        info = self.info_loss(q_logits)
        return gan_loss + self.info_weight * info, {"d_loss": gan_loss, "info_loss": info,
                                                     **self.readouts(real_logits, fake_logits)}

    def generator_loss(self, fake, labels=None):
        fake_logits, q_logits = self.discriminator.heads(fake)
        return (gan_generator_loss(most_realistic(fake_logits, self.top_k), self.saturating)
                + self.info_weight * self.info_loss(q_logits))
