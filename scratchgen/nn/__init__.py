"""Neural-network building blocks, in PyTorch's style: `sg.nn.Linear`, `sg.nn.functional as F`, `sg.nn.init`."""
from . import functional, init  # noqa: F401
from .module import Module, Parameter, Sequential, ModuleList, IncompatibleKeys  # noqa: F401
from .layers import (  # noqa: F401
    Linear, MaskedLinear, Identity, ReLU, LeakyReLU, ELU, Tanh, Sigmoid, Softplus, Flatten, Dropout,
    BatchNorm1d, LayerNorm, SELU, Hardtanh, Softsign, GLU,
)
from .conv import (  # noqa: F401
    Conv2d, ConvTranspose2d, MaxPool2d, AvgPool2d, Upsample, BatchNorm2d, Residual, ResidualBlock,
)
from .masked_conv import MaskedConv2d  # noqa: F401
from .spectral_norm import SpectralNorm, spectral_norm  # noqa: F401
from .loss import CrossEntropyLoss, BCEWithLogitsLoss, BCELoss, MSELoss, GaussianNLLLoss, NLLLoss  # noqa: F401
from .mlp import ACTIVATIONS, activation, mlp  # noqa: F401
from . import utils  # noqa: F401
