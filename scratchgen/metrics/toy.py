"""Mode coverage on Gaussian-mixture toy sets (as in the unrolled-GAN and VEEGAN evaluations).

A generated sample is *high quality* if it lies within `n_std` standard deviations (Euclidean
distance; default 3) of the centre of its nearest mode. A mode is *covered* if at least
`min_count` high-quality samples have it as their nearest mode (default 1, VEEGAN's rule; a
stricter count such as 1% of the samples also rejects modes hit only by stray samples).
For an isotropic 2-D Gaussian, 3 std around the centre hold 1 - exp(-4.5) = 98.9% of its mass,
so samples from the data distribution itself score about 0.989 and cover every mode.
"""
import numpy as np


def mode_coverage(samples, centers, std, n_std=3.0, min_count=1):
    """{'modes_covered', 'num_modes', 'high_quality' (fraction of samples), 'counts' (high-quality
    samples per mode, int array)} for samples (N, d) and mode centres (K, d)."""
    x = np.asarray(samples, np.float64)
    c = np.asarray(centers, np.float64)
    if x.ndim != 2 or c.ndim != 2 or x.shape[1] != c.shape[1]:
        raise ValueError(f"mode_coverage: samples {x.shape} and centers {c.shape} must be (N, d) and (K, d)")
    if len(x) == 0:
        raise ValueError("mode_coverage: no samples")
    d2 = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)       # (N, K); K is small
    nearest = d2.argmin(axis=1)
    good = np.sqrt(d2[np.arange(len(x)), nearest]) <= n_std * std
    counts = np.bincount(nearest[good], minlength=len(c))
    return {"modes_covered": int((counts >= min_count).sum()), "num_modes": len(c),
            "high_quality": float(good.mean()), "counts": counts}


def toy_mode_coverage(samples, name, n_std=3.0, min_count=1):
    """mode_coverage against the modes of a scratchgen toy set ('eight_gaussians', 'twentyfive_gaussians')."""
    from ..data import mode_centers
    centers, std = mode_centers(name)
    return mode_coverage(samples, centers, std, n_std, min_count)
