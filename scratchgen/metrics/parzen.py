"""Parzen-window log-likelihood (Breuleux, Bengio & Vincent, 2011), the estimate Goodfellow et
al. (2014, Table 1) report for GANs on MNIST and TFD.

A Gaussian kernel density is fitted to S model samples s_1..s_S,

    p_sigma(x) = 1/S sum_i N(x; s_i, sigma^2 I),
    log p_sigma(x) = logmeanexp_i(-||x - s_i||^2 / (2 sigma^2)) - d/2 log(2 pi sigma^2),

sigma is chosen by grid search to maximise the mean log-likelihood of a validation set, and the
mean log p_sigma over the test set is reported with its standard error (GAN paper: 225 +- 2
nats on MNIST, pixels in [0, 1], 10,000 samples; sigma grid logspace(-1, 0, 10) in its code).
Each block of test points needs one (block, S) matrix of squared distances, from matrix
products; every sigma of the grid reuses it, in one pass of a Numba kernel
(kernels/parzen.py) that skips the exponentials too small to count.

Known weaknesses -- treat the number with suspicion (Theis, van den Oord & Bethge, 2016,
"A note on the evaluation of generative models"):
- In high dimensions the estimate is far from the model's true log-likelihood even with
  millions of samples (it converges extremely slowly in S and is biased low for finite S).
- It can rank models in the opposite order of their true log-likelihoods; a set of k-means
  centroids of the training data scores better than many real models.
- It rewards memorisation: the training set itself, used as "samples", scores very well.
- log p(x) is dominated by the few samples closest to x in Euclidean pixel distance, a poor
  measure of perceptual similarity; sharp but slightly shifted samples score badly, blurry ones
  can score well.
- The number depends on S, the sigma grid, the validation set and the pixel scale; it is only
  comparable between models evaluated with identical settings.
"""
import math

import numpy as np

from ..kernels.parzen import log_mean_exp_of_distances
from .neighbours import _rows, squared_distances

DEFAULT_SIGMAS = np.logspace(-1, 0, 10)  # the grid of the GAN paper's parzen_ll.py


def log_mean_exp(a, axis=-1):
    """log(mean(exp(a))) along an axis, without overflow."""
    a = np.asarray(a, np.float64)
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.squeeze(m, axis) + np.log(np.mean(np.exp(a - m), axis=axis))


def parzen_log_likelihood(x, samples, sigma, batch_size=500):
    """log p_sigma(x) for every row of x under the Parzen window on `samples`, in float64.

    `sigma` is a number (result shape (N,)) or a sequence (result shape (len(sigma), N)).
    Images are flattened; distances are computed in the inputs' precision."""
    x, s = _rows(x), _rows(samples)
    sigmas = np.atleast_1d(np.asarray(sigma, np.float64))
    if (sigmas <= 0).any():
        raise ValueError(f"parzen: sigma must be positive, got {sigma}")
    d = x.shape[1]
    s_sq = (s * s).sum(axis=1)
    out = np.empty((len(sigmas), len(x)))
    for start in range(0, len(x), batch_size):
        d2 = squared_distances(x[start:start + batch_size], s, s_sq)
        out[:, start:start + len(d2)] = (log_mean_exp_of_distances(d2, sigmas)
                                         - 0.5 * d * np.log(2 * math.pi * sigmas * sigmas)[:, None])
    return out[0] if np.ndim(sigma) == 0 else out


def parzen_window(samples, valid, test, sigmas=None, batch_size=500):
    """Goodfellow et al.'s protocol: sigma = argmax over the grid of the mean validation
    log-likelihood, then the test set's mean log-likelihood at that sigma.

    Returns {'mean', 'sem' (standard error of the mean over test points), 'sigma',
    'sigmas', 'valid_means' (mean validation log-likelihood per sigma)}."""
    sigmas = DEFAULT_SIGMAS if sigmas is None else np.asarray(sigmas, np.float64)
    valid_ll = parzen_log_likelihood(valid, samples, sigmas, batch_size).mean(axis=1)
    best = int(np.argmax(valid_ll))
    ll = parzen_log_likelihood(test, samples, float(sigmas[best]), batch_size)
    return {"mean": float(ll.mean()), "sem": float(ll.std(ddof=1) / math.sqrt(len(ll))) if len(ll) > 1 else 0.0,
            "sigma": float(sigmas[best]), "sigmas": sigmas, "valid_means": valid_ll}
