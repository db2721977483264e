"""VAE: Auto-Encoding Variational Bayes (Kingma & Welling 2014), with the importance-weighted
bound of Burda, Grosse & Salakhutdinov (2016) for evaluation.

The generative model and the recognition model (encoder) q_phi(z|x) are

    p(z)          = N(z; 0, I)                                        standard normal prior
    p_theta(x|z)  = prod_d Bernoulli(x_d; sigmoid(f_theta(z)_d))       binarized MNIST, or
                  = N(x; sigmoid(f_theta(z)), sigma^2 I)               grayscale MNIST in [0, 1]
    q_phi(z|x)    = N(z; mu_phi(x), diag sigma_phi(x)^2)               Gaussian encoder (Eq. 9),
                                                                       heads for mu and log sigma^2

and both are trained by maximizing the evidence lower bound (ELBO) on log p_theta(x):

    L(theta, phi; x) = E_q[log p_theta(x|z)] - D_KL(q_phi(z|x) || p(z))  <=  log p_theta(x).

The expectation is estimated with the reparameterization trick (Section 2.4): instead of
sampling z ~ q_phi(z|x), which blocks gradients to phi, sample parameter-free noise and
transform it with a differentiable function of phi:

    eps ~ p(eps) = N(0, I),     z = g_phi(eps, x) = mu + sigma * eps,

so E_q[f(z)] = E_eps[f(mu + sigma * eps)] and the gradient moves inside the expectation.
With one sample per example (L = 1, as the paper uses for M = 100) this gives the
SGVB estimators:

    L^A (Eq. 6):  log p(x|z) + log p(z) - log q(z|x)                     kl='mc'
    L^B (Eq. 7):  log p(x|z) - D_KL(q || p), the KL in closed form;      kl='analytic'
                  for Gaussians (Appendix B, Eq. 10):
                  -D_KL = 1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)

Evaluation uses the importance-weighted bound (IWAE), which tightens as k grows
(L_1 = ELBO <= L_k <= L_{k+1} <= log p(x) in expectation, Burda et al. Theorem 1):

    L_k = E[ log 1/k sum_i w_i ],   w_i = p(x|z_i) p(z_i) / q(z_i|x),   z_i ~ q(z|x),

computed as logsumexp(log w) - log k over chunks of samples, so memory stays bounded
for k = 5000.
"""
import math

import numpy as np

from .. import backend, nn
from ..distributions import Bernoulli, Normal, kl_divergence
from ..grad_mode import no_grad
from ..ops.reduce import logsumexp
from ..ops.shape import stack
from ..random import rng
from ..tensor import Tensor, float32

__all__ = ["VAE"]

