"""PixelVAE (Gulrajani, Kumar, Ahmed, Taiga, Visin, Vazquez & Courville, ICLR 2017, "PixelVAE: A
Latent Variable Model for Natural Images"), the single-latent binarized-MNIST model, with the two
ways of conditioning the decoder on z compared in the M.Sc. thesis variant.

A VAE whose decoder is autoregressive over the pixels, a Gated PixelCNN (gated_pixelcnn.py)
conditioned on the latent z:

    p(z)          = N(z; 0, I)
    p_theta(x|z)  = prod_i Bernoulli(x_i; sigmoid(f_theta(x_<i, z)_i))      raster order
    q_phi(z|x)    = N(z; mu_phi(x), diag sigma_phi(x)^2)                     conv encoder

so the VAE's decoder no longer has to model every pixel independently given z: the PixelCNN
layers model local detail (strokes, edges) and z the global shape, with far fewer autoregressive
layers than a PixelCNN alone needs. The bound and its estimators are the VAE's (vae.py):

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))                  analytic KL, one sample z
    L_k(x)  = E[log 1/k sum_i w_i],  w_i = p(x|z_i) p(z_i) / q(z_i|x),  z_i ~ q(z|x)

with L_1 = ELBO <= L_k <= L_{k+1} <= log p(x) (Burda et al. 2016); -L_5000 is the test NLL.
log p(x|z) is exact here (a sum of Bernoulli terms, every conditional from one decoder pass).

Networks, for H x W images (H, W multiples of 4; 28 x 28 for MNIST):

    encoder     x -> conv 4x4/2 (c1) -> ReLU -> conv 4x4/2 (c2) -> ReLU -> linear -> hidden -> ReLU
                -> heads mu and log sigma^2
    decoder     a GatedPixelCNN whose every gated layer l adds a term depending on z only to its
                two stacks' gate pre-activations (GatedLayer's `cond`):
                    v' = gate(conv_v(v) + c_v^l(z)),   h' = h + 1x1(gate(... + c_h^l(z)))
      conditioning='upsample'   (the paper's) z -> linear -> hidden -> ReLU -> linear -> c1 x H/4 x W/4
                                -> ReLU -> transposed conv 4x4/2 (c2) -> ReLU -> transposed conv 4x4/2
                                -> m feature maps of image size; c^l = a 1x1 conv of them per layer and
                                stack: a different bias at every pixel
      conditioning='linear'     ("without upsampling") c^l = a linear map of z per layer and stack,
                                the same bias at every pixel (the conditional Gated PixelCNN's Eq. 4
                                with h = z)

The conditioning terms depend on z only, never on x, so the decoder stays autoregressive in x.
Sampling draws z ~ N(0, I) and then the pixels one by one with the Gated PixelCNN's row-cached
sampler, fed the per-layer biases.

The ICLR paper reports 79.66 nats on binarized MNIST for PixelVAE (Table 1)."""
import math

import numpy as np

from .. import backend, nn
from ..distributions import Normal, kl_divergence
from ..grad_mode import no_grad
from ..losses import binary_cross_entropy_with_logits
from ..ops.shape import broadcast_to
from ..random import Generator, rng
from ..tensor import Tensor, float32
from .gated_pixelcnn import GatedPixelCNN

__all__ = ["PixelVAE", "LogMeanExp", "warmup_beta"]

CONDITIONING = ("upsample", "linear")


def warmup_beta(step, warmup, beta=1.0):
    """The KL weight after `step` training steps of a linear warm-up over `warmup` steps:
    beta * min(1, step / warmup); beta itself when warmup <= 0."""
    if warmup <= 0:
        return float(beta)
    return float(beta) * min(1.0, step / warmup)


