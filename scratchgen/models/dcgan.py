"""DCGAN (Radford, Metz & Chintala, 2016) for MNIST, and a convolutional critic for WGAN-GP.

The GAN game and its training loop are gan.py's; only the players change. The paper's
architecture guidelines (Section 3):
  - strided convolutions in D and transposed ("fractionally-strided") convolutions in G
    instead of pooling;
  - batch normalisation in G and D, but not in G's output layer nor D's input layer;
  - ReLU in G with a tanh output; LeakyReLU(0.2) in D;
  - Adam with lr 2e-4 and beta1 = 0.5, weights initialised from N(0, 0.02).
Layers followed by batch norm have no bias: the normalisation would cancel it.

    G   z (100) -> linear -> 128x7x7 -> BN, ReLU -> tconv 4x4/2 -> 64x14x14 -> BN, ReLU
               -> tconv 4x4/2 -> 1x28x28 -> tanh
    D   x 1x28x28 -> conv 4x4/2 -> 64x14x14 -> LeakyReLU -> conv 4x4/2 -> 128x7x7 -> BN, LeakyReLU
               -> linear -> 1 logit

The WGAN-GP critic is D without batch normalisation (the penalty treats every example on its
own, which batch statistics would break; Gulrajani et al., Section 4). Both players read and
write flat (N, 784) images, so gan.py's MNIST pipeline, metrics and pictures apply unchanged.
"""
from .. import nn
from ..random import Generator

__all__ = ["DCGANGenerator", "DCGANDiscriminator"]


class DCGANGenerator(nn.Module):
    def __init__(self, latent_dim=100, channels=64):
        super().__init__()
        c = channels
        self.latent_dim, self.num_classes, self.c = latent_dim, 0, c
        self.project = nn.Sequential(nn.Linear(latent_dim, 2 * c * 7 * 7, bias=False), nn.BatchNorm1d(2 * c * 7 * 7), nn.ReLU())
        self.up = nn.Sequential(nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                                nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1), nn.Tanh())

    def forward(self, z, y=None):
        h = self.project(z).reshape(z.shape[0], 2 * self.c, 7, 7)
        return self.up(h).reshape(z.shape[0], 784)


class DCGANDiscriminator(nn.Module):
    """batch_norm=False gives the WGAN-GP critic."""

    def __init__(self, channels=64, batch_norm=True):
        super().__init__()
        c = channels
        self.num_classes = 0
        self.features = nn.Sequential(
            nn.Conv2d(1, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1, bias=not batch_norm),
            *([nn.BatchNorm2d(2 * c)] if batch_norm else []),
            nn.LeakyReLU(0.2))
        self.out = nn.Linear(2 * c * 7 * 7, 1)

    def forward(self, x, y=None):
        h = self.features(x.reshape(x.shape[0], 1, 28, 28))
        return self.out(h.reshape(h.shape[0], -1)).reshape(x.shape[0])


def dcgan_init_(module, std=0.02, seed=0):
    """The paper's initialisation: conv and linear weights ~ N(0, 0.02), BN scales ~ N(1, 0.02)."""
    g = Generator(seed)
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std, generator=g)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std, generator=g)
        else:
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    return module
