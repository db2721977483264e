"""The Parzen window's inner loop: log-mean-exp of -d2 / (2 sigma^2) over the samples, for every
bandwidth sigma of a grid in one pass over a block of squared distances.

For a query row with distances d2_i to the S samples and d = min_i d2_i,

    log (1/S) sum_i exp(-d2_i / (2 sigma^2)) = -d / (2 sigma^2) + log (1/S) sum_i exp(-(d2_i - d) / (2 sigma^2))

and every term of the second sum is at most 1 (the nearest sample's term is exactly 1). A term
whose exponent is below -CUTOFF adds less than exp(-CUTOFF) relative to that 1, so it is skipped
without computing the exponential: with CUTOFF = 50 the sum changes by under S * 2e-22 relative,
far below float64 rounding for any S a GAN evaluation uses. At small bandwidths almost every term
is skipped, which is where NumPy spends its time (an exponential per element per sigma).
"""
import math

import numpy as np
from numba import njit, prange

CUTOFF = 50.0


@njit(parallel=True, cache=True, error_model="numpy")
def _log_mean_exp_rows(d2, inv_two_sigma_sq, out):
    n, s = d2.shape
    k = inv_two_sigma_sq.shape[0]
    for r in prange(n):
        nearest = d2[r, 0]
        for i in range(s):
            nearest = min(nearest, d2[r, i])
        acc = np.zeros(k)
        for i in range(s):
            delta = d2[r, i] - nearest
            for j in range(k):
                e = delta * inv_two_sigma_sq[j]
                if e < CUTOFF:
                    acc[j] += math.exp(-e)
        for j in range(k):
            out[j, r] = math.log(acc[j] / s) - nearest * inv_two_sigma_sq[j]


def log_mean_exp_of_distances(d2, sigmas):
    """(len(sigmas), N) array: log mean_i exp(-d2[n, i] / (2 sigma^2)) for every sigma and row n,
    in float64. d2 is an (N, S) array of squared distances (finite, >= 0)."""
    d2 = np.ascontiguousarray(d2, dtype=np.float64)
    inv = 1.0 / (2.0 * np.asarray(sigmas, np.float64) ** 2)
    out = np.empty((len(inv), d2.shape[0]))
    if d2.size:
        _log_mean_exp_rows(d2, inv, out)
    return out