class LogMeanExp:
    """log(1/k sum_i exp(a_i)) over axis 0 of arrays added chunk by chunk, in float64.

    Keeps a running maximum m and sum s = sum_i exp(a_i - m) per column, rescaling s when m grows,
    so no exp overflows or underflows whatever the size of the a_i, and memory is one chunk."""

    def __init__(self):
        self.m = self.shift = self.s = None
        self.k = 0

    def add(self, a):
        """Fold in a chunk a of shape (k_chunk, N) (or (k_chunk,) for one column)."""
        a = np.asarray(a, dtype=np.float64)
        a = a.reshape(a.shape[0], -1)
        top = a.max(axis=0)
        m = top if self.m is None else np.maximum(self.m, top)
        shift = np.where(np.isfinite(m), m, 0.0)   # all -inf (or an inf) so far: no shift
        with np.errstate(over="ignore", invalid="ignore"):
            s = np.exp(a - shift).sum(axis=0)
            if self.s is not None:   # the old sum, rescaled to the new shift (a zero sum stays zero)
                s = s + np.where(self.s > 0, self.s * np.exp(self.shift - shift), 0.0)
        self.m, self.shift, self.s, self.k = m, shift, s, self.k + a.shape[0]
        return self

    def result(self):
        """(N,) float64: log of the mean of exp over everything added."""
        if not self.k:
            raise ValueError("LogMeanExp: nothing added")
        with np.errstate(divide="ignore"):
            return self.shift + np.log(self.s) - math.log(self.k)


