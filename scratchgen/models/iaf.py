"""IAF: a VAE whose posterior is an Inverse Autoregressive Flow (Kingma, Salimans, Jozefowicz,
Chen, Sutskever, Welling 2016).

The encoder gives a diagonal Gaussian and a context h (Algorithm 1):

    [mu, sigma, h] = EncoderNN(x),    eps ~ N(0, I),    z_0 = mu + sigma * eps,
    log q(z_0|x) = -sum_i (log sigma_i + 1/2 eps_i^2 + 1/2 log 2 pi).

Then T IAF steps, each an autoregressive MADE of (z_{t-1}, h) with the numerically stable,
LSTM-like update (Eq. 13-14):

    [m_t, s_t] = AutoregressiveNN_t(z_{t-1}, h),    sigma_t = sigmoid(s_t + b),
    z_t = sigma_t * z_{t-1} + (1 - sigma_t) * m_t,
    log q(z_t|x) = log q(z_{t-1}|x) - sum_i log sigma_t,i,

since dz_t/dz_{t-1} is triangular with diagonal sigma_t (m_t,i and s_t,i see only z_<i).
b is a forget-gate bias that starts every step close to the identity (the paper: "s_t
sufficiently positive, close to +1 or +2"); consecutive steps reverse the ordering.

With this q the KL has no closed form, so the ELBO uses the Monte Carlo estimate
(the VAE's L^A):  L = log p(x|z_T) + log p(z_T) - log q(z_T|x),  and the importance-weighted
bound L_k uses the same log q for its weights (VAE.log_likelihood, through `log_weights`).

Here h is the encoder's last hidden layer, fed unmasked into each MADE's first hidden layer.
"""
import math

from .. import nn
from ..grad_mode import no_grad
from ..tensor import float32
from .maf import GaussianMADE
from .vae import VAE

__all__ = ["IAFVAE"]

LOG_2PI = math.log(2 * math.pi)


class IAFVAE(VAE):
    """VAE (scratchgen.models.vae) with q(z|x) = diagonal Gaussian followed by `num_steps` IAF steps.

    iaf_hidden: hidden widths of each step's MADE (default: the encoder's);
    forget_bias: b in sigma_t = sigmoid(s_t + b)."""

    def __init__(self, input_dim, hidden_sizes, latent_dim, num_steps=2, iaf_hidden=None, forget_bias=1.0,
                 likelihood="bernoulli", sigma=None, beta=1.0, warmup_steps=0, activation="relu", dtype=float32):
        super().__init__(input_dim, hidden_sizes, latent_dim, likelihood=likelihood, sigma=sigma, kl="mc",
                         beta=beta, warmup_steps=warmup_steps, activation=activation, dtype=dtype)
        context = self.hidden_sizes[-1] if self.hidden_sizes else input_dim
        widths = list(iaf_hidden) if iaf_hidden else self.hidden_sizes or [latent_dim]
        self.forget_bias = float(forget_bias)
        self.flows = nn.ModuleList([GaussianMADE(latent_dim, widths, reverse=t % 2 == 1, context_dim=context,
                                                 dtype=dtype) for t in range(num_steps)])

    def posterior(self, x, eps):
        """(z_T, log q(z_T|x)) for noise eps of shape (..., N, latent): the Gaussian, then the IAF steps."""
        h = self.encoder(x)
        mu, log_sigma = self.enc_mu(h), 0.5 * self.enc_logvar(h)
        z = mu + log_sigma.exp() * eps
        log_q = -(log_sigma + 0.5 * eps * eps + 0.5 * LOG_2PI).sum(axis=-1)
        for made in self.flows:
            z, log_sigma_t = self.step(made, z, h)
            log_q = log_q - log_sigma_t.sum(axis=-1)
        return z, log_q

    def step(self, made, z, h):
        """One IAF step: (z_t, log sigma_t)."""
        m, s = made(z, h)
        s = s + self.forget_bias
        gate = s.sigmoid()
        return gate * z + (1 - gate) * m, s.logsigmoid()

    def elbo(self, x, beta=1.0, generator=None, return_terms=False):
        """Per-example ELBO, one reparameterized sample each, the KL as log q(z|x) - log p(z) at it."""
        x = self._tensor(x)
        eps = self._noise(tuple(x.shape[:-1]) + (self.latent_dim,), generator)
        z, log_q = self.posterior(x, eps)
        log_px_z = self.decode(z).log_prob(x).sum(axis=-1)
        kl = log_q - self.prior().log_prob(z).sum(axis=-1)
        elbo = log_px_z - kl * beta if beta != 1 else log_px_z - kl
        return (elbo, log_px_z, kl) if return_terms else elbo

    def log_weights(self, x, k, generator=None):
        """log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x), z_i from the flow posterior: shape (k, N)."""
        x = self._tensor(x)
        eps = self._noise((k,) + tuple(x.shape[:-1]) + (self.latent_dim,), generator)
        z, log_q = self.posterior(x, eps)
        return self.decode(z).log_prob(x).sum(axis=-1) + self.prior().log_prob(z).sum(axis=-1) - log_q

    @no_grad()
    def reconstruct(self, x, sample_z=False, generator=None):
        """E[x|z] at z = the flow applied to the Gaussian's mean (eps = 0), or at a sample z ~ q(z|x)."""
        x = self._tensor(x)
        eps = self._noise(tuple(x.shape[:-1]) + (self.latent_dim,), generator)
        z, _ = self.posterior(x, eps if sample_z else eps * 0)
        return self.decode(z).mean.detach()

    def extra_repr(self):
        return f"{super().extra_repr()}, steps={len(self.flows)}, forget_bias={self.forget_bias}"