class VAE(nn.Module):
    """Variational autoencoder with a Gaussian encoder and a standard normal prior.

    likelihood: 'bernoulli' (x in {0, 1}) or 'gaussian' (x in [0, 1], mean sigmoid(f(z)));
    sigma: the Gaussian decoder's standard deviation, a float (fixed) or None (learned, one
        scalar for all pixels, as log sigma);
    kl: 'analytic' (estimator L^B) or 'mc' (estimator L^A);
    beta: weight of the KL term in the training objective (beta-VAE; 1 gives the ELBO);
    warmup_steps: KL warm-up, beta rises linearly from 0 to `beta` over this many calls of
        `training_loss` (the count is a buffer, so it is saved and resumed with the model);
    activation: of the hidden layers. Kingma & Welling used tanh ('tanh' reproduces it); ReLU
        is the default because it learns much faster with Adam.
    """

    def __init__(self, input_dim, hidden_sizes, latent_dim, likelihood="bernoulli", sigma=None, kl="analytic",
                 beta=1.0, warmup_steps=0, activation="relu", dtype=float32):
        super().__init__()
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
        if kl not in ("analytic", "mc"):
            raise ValueError(f"kl must be 'analytic' or 'mc', got {kl!r}")
        if activation not in nn.ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(nn.ACTIVATIONS)}, got {activation!r}")
        if sigma is not None and not sigma > 0:
            raise ValueError(f"sigma must be positive (or None to learn it), got {sigma}")
        self.input_dim, self.hidden_sizes, self.latent_dim = input_dim, list(hidden_sizes), latent_dim
        self.likelihood, self.sigma, self.kl, self.beta = likelihood, sigma, kl, float(beta)
        self.warmup_steps = int(warmup_steps)
        h = self.hidden_sizes
        # Recognition model q_phi(z|x): an MLP with two heads.
        self.encoder = nn.mlp([input_dim] + h, activation, output=activation, dtype=dtype)
        self.enc_mu = nn.Linear(h[-1] if h else input_dim, latent_dim, dtype=dtype)
        self.enc_logvar = nn.Linear(h[-1] if h else input_dim, latent_dim, dtype=dtype)
        # Generative model p_theta(x|z): the mirror image.
        self.decoder = nn.mlp([latent_dim] + h[::-1], activation, output=activation, dtype=dtype)
        self.dec_out = nn.Linear(h[0] if h else latent_dim, input_dim, dtype=dtype)
        if likelihood == "gaussian" and sigma is None:
            self.log_sigma = nn.Parameter(np.zeros((), dtype=dtype))
        self.register_buffer("steps", np.zeros((), dtype=np.int64))

    @property
    def dtype(self):
        return self.enc_mu.weight.dtype

    def _tensor(self, x):
        if isinstance(x, Tensor):
            return x
        x = np.asarray(x, dtype=self.dtype)
        return Tensor(backend.to_device(x, self.enc_mu.weight.device))

    def _noise(self, shape, generator):
        """eps ~ N(0, I) in the model's dtype and on its device."""
        eps = rng(generator).standard_normal(shape, dtype=self.dtype)
        return Tensor(backend.to_device(eps, self.enc_mu.weight.device))

    # -- the three distributions ------------------------------------------------------------------
    def prior(self):
        """p(z) = N(0, I)."""
        zero = Tensor(self.enc_mu.weight.xp.zeros(self.latent_dim, dtype=self.dtype))
        return Normal(zero, 1.0, validate_args=False)

    def encode(self, x):
        """q_phi(z|x) = N(mu, diag sigma^2) (Eq. 9), from heads for mu and log sigma^2."""
        mu, logvar = self.encoder_heads(self._tensor(x))
        return Normal(mu, (0.5 * logvar).exp(), validate_args=False)

    def encoder_heads(self, x):
        """(mu, log sigma^2) of q(z|x); the networks are the only thing a conv VAE changes."""
        h = self.encoder(x)
        return self.enc_mu(h), self.enc_logvar(h)

    def decoder_logits(self, z):
        """f_theta(z), for z of shape (..., latent_dim)."""
        return self.dec_out(self.decoder(z))

    def decode(self, z):
        """p_theta(x|z): Bernoulli(logits=f(z)), or Normal(sigmoid(f(z)), sigma)."""
        out = self.decoder_logits(z)
        if self.likelihood == "bernoulli":
            return Bernoulli(logits=out)
        scale = self.log_sigma.exp() if self.sigma is None else self.sigma
        return Normal(out.sigmoid(), scale, validate_args=False)

    # -- the bound --------------------------------------------------------------------------------
    def elbo(self, x, beta=1.0, generator=None, return_terms=False):
        """Per-example ELBO estimate, one reparameterized sample each (SGVB, L = 1).

        beta weights the KL term (1: the ELBO itself). With return_terms, also return the
        reconstruction term E_q[log p(x|z)] and the KL term, per example."""
        x = self._tensor(x)
        q = self.encode(x)                                   # q_phi(z|x) = N(mu, sigma^2)
        mu, sigma = q.loc, q.scale
        eps = self._noise(mu.shape, generator)               # eps ~ p(eps) = N(0, I)
        z = mu + sigma * eps                                 # z = g_phi(eps, x): the reparameterization
        log_px_z = self.decode(z).log_prob(x).sum(axis=-1)   # log p_theta(x|z), one-sample estimate
        if self.kl == "analytic":                            # L^B (Eqs. 7, 10): KL in closed form, Appendix B
            kl = kl_divergence(q, self.prior()).sum(axis=-1)
        else:                                                # L^A (Eq. 6): log q(z|x) - log p(z) at z
            kl = (q.log_prob(z) - self.prior().log_prob(z)).sum(axis=-1)
        elbo = log_px_z - kl * beta if beta != 1 else log_px_z - kl
        return (elbo, log_px_z, kl) if return_terms else elbo

    def current_beta(self):
        """The KL weight of the warm-up schedule: beta * min(1, steps / warmup_steps)."""
        if self.warmup_steps <= 0:
            return self.beta
        return self.beta * min(1.0, float(self.steps.item()) / self.warmup_steps)

    def training_loss(self, x, generator=None):
        """Mean of -(log p(x|z) - beta_t KL) over the batch, beta_t from the warm-up schedule;
        counts one step. Returns {'loss', 'elbo', 'kl', 'rec', 'beta'} (the last four for logging)."""
        beta = self.current_beta()
        elbo, rec, kl = self.elbo(x, beta=beta, generator=generator, return_terms=True)
        self.steps.data[...] += 1
        true_elbo = (rec - kl).mean().detach() if beta != 1 else elbo.mean().detach()
        return {"loss": -elbo.mean(), "elbo": true_elbo, "kl": kl.mean().detach(),
                "rec": rec.mean().detach(), "beta": beta}

    def log_weights(self, x, k, generator=None):
        """log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x) for k samples z_i ~ q: shape (k, N)."""
        x = self._tensor(x)
        q = self.encode(x)
        eps = self._noise((k,) + tuple(q.loc.shape), generator)
        z = q.loc + q.scale * eps                            # (k, N, latent)
        log_px_z = self.decode(z).log_prob(x).sum(axis=-1)   # x broadcasts against the k samples
        return log_px_z + self.prior().log_prob(z).sum(axis=-1) - q.log_prob(z).sum(axis=-1)

    def log_likelihood(self, x, k=5000, batch=None, generator=None):
        """Importance-weighted lower bound L_k on log p(x), per example (nats).

        The k samples are drawn in chunks of `batch` (default: about 10,000 decoder rows per
        chunk), each reduced to its logsumexp, so memory is O(batch * N * D) whatever k is;
        the noise is drawn in the same order for any `batch`, so the result does not depend
        on it. Runs under the caller's grad mode (wrap in no_grad for evaluation)."""
        x = self._tensor(x)
        n = x.shape[0] if x.ndim > 1 else 1
        batch = int(batch or max(1, min(k, 10000 // max(n, 1))))
        chunks = [logsumexp(self.log_weights(x, min(batch, k - start), generator), axis=0)
                  for start in range(0, k, batch)]
        total = chunks[0] if len(chunks) == 1 else logsumexp(stack(chunks, axis=0), axis=0)
        return total - math.log(k)                           # log (1/k) sum_i w_i

    # -- using the model --------------------------------------------------------------------------
    @no_grad()
    def sample(self, n, generator=None, mean=False):
        """n draws x ~ p_theta(x|z), z ~ p(z); with mean=True, the decoder means E[x|z] instead
        (Bernoulli probabilities: the usual way to show VAE samples as images)."""
        z = self._noise((n, self.latent_dim), generator)
        px = self.decode(z)
        return px.mean.detach() if mean else px.sample(generator=generator)

    @no_grad()
    def reconstruct(self, x, sample_z=False, generator=None):
        """E[x|z] at the posterior mean z = mu(x) (or at a sample z ~ q(z|x) if sample_z)."""
        q = self.encode(x)
        z = q.sample(generator=generator) if sample_z else q.loc
        return self.decode(z).mean.detach()

    @no_grad()
    def decode_mean(self, z):
        """E[x|z] for latent codes z (an array or Tensor of shape (N, latent_dim))."""
        return self.decode(self._tensor(z)).mean.detach()

    def extra_repr(self):
        return (f"likelihood={self.likelihood!r}, sigma={self.sigma}, kl={self.kl!r}, beta={self.beta}, "
                f"warmup_steps={self.warmup_steps}")


def evaluate_elbo(model, x, batch=1000, seed=0):
    """Mean ELBO (one reparameterized sample per example, fixed noise) in nats, under no_grad."""
    g = _generator(seed)
    with no_grad():
        total = sum(float(model.elbo(x[i:i + batch], generator=g).sum().item()) for i in range(0, len(x), batch))
    return total / len(x)


def evaluate_iwae(model, x, k=5000, batch=None, seed=0, examples_per_pass=None, progress=True):
    """Mean IWAE bound L_k in nats (its negative is the reported NLL), under no_grad."""
    from ..progress import progress as show
    g = _generator(seed)
    per = examples_per_pass or max(1, min(len(x), 100))
    total = 0.0
    steps = show(range(0, len(x), per), total=-(-len(x) // per), desc=f"IWAE k={k}", enabled=progress)
    with no_grad():
        for i in steps:
            total += float(model.log_likelihood(x[i:i + per], k=k, batch=batch, generator=g).sum().item())
    return total / len(x)


def _generator(seed):
    from ..random import Generator
    return Generator(seed)