class ConvEncoder(nn.Module):
    """q(z|x)'s network for (N, 1, H, W) images: two stride-2 convolutions, a hidden layer, two heads."""

    def __init__(self, shape, latent, hidden, channels=(32, 64)):
        super().__init__()
        c1, c2 = channels
        h, w = shape
        self.convs = nn.Sequential(nn.Conv2d(1, c1, 4, stride=2, padding=1), nn.ReLU(),
                                   nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Sequential(nn.Linear(c2 * (h // 4) * (w // 4), hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)

    def forward(self, x):
        h = self.convs(x)
        h = self.fc(h.reshape(h.shape[0], -1))
        return self.mu(h), self.logvar(h)


class Upsampler(nn.Module):
    """z -> m feature maps of image size (the paper's upsampling decoder, minus its output layer)."""

    def __init__(self, shape, latent, hidden, maps, channels=(64, 32)):
        super().__init__()
        c1, c2 = channels
        self.c1, self.h4, self.w4 = c1, shape[0] // 4, shape[1] // 4
        self.fc = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(),
                                nn.Linear(hidden, c1 * self.h4 * self.w4), nn.ReLU())
        self.deconvs = nn.Sequential(nn.ConvTranspose2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(),
                                     nn.ConvTranspose2d(c2, maps, 4, stride=2, padding=1))

    def forward(self, z):
        return self.deconvs(self.fc(z).reshape(z.shape[0], self.c1, self.h4, self.w4))


class PixelVAE(nn.Module):
    """PixelVAE over (N, 1, H, W) binary images (flat (N, H*W) inputs are reshaped).

    latent: dimension of z; hidden: width of the encoder's and the upsampler's hidden layer;
    channels, layers, kernel_size, first_kernel, out_channels: the Gated PixelCNN decoder's;
    conditioning: 'upsample' (z -> image-size feature maps, `maps` of them, a 1x1 conv into every
    gated layer) or 'linear' (a linear map of z into every gated layer, per channel);
    warmup: KL warm-up, the training loss's KL weight rises linearly from 0 to `beta` over this
    many steps, counted by the buffer `steps` (advanced by `advance()`, saved with the model);
    free_bits: "free bits" (Kingma et al. 2016, Eq. 15) in nats per latent dimension: the training
    loss charges each dimension's batch-mean KL only above this floor, so the optimizer gains nothing
    by pushing a dimension's KL below it (a guard against posterior collapse; 0: off)."""

    def __init__(self, latent=32, hidden=256, channels=32, layers=4, conditioning="upsample", maps=16,
                 kernel_size=3, first_kernel=7, out_channels=64, shape=(28, 28), beta=1.0, warmup=0,
                 free_bits=0.0):
        super().__init__()
        if conditioning not in CONDITIONING:
            raise ValueError(f"conditioning must be one of {', '.join(CONDITIONING)}, got {conditioning!r}")
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2 or shape[0] % 4 or shape[1] % 4 or min(shape) < 4:
            raise ValueError(f"PixelVAE: image height and width must be multiples of 4, got {shape}")
        self.latent_dim, self.shape, self.conditioning = int(latent), shape, conditioning
        self.beta, self.warmup, self.free_bits = float(beta), int(warmup), float(free_bits)
        if self.free_bits < 0:
            raise ValueError(f"free_bits must be >= 0 nats per latent dimension, got {free_bits}")
        self.encoder = ConvEncoder(shape, self.latent_dim, hidden)
        self.decoder = GatedPixelCNN(channels, layers, kernel_size, first_kernel, out_channels)
        two_p = 2 * channels
        if conditioning == "upsample":
            self.upsample = Upsampler(shape, self.latent_dim, hidden, maps)
            self.v_cond = nn.ModuleList([nn.Conv2d(maps, two_p, 1, bias=False) for _ in range(layers)])
            self.h_cond = nn.ModuleList([nn.Conv2d(maps, two_p, 1, bias=False) for _ in range(layers)])
        else:
            self.v_cond = nn.ModuleList([nn.Linear(self.latent_dim, two_p, bias=False) for _ in range(layers)])
            self.h_cond = nn.ModuleList([nn.Linear(self.latent_dim, two_p, bias=False) for _ in range(layers)])
        self.register_buffer("steps", np.zeros((), dtype=np.int64))

    data_channels = 1

    @property
    def dtype(self):
        return self.encoder.mu.weight.dtype

    def _images(self, x):
        """(N, 1, H, W) Tensor in the model's dtype and on its device."""
        if not isinstance(x, Tensor):
            x = Tensor(backend.to_device(np.asarray(x, dtype=self.dtype), self.encoder.mu.weight.device))
        if x.ndim == 2 and x.shape[1] == self.shape[0] * self.shape[1]:
            x = x.reshape(x.shape[0], 1, *self.shape)
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, *self.shape):
            raise ValueError(f"PixelVAE: expected images of shape (N, 1, {self.shape[0]}, {self.shape[1]}) "
                             f"or (N, {self.shape[0] * self.shape[1]}), got {tuple(x.shape)}")
        return x if x.dtype == self.dtype else x.astype(self.dtype)

    def _noise(self, shape, generator):
        eps = rng(generator).standard_normal(shape, dtype=self.dtype)
        return Tensor(backend.to_device(eps, self.encoder.mu.weight.device))

    # -- the three distributions --------------------------------------------------------------------
    def prior(self):
        zero = Tensor(self.encoder.mu.weight.xp.zeros(self.latent_dim, dtype=self.dtype))
        return Normal(zero, 1.0, validate_args=False)

    def encode(self, x):
        """q_phi(z|x) = N(mu, diag sigma^2)."""
        mu, logvar = self.encoder(self._images(x))
        return Normal(mu, (0.5 * logvar).exp(), validate_args=False)

    def condition(self, z):
        """The decoder's per-layer gate biases [(v_bias, h_bias), ...] for codes z of shape (N, latent):
        (N, 2p, H, W) maps ('upsample') or (N, 2p, 1, 1) per-channel biases ('linear')."""
        if self.conditioning == "upsample":
            maps = self.upsample(z)
            return [(v(maps), h(maps)) for v, h in zip(self.v_cond, self.h_cond)]
        n = z.shape[0]
        return [(v(z).reshape(n, -1, 1, 1), h(z).reshape(n, -1, 1, 1)) for v, h in zip(self.v_cond, self.h_cond)]

    def decoder_logits(self, x, z):
        """f_theta(x_<i, z)_i for every pixel i: (N, 1, H, W) Bernoulli logits of p(x|z)."""
        return self.decoder(self._images(x), cond=self.condition(z))

    def log_px_z(self, x, z):
        """log p_theta(x|z) in nats, exact (a sum of Bernoulli terms), one value per image."""
        x = self._images(x)
        per_pixel = binary_cross_entropy_with_logits(self.decoder_logits(x, z), x, reduction="none")
        return -per_pixel.reshape(x.shape[0], -1).sum(axis=1)

    # -- the bound ----------------------------------------------------------------------------------
    def reconstruction_and_kl(self, x, generator=None):
        """log p(x|z) per image for one reparameterized z = mu + sigma * eps, and the analytic
        KL(q(z|x) || p(z)) per image and latent dimension, (N, latent)."""
        x = self._images(x)
        q = self.encode(x)
        z = q.loc + q.scale * self._noise(q.loc.shape, generator)
        return self.log_px_z(x, z), kl_divergence(q, self.prior())

    def elbo(self, x, beta=1.0, generator=None, return_terms=False):
        """Per-image ELBO estimate, one reparameterized sample z = mu + sigma * eps, analytic KL.
        beta weights the KL (the warm-up's; 1 gives the ELBO). With return_terms, also log p(x|z)
        and the KL, per image."""
        rec, kl = self.reconstruction_and_kl(x, generator)
        kl = kl.sum(axis=-1)
        elbo = rec - kl * beta if beta != 1 else rec - kl
        return (elbo, rec, kl) if return_terms else elbo

    def current_beta(self):
        """The warm-up's KL weight at this step: beta * min(1, steps / warmup)."""
        return warmup_beta(int(self.steps.item()), self.warmup, self.beta)

    def advance(self):
        """Count one training step of the warm-up clock (call it after each optimizer step)."""
        self.steps.data[...] += 1

    def training_loss(self, x, generator=None):
        """-(log p(x|z) - beta_t KL), averaged over the batch, beta_t the warm-up's weight (it does not
        advance the clock); with free bits, each dimension's batch-mean KL counts as max(KL_j, floor).
        Returns {'loss', 'elbo', 'kl', 'rec', 'beta'}; 'elbo' is the true ELBO."""
        beta = self.current_beta()
        rec, kl_dims = self.reconstruction_and_kl(x, generator)
        kl_mean = kl_dims.mean(axis=0)                                      # (latent,)
        if self.free_bits > 0:   # max(KL_j, floor) = floor + relu(KL_j - floor): no gradient below the floor
            charged = (kl_mean - self.free_bits).relu().sum() + self.free_bits * self.latent_dim
        else:
            charged = kl_mean.sum()
        kl = kl_mean.sum().detach()
        return {"loss": charged * beta - rec.mean(), "elbo": rec.mean().detach() - kl, "kl": kl,
                "rec": rec.mean().detach(), "beta": beta}

    def log_weights(self, x, k, generator=None, q=None):
        """log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x) for k samples z_i ~ q(z|x): (k, N).
        The k * N decoder passes run as one batch; `log_likelihood` calls it in chunks."""
        x = self._images(x)
        q = q or self.encode(x)
        n = x.shape[0]
        z = q.loc + q.scale * self._noise((k, n, self.latent_dim), generator)      # (k, N, latent)
        flat = z.reshape(k * n, self.latent_dim)
        images = broadcast_to(x.reshape(1, n, 1, *self.shape), (k, n, 1, *self.shape)).reshape(k * n, 1, *self.shape)
        log_px_z = self.log_px_z(images, flat).reshape(k, n)
        return log_px_z + self.prior().log_prob(z).sum(axis=-1) - q.log_prob(z).sum(axis=-1)

    @no_grad()
    def log_likelihood(self, x, k=5000, batch=None, generator=None):
        """The importance-weighted bound L_k on log p(x) in nats, per image: a float64 array.

        The k samples are drawn `batch` at a time (default: about 256 decoder images per chunk),
        each chunk's log weights folded into a float64 log-mean-exp (LogMeanExp), so memory is one
        chunk whatever k is; the noise comes in the same order for any `batch`, so the result does
        not depend on it. k = 1 is the ELBO estimated with log q - log p at the sample (not the
        analytic KL): the same value in expectation."""
        x = self._images(x)
        n = x.shape[0]
        batch = int(batch or max(1, min(k, 256 // max(n, 1))))
        q = self.encode(x)
        acc = LogMeanExp()
        for start in range(0, k, batch):
            acc.add(self.log_weights(x, min(batch, k - start), generator, q=q).numpy())
        return acc.result()

    # -- using the model ----------------------------------------------------------------------------
    @no_grad()
    def sample(self, n, shape=None, seed=None):
        """n images: z ~ N(0, I), then the pixels one by one from p(x|z) (the row-cached sampler)."""
        shape = self.shape if shape is None else tuple(shape)
        if shape != self.shape and self.conditioning == "upsample":
            raise ValueError(f"an upsampling PixelVAE draws {self.shape} images, not {shape}")
        z = self._noise((n, self.latent_dim), Generator(seed))
        pixels = None if seed is None else [seed, 1]   # a stream of its own, not z's
        return self.decoder.sample(n, shape, seed=pixels, cond=self.condition(z))

    @no_grad()
    def reconstruct(self, x, seed=None):
        """Images drawn from p(x|z) at the posterior means z = mu(x)."""
        x = self._images(x)
        return self.decoder.sample(x.shape[0], self.shape, seed=seed, cond=self.condition(self.encode(x).loc))


    def extra_repr(self):
        return (f"latent={self.latent_dim}, conditioning={self.conditioning!r}, warmup={self.warmup}, "
                f"free_bits={self.free_bits}")
