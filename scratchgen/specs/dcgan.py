"""`scratchgen train dcgan` and `wgan_gp_conv`: the convolutional players of
scratchgen.models.dcgan in the MNIST adversarial setting of gan.py and wgan.py."""
from ..models.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan_init_
from .gan import MNIST_DEFAULTS, MNISTAdversarialSpec
from .registry import register
from .wgan import OPTIMIZERS, MNISTWGANSpec


class _ConvPlayers:
    def build(self):
        c = self.config
        G = dcgan_init_(DCGANGenerator(c["latent_dim"], c["channels"]), seed=c["seed"])
        D = dcgan_init_(DCGANDiscriminator(c["channels"], batch_norm=self.critic_batch_norm), seed=c["seed"] + 1)
        return self.objective(G, D, 0)


DCGAN_DEFAULTS = dict(MNIST_DEFAULTS, epochs=20, latent_dim=100, channels=64)


@register("dcgan")
class DCGANSpec(_ConvPlayers, MNISTAdversarialSpec):
    description = "DCGAN on MNIST (Radford et al. 2016): strided convs, BN, LeakyReLU D, Adam 2e-4 b1 0.5"
    defaults = dict(DCGAN_DEFAULTS)
    monitor = ("valid_fid", "min")
    critic_batch_norm = True


@register("wgan_gp_conv")
class ConvWGANGPSpec(_ConvPlayers, MNISTWGANSpec):
    description = "WGAN-GP on MNIST with the DCGAN generator and a convolutional critic (no batch norm)"
    defaults = dict(DCGAN_DEFAULTS, **OPTIMIZERS["wgan_gp"], gp_weight=10.0, batch_size=5 * 64)
    kind = "wgan_gp"
    critic_batch_norm = False
