"""`scratchgen train infogan`: InfoGAN (scratchgen.models.infogan) in gan.py's MNIST setting."""
from ..models.gan import Generator
from ..models.infogan import InfoDiscriminator, InfoGAN
from .gan import MNIST_DEFAULTS, MNISTAdversarialSpec
from .registry import register


@register("infogan")
class InfoGANSpec(MNISTAdversarialSpec):
    description = "InfoGAN on MNIST (Chen et al. 2016): the MLP GAN with a 10-way code in z and a Q head on D"
    defaults = dict(MNIST_DEFAULTS, codes=10, info_weight=1.0)
    monitor = ("valid_fid", "min")

    def build(self):
        c = self.config
        G = Generator(c["latent_dim"], c["g_hidden"], 784, activation="relu", output="tanh")
        D = InfoDiscriminator(784, c["d_hidden"], codes=c["codes"], activation="leaky_relu",
                              dropout=c.get("d_dropout", 0.0), spectral_norm=c.get("d_spectral_norm", False))
        return InfoGAN(G, D, c["latent_dim"], codes=c["codes"], info_weight=c["info_weight"],
                       generator_loss=c["generator_loss"], label_smoothing=c["label_smoothing"])
