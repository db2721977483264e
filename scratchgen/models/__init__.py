"""The models, each as its paper defines it: the networks, the likelihood or the losses, and
sampling. Nothing here loads data, trains or draws pictures (that is scratchgen.specs, the
training loop scratchgen.train, and the recipes scratchgen.recipes).

The model classes are exported here, so `scratchgen.models.MADE(...)` and
`scratchgen.models.NICE(...)` work as in torchvision.models.
"""
from .made import MADE  # noqa: F401
from .nice import NICE, Coupling, bits_per_dim  # noqa: F401
from .vae import VAE  # noqa: F401
from .conv_vae import ConvVAE  # noqa: F401
from .gan import GAN, HingeGAN, Generator, Discriminator  # noqa: F401
from .wgan import WGAN, WGANGP  # noqa: F401
from .dcgan import DCGANGenerator, DCGANDiscriminator  # noqa: F401
from .infogan import InfoGAN  # noqa: F401
from .pixelcnn import PixelCNN  # noqa: F401
from .gated_pixelcnn import GatedPixelCNN  # noqa: F401
from .pixelvae import PixelVAE  # noqa: F401
from .mixture import Mixture  # noqa: F401
from .mlp_classifier import MLPClassifier  # noqa: F401
from .realnvp import RealNVP  # noqa: F401
from .glow import Glow  # noqa: F401
from .maf import MAF  # noqa: F401
from .iaf import IAFVAE  # noqa: F401
from .nade import NADE  # noqa: F401
from .rbm import RBM  # noqa: F401
from .autoencoder import Autoencoder  # noqa: F401
from .helmholtz import HelmholtzMachine  # noqa: F401
from .dbn import DBN  # noqa: F401
