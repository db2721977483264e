"""Autoencoder and denoising autoencoder (Vincent, Larochelle, Bengio & Manzagol, "Extracting and
Composing Robust Features with Denoising Autoencoders", ICML 2008), with MLP or convolutional
networks, on inputs x in [0, 1]^d.

In Vincent et al.'s notation, the encoder f_theta maps an input to a code y, the decoder
g_theta' maps the code back to a reconstruction z of the input:

    y = f_theta(x~)                     the code (the last encoder layer is linear)
    z = g_theta'(y) = sigmoid(a),       a = the decoder's logits

and the reconstruction cross-entropy against the clean input x (Section 2.2) is

    L_H(x, z) = - sum_k [ x_k log z_k + (1 - x_k) log(1 - z_k) ]
              = sum_k softplus(a_k) - x_k a_k                          (bce_with_logits)

in nats per example, minimized on average over the data. The plain autoencoder feeds x~ = x. The
denoising autoencoder first corrupts the input with a stochastic q_D(x~ | x), then reconstructs
the *clean* x from x~ (the loss compares z with x, never with x~):

    masking  (Vincent et al. 2008, Section 2.3): a fixed number round(nu d) of the d components,
             chosen at random for each example, are forced to 0; the rest are left untouched.
    gaussian (Vincent et al. 2010, Section 4.2): additive isotropic noise, x~ = x + sigma eps,
             eps ~ N(0, I), not clipped.

The networks: arch='mlp' is Linear layers d -> hidden... -> code and back (nn.mlp, the decoder
the mirror image); arch='conv' is the convolutional VAE's encoder and decoder (conv 4x4/2 twice,
then fully-connected layers to the code; the mirror with transposed convs) on 28 x 28 images.

BCE on grey intensities is not a log-likelihood of a distribution over [0, 1]^d: its minimum over
z is at z = x, where it equals the binary entropy sum_k H(x_k) > 0 of the input itself.
"""
import numpy as np

from .. import backend, nn
from ..grad_mode import no_grad
from ..losses import bce_with_logits
from ..random import rng
from ..tensor import Tensor, float32
from .conv_vae import ConvDecoder, ConvEncoder

__all__ = ["Autoencoder", "corrupt", "masking_noise", "gaussian_noise", "CORRUPTIONS"]


# -- the corruption q_D(x~ | x) --------------------------------------------------------------------------
def _numpy_rng(generator):
    """A NumPy Generator as given, or the stream of a scratchgen Generator (None: the global one)."""
    return generator if isinstance(generator, np.random.Generator) else rng(generator)


def masking_noise(x, nu, generator=None):
    """x with round(nu * d) of the d components of each example, chosen uniformly at random
    without replacement, set to 0 (Vincent et al. 2008). x: an array (N, ...); returns a new array."""
    if not 0 <= nu <= 1:
        raise ValueError(f"masking noise: the fraction nu must lie in [0, 1], got {nu}")
    x = np.asarray(x)
    flat = x.reshape(len(x), -1).copy()
    d = flat.shape[1]
    k = int(round(nu * d))
    if k > 0:
        u = _numpy_rng(generator).random(flat.shape)
        # the k smallest of d i.i.d. uniforms sit at a uniformly random k-subset of the positions
        masked = np.argpartition(u, k - 1, axis=1)[:, :k] if k < d else np.broadcast_to(np.arange(d), flat.shape)
        np.put_along_axis(flat, masked, 0, axis=1)
    return flat.reshape(x.shape)


def gaussian_noise(x, sigma, generator=None):
    """x + sigma * eps, eps ~ N(0, I) of x's shape and dtype (Vincent et al. 2010)."""
    if not sigma >= 0:
        raise ValueError(f"gaussian noise: sigma must be >= 0, got {sigma}")
    x = np.asarray(x)
    dtype = x.dtype if x.dtype.kind == "f" else np.float32
    eps = _numpy_rng(generator).standard_normal(x.shape, dtype=dtype)
    return (x + sigma * eps).astype(dtype, copy=False)


CORRUPTIONS = ("none", "masking", "gaussian")


def corrupt(x, kind, level, generator=None):
    """x~ ~ q_D(x~ | x): 'none' returns x itself and draws nothing; 'masking' zeroes a fraction
    `level` of each example's components; 'gaussian' adds N(0, level^2) noise."""
    if kind == "none":
        return x
    if kind == "masking":
        return masking_noise(x, level, generator)
    if kind == "gaussian":
        return gaussian_noise(x, level, generator)
    raise ValueError(f"corruption must be one of {', '.join(CORRUPTIONS)}, got {kind!r}")


