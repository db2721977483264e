"""The multilayer perceptron every model here builds: Linear layers between consecutive sizes.

    mlp([784, 500, 500, 50], "relu")                  Linear-ReLU-Linear-ReLU-Linear
    mlp([784, 500, 500], "relu", output="relu")       an activation after the last layer too
    mlp([794, 256, 1], "leaky_relu", dropout=0.5)     Dropout after each hidden activation
    mlp([784, 256, 1], spectral_norm=True)            every Linear runs with W / sigma(W)
"""
from ..tensor import float32
from .layers import ELU, Dropout, LeakyReLU, Linear, ReLU, Sigmoid, Softplus, Tanh
from .module import Sequential
from .spectral_norm import SpectralNorm

# By name, for configs and the command line. leaky_relu uses the GAN papers' slope of 0.2
# (Radford et al.; PyTorch's default of 0.01 is nearly a ReLU).
ACTIVATIONS = {"relu": ReLU, "leaky_relu": lambda: LeakyReLU(0.2), "tanh": Tanh, "elu": ELU,
               "softplus": Softplus, "sigmoid": Sigmoid}


def activation(name):
    """A new activation module by name (one of ACTIVATIONS)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[name]()


def mlp(sizes, activation_name="relu", output=None, dropout=0.0, spectral_norm=False, dtype=float32):
    """Sequential of Linear(sizes[i], sizes[i+1]); `activation_name` (then Dropout, if any) after
    every hidden layer, `output` (an activation name, or None) after the last."""
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least an input and an output size, got {sizes}")
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = Linear(n_in, n_out, dtype=dtype)
        layers.append(SpectralNorm(linear) if spectral_norm else linear)
        if i < len(sizes) - 2:
            layers.append(activation(activation_name))
            if dropout:
                layers.append(Dropout(dropout))
    if output is not None:
        layers.append(activation(output))
    return Sequential(*layers)
