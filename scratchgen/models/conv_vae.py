"""A convolutional VAE: the VAE of vae.py (same bound, same reparameterization, same IWAE
evaluation) with convolutional networks for q(z|x) and p(x|z) on 28x28 images.

    encoder   x (1x28x28) -> conv 4x4/2 (32, 14x14) -> ReLU -> conv 4x4/2 (64, 7x7) -> ReLU
              -> linear -> hidden -> ReLU -> heads mu, log sigma^2
    decoder   z -> linear -> hidden -> ReLU -> linear -> 64x7x7 -> ReLU
              -> transposed conv 4x4/2 (32, 14x14) -> ReLU -> transposed conv 4x4/2 (1, 28x28)
              = the Bernoulli logits (or the Gaussian mean before the sigmoid)

The decoder accepts z with any leading axes, e.g. (k, N, latent) for the importance samples.
"""
from .. import nn
from .vae import VAE

__all__ = ["ConvVAE"]


class ConvEncoder(nn.Module):
    def __init__(self, hidden, channels=(32, 64)):
        super().__init__()
        c1, c2 = channels
        self.convs = nn.Sequential(nn.Conv2d(1, c1, 4, stride=2, padding=1), nn.ReLU(),
                                   nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Sequential(nn.Linear(c2 * 7 * 7, hidden), nn.ReLU())

    def forward(self, x):
        h = self.convs(x.reshape(x.shape[0], 1, 28, 28))
        return self.fc(h.reshape(h.shape[0], -1))


class ConvDecoder(nn.Module):
    def __init__(self, latent_dim, hidden, channels=(64, 32)):
        super().__init__()
        c1, c2 = channels
        self.c1 = c1
        self.fc = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, c1 * 7 * 7), nn.ReLU())
        self.deconvs = nn.Sequential(nn.ConvTranspose2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(),
                                     nn.ConvTranspose2d(c2, 1, 4, stride=2, padding=1))

    def forward(self, z):
        lead = z.shape[:-1]
        h = self.fc(z.reshape(-1, z.shape[-1])).reshape(-1, self.c1, 7, 7)
        return self.deconvs(h).reshape(*lead, 784)


class ConvVAE(VAE):
    """VAE(784, ...) with ConvEncoder/ConvDecoder; every other method is VAE's."""

    def __init__(self, latent_dim=50, hidden=256, likelihood="bernoulli", sigma=None, kl="analytic", beta=1.0,
                 warmup_steps=0):
        super().__init__(784, [hidden], latent_dim, likelihood=likelihood, sigma=sigma, kl=kl, beta=beta,
                         warmup_steps=warmup_steps)
        self.encoder = ConvEncoder(hidden)      # heads enc_mu / enc_logvar (hidden -> latent) are VAE's
        self.decoder = ConvDecoder(latent_dim, hidden)
        self.dec_out = nn.Identity()            # the decoder already ends in the 784 logits