# -- the model ---------------------------------------------------------------------------------------------
class Autoencoder(nn.Module):
    """Encoder f_theta: x -> code y, decoder g_theta': y -> logits of the reconstruction z.

    input_dim: d (784 for arch='conv', which reads 28 x 28 images);
    hidden: widths of the fully-connected layers between the input (or the conv features) and the
        code, the decoder's in reverse order; arch='conv' needs at least one;
    code_dim: size of the code y;
    arch: 'mlp' or 'conv'; channels: the conv encoder's channels (channels, 2 channels);
    activation: of the MLP layers (the conv layers use ReLU, as in the convolutional VAE).

    Calling the model gives the code; `decoder_logits(y)` the logits a; `reconstruct(x)` the
    reconstruction z = sigmoid(a); `loss(x_clean, x_input)` the mean of L_H over the batch."""

    def __init__(self, input_dim=784, hidden=(512, 256), code_dim=32, arch="mlp", channels=32, activation="relu",
                 dtype=float32):
        super().__init__()
        if arch not in ("mlp", "conv"):
            raise ValueError(f"arch must be 'mlp' or 'conv', got {arch!r}")
        h = [int(w) for w in hidden]
        self.input_dim, self.hidden, self.code_dim, self.arch = int(input_dim), h, int(code_dim), arch
        if arch == "mlp":
            self.encoder = nn.mlp([input_dim] + h + [code_dim], activation, dtype=dtype)
            self.decoder = nn.mlp([code_dim] + h[::-1] + [input_dim], activation, dtype=dtype)
        else:
            if input_dim != 784 or not h:
                raise ValueError(f"arch='conv' reads 28 x 28 images (input_dim 784) through at least one "
                                 f"hidden layer, got input_dim {input_dim}, hidden {h}")
            c = int(channels)
            # conv -> h[0] -> ... -> h[-1] -> code, and back: code -> h[-1] -> ... -> h[0] -> deconv
            self.encoder = nn.Sequential(ConvEncoder(h[0], (c, 2 * c)), nn.mlp(h + [code_dim], activation))
            to_h1 = [nn.mlp([code_dim] + h[:0:-1], activation, output=activation)] if len(h) > 1 else []
            self.decoder = nn.Sequential(*to_h1, ConvDecoder(h[1] if len(h) > 1 else code_dim, h[0], (2 * c, c)))
            if dtype != float32:
                self.to(dtype=dtype)

    @property
    def _weight(self):
        return next(iter(self.parameters()))

    @property
    def dtype(self):
        return self._weight.dtype

    def _tensor(self, x):
        if isinstance(x, Tensor):
            return x
        return Tensor(backend.to_device(np.asarray(x, dtype=self.dtype), self._weight.device))

    def forward(self, x):
        """The code y = f_theta(x), shape (N, code_dim)."""
        return self.encoder(self._tensor(x))

    def decoder_logits(self, y):
        """The logits a of the reconstruction z = sigmoid(a), shape (N, input_dim)."""
        return self.decoder(self._tensor(y))

    def reconstruction_bce(self, x_clean, x_input=None):
        """L_H(x, z) per example (N,), in nats: z reconstructed from x_input (default: x_clean
        itself), compared with x_clean."""
        x_clean = self._tensor(x_clean)
        x_input = x_clean if x_input is None else self._tensor(x_input)
        logits = self.decoder_logits(self(x_input))
        return bce_with_logits(logits, x_clean.reshape(logits.shape)).sum(axis=-1)

    def loss(self, x_clean, x_input=None):
        """The training objective: L_H(x, g(f(x~))) averaged over the batch, x~ = x_input
        (a corrupted x for the denoising autoencoder; default x_clean: the plain autoencoder)."""
        return self.reconstruction_bce(x_clean, x_input).mean()

    @no_grad()
    def reconstruct(self, x):
        """z = sigmoid(g(f(x))), shape (N, input_dim), without a graph."""
        return self.decoder_logits(self(x)).sigmoid().detach()

    @no_grad()
    def encode(self, x):
        """The code f(x) without a graph."""
        return self(x).detach()

    def extra_repr(self):
        return f"arch={self.arch!r}, input_dim={self.input_dim}, hidden={self.hidden}, code_dim={self.code_dim}"
